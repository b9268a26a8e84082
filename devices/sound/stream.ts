/**
 * One PCM stream inside the device: its lifecycle state and parameters
 * (§5.14.6.6.1), the guest's I/O messages queued for it (§5.14.6.8), and
 * the {@link StreamPort} through which its host stream consumes or fills
 * them.
 *
 * @module
 */

import type { GuestSlice } from "../../core/memory/guest_memory.ts";
import type { SplitQueue } from "../../core/virtio/split_queue.ts";
import type { Direction, HostStream, StreamPort } from "./backend.ts";
import { DEFAULT_PARAMS, type PcmParams, type PcmState, type StreamCapabilities } from "./pcm.ts";
import {
  type Status,
  VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED,
  VIRTIO_SND_EVT_PCM_XRUN,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_S_OK,
} from "./spec.ts";

/** A guest I/O message the stream holds until its data is consumed or filled. */
export interface IoMessage {
  /** The queue it came from; a message of a queue set up again since is dropped. */
  readonly queue: SplitQueue;
  /** The chain's head, for the used ring. */
  readonly head: number;
  /** PCM data: readable (output) or writable (input) guest memory. */
  readonly data: readonly GuestSlice[];
  /** Bytes of `data`. */
  readonly length: number;
  /** The device-writable `struct virtio_snd_pcm_status`. */
  readonly status: readonly GuestSlice[];
  /** Bytes moved so far. */
  moved: number;
}

/** What the device lends a stream. */
export interface StreamOwner {
  /** Returns a message to the driver (status written, used element added). */
  complete(message: IoMessage, status: Status, options: { latencyBytes: number }): void;
  /** Publishes completions made since the last call. */
  flush(): void;
  /** Sends a PCM event (§5.14.6.7) for `streamId`. */
  event(code: number, streamId: number): void;
}

/** One stream of the device. */
export class DeviceStream implements StreamPort {
  /** The stream id. */
  readonly id: number;
  readonly direction: Direction;
  /** What the stream offers in PCM_INFO and accepts in SET_PARAMS. */
  readonly capabilities: StreamCapabilities;
  /** §5.14.6.6.1 state, named by the command that entered it. */
  state: PcmState = "set-parameters";
  /** Current parameters (upstream's defaults until SET_PARAMS). */
  params: PcmParams = DEFAULT_PARAMS;
  /** Set once the device attached the host side. */
  host: HostStream | null = null;
  readonly #owner: StreamOwner;
  readonly #messages: IoMessage[] = [];
  #queued = 0;
  #periodProgress = 0;

  /** A stream with id `id` that returns its messages through `owner`. */
  constructor(
    id: number,
    options: {
      direction: Direction;
      capabilities: StreamCapabilities;
      owner: StreamOwner;
    },
  ) {
    this.id = id;
    this.direction = options.direction;
    this.capabilities = options.capabilities;
    this.#owner = options.owner;
  }

  /** Number of messages held. */
  get pending(): number {
    return this.#messages.length;
  }

  /** Takes a guest message for this stream. */
  enqueue(message: IoMessage): void {
    this.#messages.push(message);
    this.#queued += message.length - message.moved;
  }

  queuedBytes(): number {
    return this.#queued;
  }

  bytesToNextCompletion(): number {
    const head = this.#messages[0];
    return head ? head.length - head.moved : 0;
  }

  read(into: Uint8Array): number {
    return this.#transfer(into, (slice, offset, bytes, at) => {
      bytes.set(slice.region.bytes.subarray(slice.offset + offset, slice.offset + offset + at), 0);
    });
  }

  write(from: Uint8Array): number {
    return this.#transfer(from, (slice, offset, bytes, at) => {
      slice.region.bytes.set(bytes.subarray(0, at), slice.offset + offset);
    });
  }

  xrun(): void {
    if (this.params.features & (1 << VIRTIO_SND_PCM_F_EVT_XRUNS)) {
      this.#owner.event(VIRTIO_SND_EVT_PCM_XRUN, this.id);
    }
  }

  /** Returns every held message (PCM_RELEASE, §5.14.6.6.5.1), with `status`. */
  completeAll(status: Status = VIRTIO_SND_S_OK): void {
    for (const message of this.#messages.splice(0)) {
      this.#owner.complete(message, status, { latencyBytes: 0 });
    }
    this.#queued = 0;
    this.#periodProgress = 0;
    this.#owner.flush();
  }

  /** Forgets messages of rings that are gone (their chains went with them). */
  dropMessagesOf(queue: SplitQueue | null): void {
    const kept = this.#messages.filter((m) => m.queue === queue);
    this.#messages.length = 0;
    this.#messages.push(...kept);
    this.#queued = kept.reduce((sum, m) => sum + m.length - m.moved, 0);
  }

  /** Starts counting periods afresh (a new PCM_START). */
  resetPeriods(): void {
    this.#periodProgress = 0;
  }

  /**
   * Moves `buffer.length` bytes at most between `buffer` and the held
   * messages, in order, completing each message that is done.
   */
  #transfer(
    buffer: Uint8Array,
    copy: (slice: GuestSlice, offset: number, bytes: Uint8Array, count: number) => void,
  ): number {
    let done = 0;
    while (done < buffer.length && this.#messages.length > 0) {
      const message = this.#messages[0];
      let skip = message.moved;
      for (const slice of message.data) {
        if (done === buffer.length) break;
        if (skip >= slice.length) {
          skip -= slice.length;
          continue;
        }
        const count = Math.min(slice.length - skip, buffer.length - done);
        copy(slice, skip, buffer.subarray(done), count);
        done += count;
        message.moved += count;
        this.#queued -= count;
        skip = 0;
      }
      if (message.moved < message.length) break;
      this.#messages.shift();
      const latencyBytes = this.direction === "output"
        ? this.#queued + (this.host?.delayBytes() ?? 0)
        : this.host?.delayBytes() ?? 0;
      this.#owner.complete(message, VIRTIO_SND_S_OK, { latencyBytes });
    }
    this.#countPeriods(done);
    this.#owner.flush();
    return done;
  }

  /** PERIOD_ELAPSED for each `period_bytes` moved, if the driver selected it (§5.14.6.7). */
  #countPeriods(bytes: number): void {
    if (!(this.params.features & (1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS))) return;
    this.#periodProgress += bytes;
    while (this.#periodProgress >= this.params.periodBytes) {
      this.#periodProgress -= this.params.periodBytes;
      this.#owner.event(VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED, this.id);
    }
  }
}

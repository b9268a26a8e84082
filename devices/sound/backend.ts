/**
 * The small interface between the sound device and a host audio system
 * (null, a WAV file, ALSA, PipeWire). The device owns the guest's buffers;
 * a host stream moves bytes between them and the host through a
 * {@link StreamPort}, at the pace of its clock (a timer, or the host
 * device's own), on the daemon's one event loop.
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import type { PcmParams, StreamCapabilities } from "./pcm.ts";

/** A stream's data flow direction (§5.14.6: VIRTIO_SND_D_OUTPUT / _INPUT). */
export type Direction = "output" | "input";

/** The device's side of one stream, lent to its host stream. */
export interface StreamPort {
  /** Playback or capture. */
  readonly direction: Direction;
  /**
   * Output: guest audio queued and not yet consumed. Input: room left in the
   * guest's queued capture buffers.
   */
  queuedBytes(): number;
  /** Bytes to move before the oldest queued guest buffer completes (0: none queued). */
  bytesToNextCompletion(): number;
  /**
   * Output: copies up to `into.length` queued bytes into `into`, returning
   * each guest buffer once it is wholly consumed (§5.14.6.8.1). Returns the
   * bytes copied.
   */
  read(into: Uint8Array): number;
  /**
   * Input: copies `from` into the queued guest buffers, returning each once
   * it is full (§5.14.6.8.2). Returns the bytes taken.
   */
  write(from: Uint8Array): number;
  /** The host ran out of guest data (output) or of guest room (input). */
  xrun(): void;
}

/** What a host stream may use. */
export interface HostEnvironment {
  /** The daemon's loop, for timers and host fds. */
  readonly loop: EventLoop;
  /** The device's logger. */
  readonly log: Logger;
}

/** One stream on the host side. Errors thrown become VIRTIO_SND_S_IO_ERR. */
export interface HostStream {
  /**
   * Sets up for `params` (PCM_PREPARE); the stream is not running.
   * `newParams`: the driver set parameters since the last prepare (it opened
   * the stream anew, rather than recovering from an xrun).
   */
  prepare(params: PcmParams, options: { newParams: boolean }): void;
  /** Starts moving data (PCM_START). */
  start(): void;
  /** Stops moving data; queued guest buffers stay queued (PCM_STOP). */
  stop(): void;
  /** Frees host resources (PCM_RELEASE, or the guest went away). */
  release(): void;
  /** The guest queued more buffers while the stream may be waiting for them. */
  wake(): void;
  /** Bytes the host holds and has not yet played (for `latency_bytes`). */
  delayBytes(): number;
  /** The guest connection ended: release, and free what the stream holds for good. */
  close(): void;
}

/** A host audio system. One per daemon; it outlives guest connections. */
export interface AudioBackend {
  /** `null`, `file`, `alsa`, `pipewire`. */
  readonly name: string;
  /** What the host can take for `direction`; the device offers this in PCM_INFO. */
  capabilities(direction: Direction): StreamCapabilities;
  /** Opens the host side of one stream. */
  openStream(port: StreamPort, environment: HostEnvironment): HostStream;
  /** Closes everything (daemon shutdown). */
  close(): void;
}

/**
 * The virtio sound device (VIRTIO 1.2 §5.14, device ID 25; QEMU's
 * vhost-user-snd-pci supplies the ID): one output and one input PCM stream,
 * as upstream, each with a channel map and no jacks. The control queue runs
 * the PCM command lifecycle; tx and rx messages are held until the host
 * stream has consumed or filled them; the event queue carries PCM_XRUN and
 * PCM_PERIOD_ELAPSED.
 *
 * @module
 */

import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Logger } from "../../core/log.ts";
import type { GuestSlice } from "../../core/memory/guest_memory.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  type DescriptorChain,
  readSlices,
  writeSlices,
} from "../../core/virtio/descriptor_chain.ts";
import { VIRTIO_DEVICE_FEATURES } from "../../core/virtio/features.ts";
import type { SplitQueue } from "../../core/virtio/split_queue.ts";
import type { AudioBackend, Direction } from "./backend.ts";
import { commandName, OFFERED_FEATURES, resolveParams, transition } from "./pcm.ts";
import {
  CONTROLQ,
  type ControlRequest,
  decodeControlRequest,
  encodeChmapInfo,
  encodeConfig,
  encodeEvent,
  encodePcmInfo,
  encodePcmStatus,
  encodeStatus,
  EVENT_SIZE,
  EVENTQ,
  HDR_SIZE,
  PCM_STATUS_SIZE,
  type QueryInfo,
  RXQ,
  type SetParams,
  type Status,
  statusName,
  TXQ,
  VIRTIO_SND_CHMAP_FL,
  VIRTIO_SND_CHMAP_FR,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_OK,
  XFER_SIZE,
} from "./spec.ts";
import { DeviceStream, type IoMessage } from "./stream.ts";

/** Largest queue size accepted. */
export const MAX_QUEUE_SIZE = 1024;
/** Stream 0 plays (output), stream 1 records (input), as upstream. */
export const OUTPUT_STREAM = 0;
/** The input stream's id. */
export const INPUT_STREAM = 1;
/** Events kept while the driver has no event buffers queued. */
const MAX_PENDING_EVENTS = 64;
/** Longest control request read (the largest is 24 bytes). */
const MAX_REQUEST_BYTES = 64;
/** Rejections logged at warn level before the rest go to debug. */
const LOUD_REJECTIONS = 20;

/** Options of {@link SoundDevice}. */
export interface SoundDeviceOptions {
  /** The host audio system (shared by all connections). */
  readonly backend: AudioBackend;
}

/** The sound device for one front-end connection. */
export class SoundDevice implements VirtioDevice {
  readonly name = "sound";
  readonly numQueues = 4;
  readonly maxQueueSize: number = MAX_QUEUE_SIZE;
  /** Upstream's bits; VIRTIO_SND_F_CTLS (§5.14.3) is not offered, as upstream. */
  readonly features: bigint = VIRTIO_DEVICE_FEATURES;
  /**
   * CONFIG (the front-end reads jacks/streams/chmaps from us) and MQ as
   * upstream; REPLY_ACK and CONFIGURE_MEM_SLOTS as the other devices.
   */
  readonly protocolFeatures: bigint = bit(P.CONFIG) | bit(P.MQ) | bit(P.REPLY_ACK) |
    bit(P.CONFIGURE_MEM_SLOTS);
  readonly #backend: AudioBackend;
  readonly #streams: DeviceStream[];
  #context: DeviceContext | null = null;
  readonly #pendingEvents: Uint8Array[] = [];
  /** Queues with completions not yet published. */
  readonly #dirty = new Set<SplitQueue>();
  #rejected = 0;

  /** A device whose streams play and record through `backend`. */
  constructor(options: SoundDeviceOptions) {
    this.#backend = options.backend;
    const owner = {
      complete: (message: IoMessage, status: Status, o: { latencyBytes: number }) =>
        this.#complete(message, status, o.latencyBytes),
      flush: () => this.#flush(),
      event: (code: number, streamId: number) => this.#sendEvent(encodeEvent(code, streamId)),
    };
    const make = (id: number, direction: Direction) =>
      new DeviceStream(id, {
        direction,
        capabilities: options.backend.capabilities(direction),
        owner,
      });
    this.#streams = [make(OUTPUT_STREAM, "output"), make(INPUT_STREAM, "input")];
  }

  /** The streams (for tests and logs). */
  get streams(): readonly DeviceStream[] {
    return this.#streams;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
    for (const stream of this.#streams) {
      stream.host ??= this.#backend.openStream(stream, { loop: context.loop, log: context.log });
    }
  }

  /**
   * §5.14.4: one channel map per direction, so `chmaps` is 2 (upstream says
   * 1 yet defines two, so its input map is never read).
   */
  readConfig(offset: number, length: number): Uint8Array {
    const config = encodeConfig({ jacks: 0, streams: this.#streams.length, chmaps: 2 });
    if (offset + length > config.length) {
      throw new RangeError(`config read [${offset}, +${length}) beyond ${config.length} bytes`);
    }
    return config.subarray(offset, offset + length);
  }

  onKick(queue: number): void {
    switch (queue) {
      case CONTROLQ:
        this.#serveControl();
        break;
      case EVENTQ:
        this.#drainPendingEvents();
        break;
      case TXQ:
      case RXQ:
        this.#serveIo(queue);
        break;
    }
  }

  queueStopped(queue: number): void {
    if (queue !== TXQ && queue !== RXQ) return;
    // The ring's chains are gone with it: the host stops, the stream must be set up again.
    for (const stream of this.#streams) {
      if ((queue === TXQ) !== (stream.direction === "output")) continue;
      stream.host?.stop();
      stream.dropMessagesOf(null);
    }
  }

  reset(): void {
    for (const stream of this.#streams) {
      stream.host?.close();
      stream.host = null;
      stream.dropMessagesOf(null);
      stream.state = "set-parameters";
    }
    this.#pendingEvents.length = 0;
    this.#dirty.clear();
    this.#context = null;
  }

  // --- control queue (§5.14.6) ---

  #serveControl(): void {
    const queue = this.#context?.queue(CONTROLQ);
    if (!queue) return;
    do {
      queue.disableNotification();
      for (let chain = queue.next(); chain !== null; chain = queue.next()) {
        queue.addUsed(chain.head, this.#control(chain));
        // A control request can complete I/O messages (RELEASE): publish both in order.
        this.#flush();
        queue.notify();
      }
    } while (queue.enableNotification());
    queue.notify();
  }

  /** Serves one control request; returns the bytes written. */
  #control(chain: DescriptorChain): number {
    const log = this.#log();
    if (chain.writableLength < HDR_SIZE) {
      this.#reject(`control request at head ${chain.head} has no room for a status`, log);
      return 0;
    }
    const request = decodeControlRequest(
      readSlices(chain.readable, { length: Math.min(chain.readableLength, MAX_REQUEST_BYTES) }),
    );
    const response = this.#respond(request, chain.writableLength, log);
    return writeSlices(chain.writable, response);
  }

  #respond(request: ControlRequest, room: number, log: Logger): Uint8Array {
    switch (request.kind) {
      case "bad":
        this.#reject(
          `control request refused with ${statusName(request.status)}: ${request.reason}`,
          log,
        );
        return encodeStatus(request.status);
      case "query":
        return this.#query(request.code, request.query, room, log);
      case "jack-remap":
        // §5.14.6.4.2: there are no jacks, so no jack id is valid.
        this.#reject(`JACK_REMAP of jack ${request.jackId}: the device has no jacks`, log);
        return encodeStatus(VIRTIO_SND_S_BAD_MSG);
      case "set-params":
        return encodeStatus(this.#setParams(request.params, log));
      case "pcm":
        return encodeStatus(this.#lifecycle(request.code, request.streamId, log));
    }
  }

  /** §5.14.6.1: JACK_INFO, PCM_INFO, CHMAP_INFO. */
  #query(code: number, query: QueryInfo, room: number, log: Logger): Uint8Array {
    const items = this.#infoItems(code);
    const { startId, count, size } = query;
    const name = code === VIRTIO_SND_R_JACK_INFO
      ? "JACK_INFO"
      : code === VIRTIO_SND_R_PCM_INFO
      ? "PCM_INFO"
      : "CHMAP_INFO";
    if (startId > items.length || count > items.length - startId) {
      this.#reject(`${name} of items ${startId}+${count}: there are ${items.length}`, log);
      return encodeStatus(VIRTIO_SND_S_BAD_MSG);
    }
    if (size === 0 || HDR_SIZE + count * size > room) {
      this.#reject(
        `${name}: ${count} items of ${size} bytes do not fit a ${room}-byte response`,
        log,
      );
      return encodeStatus(VIRTIO_SND_S_BAD_MSG);
    }
    const out = new Uint8Array(HDR_SIZE + count * size);
    out.set(encodeStatus(VIRTIO_SND_S_OK));
    for (let i = 0; i < count; i++) {
      // A smaller `size` gets each structure's beginning, a larger one zero padding (§5.14.6.1).
      const item = items[startId + i];
      out.set(item.subarray(0, Math.min(size, item.length)), HDR_SIZE + i * size);
    }
    return out;
  }

  #infoItems(code: number): Uint8Array[] {
    if (code === VIRTIO_SND_R_PCM_INFO) {
      return this.#streams.map((stream) =>
        encodePcmInfo({
          hdaFnNid: 0,
          features: OFFERED_FEATURES,
          formats: stream.capabilities.formats.reduce((m, f) => m | (1n << BigInt(f)), 0n),
          rates: stream.capabilities.rateIndices.reduce((m, r) => m | (1n << BigInt(r)), 0n),
          direction: stream.direction === "output" ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT,
          channelsMin: stream.capabilities.channelsMin,
          channelsMax: stream.capabilities.channelsMax,
        })
      );
    }
    if (code === VIRTIO_SND_R_CHMAP_INFO) {
      return [VIRTIO_SND_D_OUTPUT, VIRTIO_SND_D_INPUT].map((direction) =>
        encodeChmapInfo({
          hdaFnNid: 0,
          direction,
          positions: [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR],
        })
      );
    }
    return [];
  }

  #stream(streamId: number, what: string, log: Logger): DeviceStream | null {
    const stream = this.#streams[streamId];
    if (streamId >= this.#streams.length || !stream) {
      this.#reject(`${what} for stream ${streamId}: there are ${this.#streams.length}`, log);
      return null;
    }
    return stream;
  }

  /** §5.14.6.6.3 */
  #setParams(request: SetParams, log: Logger): Status {
    const stream = this.#stream(request.streamId, "SET_PARAMS", log);
    if (!stream) return VIRTIO_SND_S_BAD_MSG;
    if (transition(stream.state, VIRTIO_SND_R_PCM_SET_PARAMS) === null) {
      this.#reject(`SET_PARAMS on stream ${stream.id} in state ${stream.state} (§5.14.6.6.1)`, log);
      return VIRTIO_SND_S_BAD_MSG;
    }
    const params = resolveParams(request, stream.capabilities);
    if ("status" in params) {
      this.#reject(`SET_PARAMS on stream ${stream.id}: ${params.reason}`, log);
      return params.status;
    }
    if (stream.state === "prepare") {
      // Buffers queued for the old parameters were never played.
      stream.host?.release();
      stream.completeAll(VIRTIO_SND_S_IO_ERR);
    }
    stream.params = params;
    stream.state = "set-parameters";
    log.debug(
      `stream ${stream.id}: ${params.format.name} ${params.rate} Hz ${params.channels} ch, ` +
        `buffer ${params.bufferBytes} period ${params.periodBytes} features 0x${
          params.features.toString(16)
        }`,
    );
    return VIRTIO_SND_S_OK;
  }

  /** §5.14.6.6.4-7: PREPARE, RELEASE, START, STOP. */
  #lifecycle(code: number, streamId: number, log: Logger): Status {
    const name = commandName(code);
    const stream = this.#stream(streamId, name, log);
    if (!stream) return VIRTIO_SND_S_BAD_MSG;
    const next = transition(stream.state, code);
    if (next === null) {
      this.#reject(`${name} on stream ${stream.id} in state ${stream.state} (§5.14.6.6.1)`, log);
      return VIRTIO_SND_S_BAD_MSG;
    }
    const host = stream.host;
    try {
      switch (code) {
        case VIRTIO_SND_R_PCM_PREPARE:
          host?.prepare(stream.params, { newParams: stream.state === "set-parameters" });
          break;
        case VIRTIO_SND_R_PCM_START:
          stream.resetPeriods();
          host?.start();
          break;
        case VIRTIO_SND_R_PCM_STOP:
          host?.stop();
          break;
        case VIRTIO_SND_R_PCM_RELEASE:
          // Messages the driver made available count as pending even if their kick is
          // still on its way (each queue has its own eventfd): take them first.
          this.#serveIo(stream.direction === "output" ? TXQ : RXQ);
          host?.release();
          // §5.14.6.6.5.1: every pending message completes before the request does.
          stream.completeAll();
          break;
      }
    } catch (error) {
      log.error(
        `${name} on stream ${stream.id} failed on the host: ${
          error instanceof Error ? error.message : error
        }`,
      );
      return VIRTIO_SND_S_IO_ERR;
    }
    log.debug(`stream ${stream.id}: ${stream.state} -> ${next}`);
    stream.state = next;
    return VIRTIO_SND_S_OK;
  }

  // --- tx and rx queues (§5.14.6.8) ---

  #serveIo(index: number): void {
    const queue = this.#context?.queue(index);
    if (!queue) return;
    const log = this.#log();
    const woken = new Set<DeviceStream>();
    do {
      queue.disableNotification();
      for (let chain = queue.next(); chain !== null; chain = queue.next()) {
        const stream = this.#accept(queue, chain, log);
        if (stream) woken.add(stream);
      }
    } while (queue.enableNotification());
    this.#flush();
    for (const stream of woken) stream.host?.wake();
  }

  /** Parses one I/O message; holds it on its stream, or returns it at once with an error. */
  #accept(queue: SplitQueue, chain: DescriptorChain, log: Logger): DeviceStream | null {
    const output = queue.index === TXQ;
    const where = `${output ? "tx" : "rx"} message at head ${chain.head}`;
    const statusRoom = chain.writableLength;
    // The status is the last 8 device-writable bytes; rx data precedes it.
    if (statusRoom < PCM_STATUS_SIZE || (output && statusRoom !== PCM_STATUS_SIZE)) {
      this.#reject(`${where}: ${statusRoom} device-writable bytes, not a status`, log);
      if (statusRoom >= PCM_STATUS_SIZE) {
        this.#finish(queue, chain, VIRTIO_SND_S_BAD_MSG, 0);
      } else {
        queue.addUsed(chain.head, 0);
        this.#dirty.add(queue);
      }
      return null;
    }
    const status = tail(chain.writable, chain.writableLength - PCM_STATUS_SIZE);
    const data = output
      ? tail(chain.readable, XFER_SIZE)
      : head(chain.writable, chain.writableLength - PCM_STATUS_SIZE);
    const length = output
      ? chain.readableLength - XFER_SIZE
      : chain.writableLength - PCM_STATUS_SIZE;
    if (chain.readableLength < XFER_SIZE || (!output && chain.readableLength !== XFER_SIZE)) {
      this.#reject(`${where}: ${chain.readableLength} device-readable bytes, header is 4`, log);
      this.#finish(queue, chain, VIRTIO_SND_S_BAD_MSG, 0);
      return null;
    }
    const header = readSlices(chain.readable, { length: XFER_SIZE });
    const streamId = new DataView(header.buffer, header.byteOffset, 4).getUint32(0, true);
    const stream = this.#streams[streamId];
    if (!stream || (stream.direction === "output") !== output) {
      this.#reject(`${where}: stream ${streamId} is not an ${output ? "output" : "input"}`, log);
      this.#finish(queue, chain, VIRTIO_SND_S_BAD_MSG, 0);
      return null;
    }
    if (stream.state === "set-parameters" || stream.state === "release") {
      this.#reject(`${where}: stream ${streamId} is not prepared (${stream.state})`, log);
      this.#finish(queue, chain, VIRTIO_SND_S_IO_ERR, 0);
      return null;
    }
    const message: IoMessage = { queue, head: chain.head, data, length, status, moved: 0 };
    if (length === 0) {
      this.#complete(message, VIRTIO_SND_S_OK, 0);
      return null;
    }
    stream.enqueue(message);
    return stream;
  }

  #finish(queue: SplitQueue, chain: DescriptorChain, status: Status, written: number): void {
    writeSlices(
      tail(chain.writable, chain.writableLength - PCM_STATUS_SIZE),
      encodePcmStatus(status, 0),
    );
    queue.addUsed(chain.head, written + PCM_STATUS_SIZE);
    this.#dirty.add(queue);
  }

  #complete(message: IoMessage, status: Status, latencyBytes: number): void {
    // A stopped ring took its chains with it (queueStopped dropped them); a
    // ring rebuilt over a new memory table is the same ring, and the core
    // keeps the old mappings until these chains are back.
    const queue = this.#context?.queue(message.queue.index);
    if (!queue) return;
    writeSlices(message.status, encodePcmStatus(status, latencyBytes));
    // §5.14.6.8.2: an rx used length counts the frames written plus the status.
    const written = queue.index === RXQ ? message.moved : 0;
    queue.addUsed(message.head, written + PCM_STATUS_SIZE);
    this.#dirty.add(queue);
  }

  #flush(): void {
    for (const queue of this.#dirty) queue.notify();
    this.#dirty.clear();
  }

  // --- event queue (§5.14.6.7) ---

  #sendEvent(event: Uint8Array): void {
    if (this.#pendingEvents.length === MAX_PENDING_EVENTS) this.#pendingEvents.shift();
    this.#pendingEvents.push(event);
    this.#drainPendingEvents();
  }

  #drainPendingEvents(): void {
    const queue = this.#context?.queue(EVENTQ);
    if (!queue) return;
    while (this.#pendingEvents.length > 0) {
      const chain = queue.next();
      if (chain === null) break;
      if (chain.readableLength > 0 || chain.writableLength < EVENT_SIZE) {
        // §5.14.5.1: event buffers are device-writable and hold a whole event.
        this.#reject(
          `event buffer at head ${chain.head} is not ${EVENT_SIZE} writable bytes`,
          this.#log(),
        );
        queue.addUsed(chain.head, 0);
        continue;
      }
      const event = this.#pendingEvents.shift()!;
      queue.addUsed(chain.head, writeSlices(chain.writable, event));
    }
    queue.notify();
  }

  #log(): Logger {
    if (!this.#context) throw new Error("sound device used before activation");
    return this.#context.log;
  }

  #reject(message: string, log: Logger): void {
    this.#rejected++;
    if (this.#rejected <= LOUD_REJECTIONS) log.warn(message);
    else log.debug(message);
  }
}

/** The slices of `slices` from byte `skip` on. */
function tail(slices: readonly GuestSlice[], skip: number): GuestSlice[] {
  const out: GuestSlice[] = [];
  for (const slice of slices) {
    if (skip >= slice.length) {
      skip -= slice.length;
      continue;
    }
    out.push({ region: slice.region, offset: slice.offset + skip, length: slice.length - skip });
    skip = 0;
  }
  return out;
}

/** The first `length` bytes of `slices`. */
function head(slices: readonly GuestSlice[], length: number): GuestSlice[] {
  const out: GuestSlice[] = [];
  for (const slice of slices) {
    if (length === 0) break;
    const take = Math.min(slice.length, length);
    out.push({ region: slice.region, offset: slice.offset, length: take });
    length -= take;
  }
  return out;
}

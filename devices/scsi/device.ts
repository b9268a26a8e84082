/**
 * The virtio SCSI host device (VIRTIO 1.2 §5.6, device ID 8; QEMU's
 * vhost-user-scsi-pci supplies the ID). Request queues carry SCSI commands
 * for target 0, executed concurrently and completed out of order as their
 * I/O finishes (§5.6.6.1); the control queue answers task management and
 * asynchronous notification requests (§5.6.6.2); the event queue's buffers
 * are left unused, since no hot-plug or parameter-change event is offered.
 *
 * @module
 */

import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Logger } from "../../core/log.ts";
import type { GuestSlice, MemoryRegion } from "../../core/memory/guest_memory.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  type DescriptorChain,
  readSlices,
  writeSlices,
} from "../../core/virtio/descriptor_chain.ts";
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import type { SplitQueue } from "../../core/virtio/split_queue.ts";
import type { BlockIo } from "./block_io.ts";
import type { Outcome, RequestBuffers } from "./logical_unit.ts";
import type { Target } from "./target.ts";
import {
  AN_RESPONSE_SIZE,
  CONFIG_CDB_SIZE_OFFSET,
  CONFIG_SENSE_SIZE_OFFSET,
  configSpace,
  CONTROLQ,
  type ControlRequest,
  decodeCommandRequest,
  decodeControlRequest,
  encodeCommandResponse,
  type LunAddress,
  REQUEST_HEADER_SIZE,
  REQUESTQ_BASE,
  RESPONSE_HEADER_SIZE,
  TMF_REQUEST_SIZE,
  TMF_RESPONSE_SIZE,
  TmfSubtype,
  VIRTIO_SCSI_CDB_SIZE,
  VIRTIO_SCSI_F_CHANGE,
  VIRTIO_SCSI_S_FUNCTION_COMPLETE,
  VIRTIO_SCSI_SENSE_SIZE,
  VirtioScsiResponse,
} from "./virtio_scsi.ts";

/** Largest virtqueue size accepted (QEMU's default is 128). */
export const MAX_QUEUE_SIZE = 1024;
/** Request queues offered: QEMU's `num_queues` may ask for up to this many. */
export const MAX_REQUEST_QUEUES = 16;
/** Requests started per pass over one queue before the loop serves other fds. */
export const BUDGET = 256;
/** Longest a used-buffer notification is held while the driver keeps submitting, in µs. */
export const MAX_COALESCE_MICROS = 1000;
/** Most notifications sent at once after holds that caught no further request (see `#skip`). */
export const MAX_COALESCE_BACKOFF = 256;

/** Options of {@link ScsiDevice}. */
export interface ScsiDeviceOptions {
  /** Target 0 and its units (shared by every connection). */
  readonly target: Target;
  /** The I/O engine (shared by every connection). */
  readonly io: BlockIo;
  /** Request queues offered (default {@link MAX_REQUEST_QUEUES}). */
  readonly requestQueues?: number;
  /**
   * Completion coalescing (`--coalesce-us`): while the driver keeps
   * submitting, hold used-buffer notifications until it has been quiet this
   * many µs (at most {@link MAX_COALESCE_MICROS} in all). 0 (the default):
   * notify after every serve pass.
   */
  readonly coalesceMicros?: number;
}

/** A used-buffer notification being held (completion coalescing). */
interface Hold {
  /** When the hold began (`performance.now()`). */
  readonly since: number;
  /** When the last request arrived during the hold, or the hold began. */
  quietSince: number;
  /** Requests started when that was seen (`ScsiDevice#started`). */
  started: number;
  /** Whether any request arrived during the hold. */
  caught: boolean;
}

/** A request whose command has not completed. */
interface InFlight {
  readonly queue: SplitQueue;
  /** The ring's life it was taken in (see `ScsiDevice#epochs`). */
  readonly epoch: number;
  readonly chain: DescriptorChain;
  readonly lun: number;
  readonly id: bigint;
  readonly buffers: RequestBuffers;
  readonly regions: readonly MemoryRegion[];
}

/** A task management function waiting for the requests it covers to finish. */
interface PendingTmf {
  readonly queue: SplitQueue;
  readonly chain: DescriptorChain;
  /** True while a request it waits for is in flight. */
  readonly waiting: () => boolean;
}

/** The SCSI host for one front-end connection. */
export class ScsiDevice implements VirtioDevice {
  readonly name = "scsi";
  readonly numQueues: number;
  readonly maxQueueSize: number = MAX_QUEUE_SIZE;
  /**
   * §5.6.3 defines INOUT, HOTPLUG, CHANGE and T10_PI. Only CHANGE is
   * offered: QEMU's vhost-user-scsi-pci acks it on its own (its
   * `param_change` property, on by default) and a back-end that did not
   * offer it could not accept QEMU's features. It lets the device report
   * parameter changes, which this one never has: no event is sent. No
   * HOTPLUG (LUNs are fixed), no INOUT (no command moves data both ways).
   */
  readonly features: bigint = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) |
    bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_SCSI_F_CHANGE);
  /** As upstream (MQ, CONFIG), plus REPLY_ACK and CONFIGURE_MEM_SLOTS. */
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.CONFIG) | bit(P.REPLY_ACK) |
    bit(P.CONFIGURE_MEM_SLOTS);
  readonly #target: Target;
  readonly #io: BlockIo;
  readonly #config: Uint8Array;
  #context: DeviceContext | null = null;
  readonly #inFlight = new Set<InFlight>();
  #pendingTmfs: PendingTmf[] = [];
  readonly #dirty = new Set<SplitQueue>();
  #notifyScheduled = false;
  readonly #deferred = new Set<number>();
  readonly #coalesceMs: number;
  /** Requests started on the request queues, ever: new arrivals during a hold. */
  #started = 0;
  #hold: Hold | null = null;
  /** Notifications still to send at once, after a hold that caught nothing (backing off). */
  #skip = 0;
  /** The next back-off: doubles while holds catch nothing, up to {@link MAX_COALESCE_BACKOFF}. */
  #backoff = 1;
  /**
   * Per queue, bumped when the ring stops: a request completes into the
   * ring it was taken from, even while that ring is disabled or rebuilt
   * over a new memory table, but never into a ring set up again after
   * GET_VRING_BASE.
   */
  readonly #epochs: number[] = [];
  /** The ring object last served per queue (the context lends only enabled rings). */
  readonly #rings: (SplitQueue | undefined)[] = [];
  #rejected = 0;
  /** The header of the request being started: decoded at once, then reused. */
  readonly #header = new Uint8Array(REQUEST_HEADER_SIZE);
  /** The response header being written: copied into the ring at once, then reused. */
  readonly #response = new Uint8Array(RESPONSE_HEADER_SIZE);

  /** A device serving `options.target` through `options.io`. */
  constructor(options: ScsiDeviceOptions) {
    const requestQueues = options.requestQueues ?? MAX_REQUEST_QUEUES;
    this.numQueues = REQUESTQ_BASE + requestQueues;
    this.#target = options.target;
    this.#io = options.io;
    this.#config = configSpace({ numQueues: requestQueues, queueSize: 128 });
    this.#coalesceMs = (options.coalesceMicros ?? 0) / 1000;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
    // A front-end starting the device is a power on: defaults, and a unit attention.
    this.#target.powerOn();
  }

  readConfig(offset: number, length: number): Uint8Array {
    if (offset + length > this.#config.length) {
      throw new RangeError(`config read of ${length} bytes at ${offset} is outside 36 bytes`);
    }
    return this.#config.slice(offset, offset + length);
  }

  /** §5.6.4: the driver may write sense_size and cdb_size; only the values served are accepted. */
  writeConfig(offset: number, data: Uint8Array): void {
    const value = data.length === 4
      ? new DataView(data.buffer, data.byteOffset).getUint32(0, true)
      : -1;
    if (
      (offset === CONFIG_SENSE_SIZE_OFFSET && value === VIRTIO_SCSI_SENSE_SIZE) ||
      (offset === CONFIG_CDB_SIZE_OFFSET && value === VIRTIO_SCSI_CDB_SIZE)
    ) return;
    throw new RangeError(`config write of ${data.length} bytes at ${offset} is not supported`);
  }

  onKick(queue: number): void {
    if (queue === CONTROLQ) this.#serveControl();
    else if (queue >= REQUESTQ_BASE && queue < this.numQueues) this.#serveRequests(queue);
    // The event queue: buffers wait there for events this device never sends.
  }

  /**
   * Waits for the I/O of requests taken from `queue`, so each is answered
   * in the ring before GET_VRING_BASE returns its index: a stopped or
   * migrated guest loses no completed write, and retries nothing twice.
   */
  quiesce(queue: number): void {
    if ([...this.#inFlight].some((r) => r.queue.index === queue)) this.#io.drain();
    // Held notifications too: the front-end reads the used index next.
    this.#flush();
  }

  queueStopped(queue: number): void {
    // Anything still in flight on it completes into nothing (the ring is gone).
    this.#epochs[queue] = (this.#epochs[queue] ?? 0) + 1;
    this.#rings[queue] = undefined;
    this.#pendingTmfs = this.#pendingTmfs.filter((p) => p.queue.index !== queue);
  }

  reset(): void {
    this.#context = null;
    this.#rings.length = 0;
    this.#pendingTmfs = [];
    this.#dirty.clear();
    this.#hold = null;
  }

  #serveRequests(index: number): void {
    const context = this.#context;
    const queue = context?.queue(index);
    if (!context || !queue) return;
    this.#rings[index] = queue;
    let served = 0;
    let deferred = false;
    do {
      queue.disableNotification();
      for (;;) {
        // A guest that keeps its ring full gets its turn, then the other fds theirs.
        if (served === BUDGET && queue.hasAvailable()) {
          deferred = true;
          if (!this.#deferred.has(index)) {
            this.#deferred.add(index);
            context.loop.defer(() => {
              this.#deferred.delete(index);
              this.#serveRequests(index);
            });
          }
          break;
        }
        const chain = queue.next();
        if (chain === null) break;
        this.#start(queue, chain, context.log);
        served++;
        this.#started++;
      }
      // While the loop polls, enableNotification leaves kicks off and the
      // core looks at the ring instead (core/backend.ts, "rings polled in memory").
    } while (!deferred && queue.enableNotification());
    this.#io.flush();
    this.#notifyDirty();
  }

  #start(queue: SplitQueue, chain: DescriptorChain, log: Logger): void {
    if (chain.readableLength < REQUEST_HEADER_SIZE || chain.writableLength < RESPONSE_HEADER_SIZE) {
      this.#reject(queue, chain, {
        reason: `${chain.readableLength} readable and ${chain.writableLength} writable bytes ` +
          `cannot hold a ${REQUEST_HEADER_SIZE}-byte request and ${RESPONSE_HEADER_SIZE}-byte response`,
        log,
      });
      return;
    }
    copyHeader(chain.readable, this.#header);
    const request = decodeCommandRequest(this.#header);
    const buffers: RequestBuffers = {
      dataOut: skipBytes(chain.readable, REQUEST_HEADER_SIZE),
      dataOutLength: chain.readableLength - REQUEST_HEADER_SIZE,
      dataIn: skipBytes(chain.writable, RESPONSE_HEADER_SIZE),
      dataInLength: chain.writableLength - RESPONSE_HEADER_SIZE,
    };
    const lun = targetLun(request.address);
    if (lun === null) {
      // §5.6.6.1: no such target (only target 0 exists), or a LUN field that is not one.
      this.#respond(queue, chain, {
        outcome: { response: VirtioScsiResponse.BAD_TARGET, status: 0, dataIn: 0, dataOut: 0 },
        buffers,
      });
      return;
    }
    // The I/O may outlive the memory table: its regions stay mapped until it completes.
    const regions = chainRegions(chain);
    for (const region of regions) region.retain();
    const epoch = this.#epochs[queue.index] ?? 0;
    const record: InFlight = { queue, epoch, chain, lun, id: request.id, buffers, regions };
    this.#inFlight.add(record);
    this.#target.execute(
      lun,
      { cdb: request.cdb, buffers },
      (outcome) => this.#complete(record, outcome),
    );
  }

  #complete(record: InFlight, outcome: Outcome): void {
    this.#inFlight.delete(record);
    const { chain, buffers } = record;
    // Only into the ring it came from: after a reset or GET_VRING_BASE that
    // ring's memory may be gone, and a ring set up again starts afresh.
    const queue = this.#ring(record.queue.index, record.epoch);
    if (queue) this.#respond(queue, chain, { outcome, buffers });
    for (const region of record.regions) region.release();
    if (this.#pendingTmfs.length > 0) this.#answerTmfs();
  }

  #respond(
    queue: SplitQueue,
    chain: DescriptorChain,
    result: { outcome: Outcome; buffers: RequestBuffers },
  ): void {
    const { outcome, buffers } = result;
    const residual = outcome.dataIn > 0 || buffers.dataOutLength === 0
      ? buffers.dataInLength - outcome.dataIn
      : buffers.dataOutLength - outcome.dataOut;
    const header = encodeCommandResponse({
      response: outcome.response,
      status: outcome.status,
      sense: outcome.sense,
      residual,
    }, this.#response);
    writeSlices(chain.writable, header);
    queue.addUsed(chain.head, RESPONSE_HEADER_SIZE + outcome.dataIn);
    this.#markDirty(queue);
  }

  /** The live ring of `index` if it is still in `epoch`: rebuilt over new memory, maybe disabled. */
  #ring(index: number, epoch: number): SplitQueue | null {
    if (!this.#context || (this.#epochs[index] ?? 0) !== epoch) return null;
    const queue = this.#context.queue(index) ?? this.#rings[index] ?? null;
    if (queue) this.#rings[index] = queue;
    return queue;
  }

  #markDirty(queue: SplitQueue): void {
    this.#dirty.add(queue);
    if (this.#notifyScheduled || !this.#context) return;
    this.#notifyScheduled = true;
    this.#context.loop.defer(() => this.#notifyDirty());
  }

  /**
   * One used-buffer notification per queue that completed requests
   * (§2.7.7), at once or, with coalescing, held while the driver keeps
   * submitting: §2.7.10 lets the device suppress notifications as long as
   * it sends one eventually. A TCG guest's single vCPU pays for each
   * interrupt, and at depth 32 it submits a burst of requests before it
   * waits; a hold ends once no request came for the coalescing time, so the
   * burst's completions arrive in one interrupt. A driver that waits for
   * each completion (depth 1) would only be slowed by holds: one that
   * caught no further request sends the next notifications at once,
   * 1, 2, 4… up to {@link MAX_COALESCE_BACKOFF} of them, before it tries again.
   */
  #notifyDirty(): void {
    this.#notifyScheduled = false;
    if (this.#coalesceMs === 0 || this.#controlDirty()) {
      this.#flush();
      return;
    }
    if (this.#hold !== null || this.#dirty.size === 0) return;
    if (this.#skip > 0) {
      this.#skip--;
      this.#flush();
      return;
    }
    const now = performance.now();
    this.#hold = { since: now, quietSince: now, started: this.#started, caught: false };
    this.#context?.loop.defer(this.#checkHold);
  }

  /** Runs once per loop pass during a hold: ends it when the driver went quiet. */
  readonly #checkHold = (): void => {
    const hold = this.#hold;
    if (hold === null) return;
    const now = performance.now();
    if (this.#started !== hold.started) {
      hold.started = this.#started;
      hold.quietSince = now;
      hold.caught = true;
    }
    if (
      this.#context !== null && now - hold.quietSince < this.#coalesceMs &&
      now - hold.since < MAX_COALESCE_MICROS / 1000
    ) {
      this.#context.loop.defer(this.#checkHold);
      return;
    }
    if (hold.caught) this.#backoff = 1;
    else {
      this.#skip = this.#backoff;
      this.#backoff = Math.min(this.#backoff * 2, MAX_COALESCE_BACKOFF);
    }
    this.#flush();
  };

  /** Control queue answers (task management) are never held. */
  #controlDirty(): boolean {
    for (const queue of this.#dirty) if (queue.index === CONTROLQ) return true;
    return false;
  }

  /** Sends the notifications due (held or not) now. */
  #flush(): void {
    this.#hold = null;
    const context = this.#context;
    for (const queue of this.#dirty) {
      if (context && this.#rings[queue.index] === queue) queue.notify();
    }
    this.#dirty.clear();
  }

  #reject(
    queue: SplitQueue,
    chain: DescriptorChain,
    detail: { reason: string; log: Logger },
  ): void {
    this.#rejected++;
    const message =
      `queue ${queue.index}: rejected request at head ${chain.head}: ${detail.reason}`;
    if (this.#rejected <= 10) detail.log.warn(message);
    else detail.log.debug(message);
    queue.addUsed(chain.head, 0);
    this.#markDirty(queue);
  }

  #serveControl(): void {
    const context = this.#context;
    const queue = context?.queue(CONTROLQ);
    if (!context || !queue) return;
    this.#rings[CONTROLQ] = queue;
    do {
      queue.disableNotification();
      for (let chain = queue.next(); chain !== null; chain = queue.next()) {
        this.#control(queue, chain, context.log);
      }
    } while (queue.enableNotification());
    this.#notifyDirty();
  }

  #control(queue: SplitQueue, chain: DescriptorChain, log: Logger): void {
    const request = decodeControlRequest(
      readSlices(chain.readable, { length: Math.min(chain.readableLength, TMF_REQUEST_SIZE) }),
    );
    const need = request?.kind === "an" ? AN_RESPONSE_SIZE : TMF_RESPONSE_SIZE;
    if (request === null || request.kind === "unknown" || chain.writableLength < need) {
      const why = request?.kind === "unknown"
        ? `unknown control request type ${request.type}`
        : "too short for its control request and response";
      this.#reject(queue, chain, { reason: why, log });
      return;
    }
    if (request.kind === "an") {
      // §5.6.6.2: no asynchronous event is supported: event_actual 0.
      const response = targetLun(request.address) === null
        ? VirtioScsiResponse.BAD_TARGET
        : VirtioScsiResponse.OK;
      this.#controlReply(queue, chain, Uint8Array.from([0, 0, 0, 0, response]));
      return;
    }
    const tmf = this.#taskManagement(request);
    if (typeof tmf === "number") this.#controlReply(queue, chain, Uint8Array.of(tmf));
    else if (!tmf.waiting()) {
      this.#controlReply(queue, chain, Uint8Array.of(VIRTIO_SCSI_S_FUNCTION_COMPLETE));
    } else this.#pendingTmfs.push({ queue, chain, waiting: tmf.waiting });
  }

  /**
   * A task management function's response, or what it waits for. Running
   * I/O cannot be recalled from the kernel: aborting requests means waiting
   * until they completed (their answers reach the driver first), then
   * reporting FUNCTION COMPLETE.
   */
  #taskManagement(
    request: Extract<ControlRequest, { kind: "tmf" }>,
  ): number | { waiting: () => boolean } {
    const lun = targetLun(request.address);
    if (lun === null) return VirtioScsiResponse.BAD_TARGET;
    const onLun = (): boolean => [...this.#inFlight].some((r) => r.lun === lun);
    const task = (): boolean =>
      [...this.#inFlight].some((r) => r.lun === lun && r.id === request.id);
    if (request.subtype === TmfSubtype.I_T_NEXUS_RESET) {
      this.#target.reset();
      return { waiting: () => this.#inFlight.size > 0 };
    }
    if (!this.#target.unit(lun)) return VirtioScsiResponse.INCORRECT_LUN;
    if (request.subtype === TmfSubtype.LOGICAL_UNIT_RESET) this.#target.reset(lun);
    switch (request.subtype) {
      case TmfSubtype.ABORT_TASK:
        return { waiting: task };
      case TmfSubtype.ABORT_TASK_SET:
      case TmfSubtype.CLEAR_TASK_SET:
      case TmfSubtype.LOGICAL_UNIT_RESET:
        return { waiting: onLun };
      case TmfSubtype.QUERY_TASK:
        return task() ? VirtioScsiResponse.FUNCTION_SUCCEEDED : VIRTIO_SCSI_S_FUNCTION_COMPLETE;
      case TmfSubtype.QUERY_TASK_SET:
        return onLun() ? VirtioScsiResponse.FUNCTION_SUCCEEDED : VIRTIO_SCSI_S_FUNCTION_COMPLETE;
      default:
        // CLEAR ACA (NormACA is 0) and unknown functions.
        return VirtioScsiResponse.FUNCTION_REJECTED;
    }
  }

  #answerTmfs(): void {
    const still: PendingTmf[] = [];
    for (const pending of this.#pendingTmfs) {
      if (pending.waiting()) still.push(pending);
      else if (this.#context?.queue(CONTROLQ) === pending.queue) {
        this.#controlReply(
          pending.queue,
          pending.chain,
          Uint8Array.of(VIRTIO_SCSI_S_FUNCTION_COMPLETE),
        );
      }
    }
    this.#pendingTmfs = still;
  }

  /** Writes a control response (the device-writable tail of the request) and returns the chain. */
  #controlReply(queue: SplitQueue, chain: DescriptorChain, reply: Uint8Array): void {
    const written = writeSlices(chain.writable, reply);
    queue.addUsed(chain.head, written);
    this.#markDirty(queue);
  }
}

/** The LUN a request addresses on target 0, or `null` for any other target or a bad field. */
function targetLun(address: LunAddress): number | null {
  return address.kind === "lun" && address.target === 0 ? address.lun : null;
}

/** Copies the first `out.length` bytes of `slices` (which hold at least that many) into `out`. */
function copyHeader(slices: readonly GuestSlice[], out: Uint8Array): void {
  const first = slices[0];
  if (first.length >= out.length) {
    // The usual case: Linux puts the whole header in one descriptor.
    out.set(first.region.bytes.subarray(first.offset, first.offset + out.length));
    return;
  }
  out.set(readSlices(slices, { length: out.length }));
}

/** The distinct regions `chain`'s buffers lie in (usually one). */
function chainRegions(chain: DescriptorChain): MemoryRegion[] {
  const regions: MemoryRegion[] = [];
  for (const slices of [chain.readable, chain.writable]) {
    for (const slice of slices) {
      if (!regions.includes(slice.region)) regions.push(slice.region);
    }
  }
  return regions;
}

/** `slices` without their first `skip` bytes. */
function skipBytes(slices: readonly GuestSlice[], skip: number): GuestSlice[] {
  const out: GuestSlice[] = [];
  let left = skip;
  for (const slice of slices) {
    if (left >= slice.length) {
      left -= slice.length;
      continue;
    }
    out.push(
      left === 0
        ? slice
        : { region: slice.region, offset: slice.offset + left, length: slice.length - left },
    );
    left = 0;
  }
  return out;
}

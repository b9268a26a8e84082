/**
 * The virtio I2C adapter (VIRTIO 1.2 §5.18, device ID 34; QEMU's
 * vhost-user-i2c-pci supplies the ID): one request queue, no config space.
 *
 * **Combined transfers.** Linux's i2c-virtio queues the messages of one
 * `i2c_transfer` as consecutive requests, FAIL_NEXT set on all but the last,
 * and kicks once (drivers/i2c/busses/i2c-virtio.c). §5.18.6.1 calls such
 * requests a group; its write-then-read example is the repeated start of a
 * combined transfer. So a group is run as one host transfer (one `I2C_RDWR`:
 * start, repeated starts, one stop), and a request without FAIL_NEXT ends
 * it. Requests are processed in order (§5.18.6.2); the first failed request
 * and the rest of its group get VIRTIO_I2C_MSG_ERR, those before it
 * VIRTIO_I2C_MSG_OK. A group still open when the ring is drained waits for
 * the rest (the driver publishes requests one by one before its kick), but
 * not forever: Linux kicks a partial group when the ring is full and then
 * waits for it, so after {@link OPEN_GROUP_WAIT_MS} the part is run alone.
 *
 * **Used lengths** (§2.7.8): every device-writable byte is written — a
 * read's buffer (zeros if the read failed) and the status — and the used
 * length is their count: 1 for a write, buffer + 1 for a read. A malformed
 * chain gets its status byte and used length 0 (unless the status is all).
 *
 * **The loop.** A host adapter's transfer is a synchronous ioctl that lasts
 * the bus time; the device runs one such transfer per event-loop pass and
 * defers the rest, so another guest waits at most one transfer.
 *
 * @module
 */

import { DeferredPass } from "../../core/deferred_pass.ts";
import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Timer } from "../../core/event_loop.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import { type DescriptorChain, writeSlices } from "../../core/virtio/descriptor_chain.ts";
import { VIRTIO_DEVICE_FEATURES } from "../../core/virtio/features.ts";
import type { SplitQueue } from "../../core/virtio/split_queue.ts";
import type { I2cBus, I2cMessage } from "./adapter.ts";
import {
  type DecodedRequest,
  decodeRequest,
  type I2cRequest,
  IN_HDR_SIZE,
  VIRTIO_I2C_F_ZERO_LENGTH_REQUEST,
  VIRTIO_I2C_MSG_ERR,
  VIRTIO_I2C_MSG_OK,
} from "./request.ts";

/** §5.18.2: the only virtqueue. */
export const REQUESTQ = 0;
/** Largest queue size accepted, as upstream. */
export const REQUESTQ_MAX_SIZE = 1024;
/** How long a group whose last request has FAIL_NEXT waits for the rest. */
export const OPEN_GROUP_WAIT_MS = 20;
/** In-process transfers (the simulated adapter) served per pass before other fds get a turn. */
export const BUDGET = 256;
/** Rejections logged at warn level before the rest go to debug. */
const LOUD_REJECTIONS = 10;

/** One chain of the group being collected. */
interface Pending {
  readonly chain: DescriptorChain;
  readonly request: DecodedRequest;
}

/** The I2C device for one front-end connection. */
export class I2cDevice implements VirtioDevice {
  readonly name = "i2c";
  readonly numQueues = 1;
  readonly maxQueueSize: number = REQUESTQ_MAX_SIZE;
  /** Upstream's bits: VERSION_1, the ring features, and the mandatory ZERO_LENGTH_REQUEST (§5.18.3). */
  readonly features: bigint = VIRTIO_DEVICE_FEATURES | bit(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST);
  /** MQ as upstream; REPLY_ACK and CONFIGURE_MEM_SLOTS as the project's other devices. */
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS);
  readonly #bus: I2cBus;
  #context: DeviceContext | null = null;
  #group: Pending[] = [];
  #groupQueue: SplitQueue | null = null;
  #groupTimer: Timer | null = null;
  readonly #pass = new DeferredPass(() => this.#serve());
  #rejected = 0;
  #adapterErrors = 0;
  /** The driver accepted VIRTIO_I2C_F_ZERO_LENGTH_REQUEST (SET_FEATURES precedes activation). */
  #zeroLength = false;

  /** A device whose guest sees the clients of `bus`. */
  constructor(options: { bus: I2cBus }) {
    this.#bus = options.bus;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
    // §5.18.3: the device MUST reject such a driver; vhost-user gives a back-end no way to fail
    // feature negotiation, so it is said. Linux's driver refuses a device without the bit.
    if (!this.#zeroLength) {
      context.log.warn("the driver did not accept VIRTIO_I2C_F_ZERO_LENGTH_REQUEST (§5.18.3)");
    }
  }

  acknowledgeFeatures(features: bigint): void {
    this.#zeroLength = (features & bit(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST)) !== 0n;
  }

  onKick(queue: number): void {
    if (queue === REQUESTQ) this.#serve();
  }

  queueStopped(): void {
    this.#dropGroup();
  }

  reset(): void {
    this.#dropGroup();
    this.#context = null;
  }

  #serve(): void {
    const context = this.#context;
    const queue = context?.queue(REQUESTQ);
    if (!context || !queue) return;
    if (this.#groupQueue !== null && this.#groupQueue !== queue) this.#dropGroup();
    this.#groupTimer?.cancel();
    this.#groupTimer = null;
    let transfers = 0;
    let blockingDone = false;
    let deferred = false;
    do {
      queue.disableNotification();
      for (;;) {
        if ((blockingDone || transfers >= BUDGET) && queue.hasAvailable()) {
          deferred = true;
          this.#pass.schedule(context.loop);
          break;
        }
        const chain = queue.next();
        if (chain === null) break;
        const request = decodeRequest(chain);
        this.#group.push({ chain, request });
        this.#groupQueue = queue;
        // A group ends at a request without FAIL_NEXT, or at the ring's size.
        if (request.failNext && this.#group.length < queue.size) continue;
        blockingDone = this.#runGroup(queue, context) || blockingDone;
        transfers++;
      }
    } while (!deferred && queue.enableNotification());
    if (this.#group.length > 0 && !deferred) {
      this.#groupTimer = context.loop.setTimer(OPEN_GROUP_WAIT_MS, () => {
        this.#groupTimer = null;
        const current = context.queue(REQUESTQ);
        if (current === null || current !== this.#groupQueue) return this.#dropGroup();
        context.log.debug(`running a group of ${this.#group.length} without its end`);
        this.#runGroup(current, context);
        current.notify();
      });
    }
    queue.notify();
  }

  /** Runs and completes the collected group; returns whether a blocking adapter ran it. */
  #runGroup(queue: SplitQueue, context: DeviceContext): boolean {
    const group = this.#group;
    this.#group = [];
    this.#groupQueue = null;
    const requests: I2cRequest[] = [];
    let failure: string | null = null;
    let loud = false;
    for (const { chain, request } of group) {
      if (request.kind === "malformed") {
        failure ??= `request at head ${chain.head}: ${request.reason} (§5.18.6.1)`;
        loud ||= request.loud;
      } else requests.push(request);
    }
    let completed = 0;
    let blocking = false;
    if (failure === null) {
      const adapter = this.#bus.adapterFor(requests[0].address);
      // An address nobody configured ends the transfer there, as a NACK on
      // the wire would (silently: bus scans are normal); the guest never
      // reaches an unconfigured client on a host bus.
      let end = requests.findIndex((r) => this.#bus.adapterFor(r.address) !== adapter);
      if (end === -1) end = requests.length;
      else if (this.#bus.adapterFor(requests[end].address) !== undefined) {
        failure = "a combined transfer spanning two host adapters";
        loud = true;
      }
      if (adapter !== undefined && failure === null && end > 0) {
        const messages: I2cMessage[] = requests.slice(0, end).map((r) => ({
          address: r.address,
          read: r.read,
          data: r.data,
        }));
        const result = adapter.transfer(messages);
        blocking = adapter.blocking;
        completed = result.completed;
        if (result.error !== undefined) {
          const message = `${adapter.name}: ${result.error}`;
          // A guest can ask for shapes the adapter cannot run as often as it likes.
          if (!result.nack && ++this.#adapterErrors <= LOUD_REJECTIONS) context.log.warn(message);
          else context.log.debug(message);
        }
      }
    }
    if (failure !== null) this.#reject(failure, loud, context);
    group.forEach(({ chain, request }, i) => {
      const ok = i < completed;
      queue.addUsed(chain.head, complete(chain, request, ok));
    });
    return blocking;
  }

  #reject(reason: string, loud: boolean, context: DeviceContext): void {
    if (!loud) return context.log.debug(reason);
    this.#rejected++;
    if (this.#rejected <= LOUD_REJECTIONS) context.log.warn(`rejected: ${reason}`);
    else context.log.debug(`rejected: ${reason}`);
  }

  #dropGroup(): void {
    this.#groupTimer?.cancel();
    this.#groupTimer = null;
    this.#group = [];
    this.#groupQueue = null;
  }
}

/**
 * Writes the request's device-writable bytes and returns the used length. A
 * well-formed request's buffer (zeros if it failed) and status are all
 * written; a malformed chain gets only its last byte (the status, if it is
 * one) and used length 0, since its writable part may be anything up to 4 GiB.
 */
function complete(chain: DescriptorChain, request: DecodedRequest, ok: boolean): number {
  const writable = chain.writableLength;
  if (writable === 0) return 0;
  const status = ok ? VIRTIO_I2C_MSG_OK : VIRTIO_I2C_MSG_ERR;
  if (request.kind === "malformed") {
    writeSlices(chain.writable, Uint8Array.of(status), { skip: writable - IN_HDR_SIZE });
    return writable === IN_HDR_SIZE ? IN_HDR_SIZE : 0;
  }
  const out = new Uint8Array(writable);
  if (ok && request.read) out.set(request.data);
  out[writable - IN_HDR_SIZE] = status;
  return writeSlices(chain.writable, out);
}

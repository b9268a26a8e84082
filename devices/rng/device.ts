/**
 * The virtio entropy device (VIRTIO 1.2 §5.4, device ID 4; QEMU's
 * vhost-user-rng-pci supplies the ID): one request queue whose
 * device-writable buffers the device fills with random bytes from the host,
 * within the `--max-bytes` per `--period` quota.
 *
 * @module
 */

import { DeferredPass } from "../../core/deferred_pass.ts";
import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Timer } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import type { DescriptorChain } from "../../core/virtio/descriptor_chain.ts";
import { VIRTIO_DEVICE_FEATURES } from "../../core/virtio/features.ts";
import type { SplitQueue } from "../../core/virtio/split_queue.ts";
import type { EntropySource } from "./entropy_source.ts";
import type { RateLimiter } from "./rate_limiter.ts";

/** §5.4.2: the only virtqueue, `requestq`. */
export const REQUESTQ = 0;
/** Largest `requestq` size accepted, as upstream. */
export const REQUESTQ_MAX_SIZE = 1024;

/** Options of {@link RngDevice}. */
export interface RngDeviceOptions {
  /** Where the bytes come from (shared by all instances). */
  readonly source: EntropySource;
  /** This socket's quota; it outlives connections, so a restarted QEMU cannot reset it. */
  readonly limiter: RateLimiter;
}

/** Requests served per pass before the loop serves other fds. */
export const BUDGET = 256;

/** Rejections logged at warn level before the rest go to debug. */
const LOUD_REJECTIONS = 10;

/** The entropy device for one front-end connection. */
export class RngDevice implements VirtioDevice {
  readonly name = "rng";
  readonly numQueues = 1;
  readonly maxQueueSize: number = REQUESTQ_MAX_SIZE;
  /** Upstream's bits; §5.4.3 defines no device-specific ones. */
  readonly features: bigint = VIRTIO_DEVICE_FEATURES;
  /**
   * MQ as upstream; REPLY_ACK so QEMU learns of a refused memory table or
   * ring instead of waiting on a dead device; CONFIGURE_MEM_SLOTS so guests
   * with more than 8 memory regions (DIMM hotplug, virtio-mem) can use it.
   */
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS);
  readonly #source: EntropySource;
  readonly #limiter: RateLimiter;
  #context: DeviceContext | null = null;
  /** Set while the quota is exhausted: serving resumes when it fires. */
  #refill: Timer | null = null;
  /** Set while the source has nothing to read. */
  #cancelSourceWait: (() => void) | null = null;
  /** A chain taken from `queue` whose read would have blocked. */
  #held: { chain: DescriptorChain; queue: SplitQueue } | null = null;
  /** A pass is deferred (the budget ran out with requests waiting). */
  readonly #pass = new DeferredPass(() => this.#serve());
  #rejected = 0;
  #endOfFileLogged = false;

  /** A device reading `source` within `limiter`'s quota. */
  constructor(options: RngDeviceOptions) {
    this.#source = options.source;
    this.#limiter = options.limiter;
  }

  activate(context: DeviceContext): void {
    this.#context = context;
  }

  onKick(queue: number): void {
    if (queue === REQUESTQ) this.#serve();
  }

  queueStopped(): void {
    this.#pause();
  }

  reset(): void {
    this.#pause();
    this.#context = null;
  }

  /**
   * Fills available chains until the ring is empty, the quota runs out (a
   * timer resumes at the period's end; the chains wait in the available
   * ring) or the source has nothing (its readiness resumes).
   */
  #serve(): void {
    const context = this.#context;
    const queue = context?.queue(REQUESTQ);
    if (!context || !queue || this.#refill || this.#cancelSourceWait) return;
    if (this.#held && this.#held.queue !== queue) {
      context.log.warn(
        "the request queue was set up again; dropping a request held for the source",
      );
      this.#held = null;
    }
    let blocked = false;
    let served = 0;
    do {
      queue.disableNotification();
      while (!blocked) {
        // A guest that keeps asking gets its turn, then the other fds theirs.
        if (served === BUDGET && queue.hasAvailable()) {
          this.#pass.schedule(context.loop);
          blocked = true;
          break;
        }
        // A period begins with a request, not with a kick on an empty ring
        // (the ring's enable kicks too), as upstream counts it.
        if (this.#held === null && !queue.hasAvailable()) break;
        const quota = this.#limiter.available();
        if (quota === 0) {
          const delay = this.#limiter.msUntilRefill();
          context.log.debug(`quota exhausted; serving again in ${delay.toFixed(1)} ms`);
          this.#refill = context.loop.setTimer(delay, () => {
            this.#refill = null;
            this.#serve();
          });
          blocked = true;
          break;
        }
        const chain = this.#held?.chain ?? queue.next();
        this.#held = null;
        if (chain === null) break;
        const length = this.#fill(chain, quota, context.log);
        if (length === null) {
          this.#held = { chain, queue };
          this.#cancelSourceWait = this.#source.whenReadable(() => {
            this.#cancelSourceWait = null;
            this.#serve();
          });
          blocked = true;
          break;
        }
        this.#limiter.consume(length);
        queue.addUsed(chain.head, length);
        served++;
      }
    } while (!blocked && queue.enableNotification());
    queue.notify();
  }

  /** Bytes written into `chain`, or `null` if the source would block. */
  #fill(chain: DescriptorChain, quota: number, log: Logger): number | null {
    // §5.4.6.1: the driver places only device-writable buffers; Linux sends one.
    if (chain.readable.length > 0) {
      this.#reject(chain, "it has device-readable buffers", log);
      return 0;
    }
    if (chain.writableLength === 0) {
      this.#reject(chain, "it has no writable bytes", log);
      return 0;
    }
    let length: number | null;
    try {
      // §5.4.6.2: the device may use less than the whole buffer.
      length = this.#source.read(chain.writable, Math.min(chain.writableLength, quota));
    } catch (error) {
      log.error(`reading the rng source failed: ${error instanceof Error ? error.message : error}`);
      return 0;
    }
    if (length === 0 && !this.#endOfFileLogged) {
      this.#endOfFileLogged = true;
      log.error("the rng source reached its end: requests are returned empty");
    }
    return length;
  }

  #reject(chain: DescriptorChain, reason: string, log: Logger): void {
    this.#rejected++;
    const message = `rejected request at head ${chain.head}: ${reason} (§5.4.6.1)`;
    if (this.#rejected <= LOUD_REJECTIONS) log.warn(message);
    else log.debug(message);
  }

  /** Stops waiting on the timer and the source; a held chain is dropped with its ring. */
  #pause(): void {
    this.#refill?.cancel();
    this.#refill = null;
    this.#cancelSourceWait?.();
    this.#cancelSourceWait = null;
    this.#held = null;
  }
}

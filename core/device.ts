/**
 * The interface between the vhost-user core and one virtio device. A device
 * never sees a protocol message: the core negotiates, maps memory, sets up
 * rings and calls these hooks (in the spirit of rust-vmm's VhostUserBackend).
 *
 * @module
 */

import type { EventLoop } from "./event_loop.ts";
import type { Logger } from "./log.ts";
import type { GuestMemory } from "./memory/guest_memory.ts";
import type { SplitQueue } from "./virtio/split_queue.ts";

/** What the core lends a device for one front-end connection. */
export interface DeviceContext {
  /** The device's logger. */
  readonly log: Logger;
  /** The event loop, to watch the device's own host fds and set timers. */
  readonly loop: EventLoop;
  /** Queue `index` if it is started and enabled, else `null`. Ask again each time: rings come and go. */
  queue(index: number): SplitQueue | null;
  /** Current guest memory, or `null` before the front-end sent a table. */
  memory(): GuestMemory | null;
  /** Tells the driver the config space changed (CONFIG_CHANGE_MSG), if the front-end allows it. */
  configChanged(): void;
}

/** A virtio device served over vhost-user. One instance serves one connection. */
export interface VirtioDevice {
  /** Short name for log lines, e.g. `rng`. */
  readonly name: string;
  /** Number of virtqueues. */
  readonly numQueues: number;
  /** Largest queue size the device accepts. */
  readonly maxQueueSize: number;
  /** Virtio feature bits offered (the core adds VHOST_USER_F_PROTOCOL_FEATURES). */
  readonly features: bigint;
  /** vhost-user protocol feature bits offered; the core drops those it does not implement. */
  readonly protocolFeatures: bigint;
  /** Called once the rings may start, with what the core lends for this connection. */
  activate(context: DeviceContext): void;
  /** The driver's accepted features (SET_FEATURES). */
  acknowledgeFeatures?(features: bigint): void;
  /** Reads `length` bytes of config space at `offset`; throws `RangeError` outside it. */
  readConfig?(offset: number, length: number): Uint8Array;
  /** Writes config space; throws `RangeError` for a read-only or absent field. */
  writeConfig?(offset: number, data: Uint8Array): void;
  /** The driver made buffers available on `queue` (a kick, or the ring was just enabled). */
  onKick(queue: number): void;
  /**
   * The ring is about to stop (GET_VRING_BASE) and is still live: finish
   * the requests taken from it and not yet returned, so the index the
   * front-end gets back covers only answered requests (a disk's I/O in
   * flight, as QEMU's own vhost devices drain theirs).
   */
  quiesce?(queue: number): void;
  /** The ring stopped (GET_VRING_BASE): drop anything held for it. */
  queueStopped?(queue: number): void;
  /** The connection ended or the device was reset: release host resources. */
  reset(): void;
}

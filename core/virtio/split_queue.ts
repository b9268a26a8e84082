/**
 * The device side of a split virtqueue (VIRTIO 1.2 §2.7). The rings live in
 * guest memory shared with a driver running concurrently: every field the
 * guest controls is read once into a local and checked before use, and the
 * index updates follow the spec's ordering rules.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { GuestMemory, GuestSlice } from "../memory/guest_memory.ts";
import { type DescriptorChain, InvalidChainError } from "./descriptor_chain.ts";
import { fullFence } from "./fence.ts";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "./features.ts";

/** Bytes the three parts of a split ring of `size` entries occupy (§2.7). */
export function ringSizes(size: number): { desc: number; avail: number; used: number } {
  return { desc: 16 * size, avail: 6 + 2 * size, used: 6 + 8 * size };
}

/**
 * `vring_need_event` (§2.7.10): whether moving the index from `oldIdx` to
 * `newIdx` passed `eventIdx`, in 16-bit arithmetic.
 */
export function vringNeedEvent(
  eventIdx: number,
  move: { newIdx: number; oldIdx: number },
): boolean {
  const { newIdx, oldIdx } = move;
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/** The buffers of a chain that has none in one direction (shared, never written). */
const NO_SLICES: readonly GuestSlice[] = Object.freeze([]);

/** Largest total length of a chain: what the le32 `len` of a used element can report. */
export const MAX_CHAIN_BYTES = 0xffff_ffff;

/** Everything a {@link SplitQueue} needs, resolved and checked by its owner. */
export interface SplitQueueOptions {
  /** Queue index, for log lines. */
  readonly index: number;
  /** Entries; a power of 2. */
  readonly size: number;
  /** The descriptor table's bytes (16 × size). */
  readonly desc: Uint8Array<ArrayBuffer>;
  /** The available ring's bytes (6 + 2 × size), 2-byte aligned. */
  readonly avail: Uint8Array<ArrayBuffer>;
  /** The used ring's bytes (6 + 8 × size), 4-byte aligned. */
  readonly used: Uint8Array<ArrayBuffer>;
  /** Guest memory that descriptors point into. */
  readonly memory: GuestMemory;
  /** The next available-ring index to serve (from SET_VRING_BASE). */
  readonly nextAvail: number;
  /** VIRTIO_RING_F_EVENT_IDX was negotiated. */
  readonly eventIdx: boolean;
  /** VIRTIO_RING_F_INDIRECT_DESC was negotiated. */
  readonly indirect: boolean;
  /** Sends a used-buffer notification to the driver. */
  readonly notify: () => void;
  /** Reports a ring the driver has broken beyond repair. */
  readonly fail: () => void;
  /** Where rejected chains are reported. */
  readonly log: Logger;
  /**
   * Asked by {@link SplitQueue.enableNotification}: while it returns true,
   * the owner polls this ring ({@link SplitQueue.pollAvailable}) and will
   * call {@link SplitQueue.armNotification} before it sleeps, so
   * notifications stay off meanwhile and the driver sends no kicks.
   * Default: never.
   */
  readonly deferArming?: () => boolean;
}

/** A split virtqueue as the device sees it. */
export class SplitQueue {
  /** Queue index. */
  readonly index: number;
  /** Number of entries. */
  readonly size: number;
  readonly #desc: DataView;
  readonly #avail: Uint16Array;
  readonly #usedHeader: Uint16Array;
  readonly #usedRing: Uint32Array;
  readonly #memory: GuestMemory;
  readonly #eventIdx: boolean;
  readonly #indirect: boolean;
  readonly #notify: () => void;
  readonly #fail: () => void;
  readonly #log: Logger;
  readonly #deferArming: (() => boolean) | null;
  #nextAvail: number;
  #availSeen: number;
  #nextUsed: number;
  #publishedUsed: number;
  #signalledUsed: number | null = null;
  #broken = false;
  #rejected = 0;
  /** Notifications are off only because the owner polls: {@link armNotification} is due. */
  #unarmed = false;
  /** The available index at the last {@link pollAvailable} or deferred enable. */
  #polledIdx = 0;
  /** With EVENT_IDX: the `avail_event` the device asked for at its deferred enable. */
  #armAt = 0;
  /** With EVENT_IDX: {@link pollAvailable} reported the one kick that enable asked for. */
  #polledKick = false;

  /** Wraps rings in shared memory. Throws `RangeError` for bad sizes or alignment. */
  constructor(options: SplitQueueOptions) {
    const { size, desc, avail, used } = options;
    const sizes = ringSizes(size);
    if (size === 0 || (size & (size - 1)) !== 0 || size > 32768) {
      throw new RangeError(`queue ${options.index}: size ${size} is not a power of 2 up to 32768`);
    }
    if (desc.length < sizes.desc || avail.length < sizes.avail || used.length < sizes.used) {
      throw new RangeError(`queue ${options.index}: ring views are smaller than a ring of ${size}`);
    }
    if (avail.byteOffset % 2 !== 0 || used.byteOffset % 4 !== 0) {
      throw new RangeError(`queue ${options.index}: misaligned available or used ring`);
    }
    this.index = options.index;
    this.size = size;
    this.#desc = new DataView(desc.buffer, desc.byteOffset, sizes.desc);
    this.#avail = new Uint16Array(avail.buffer, avail.byteOffset, 3 + size);
    this.#usedHeader = new Uint16Array(used.buffer, used.byteOffset, 3 + 4 * size);
    this.#usedRing = new Uint32Array(used.buffer, used.byteOffset + 4, 2 * size);
    this.#memory = options.memory;
    this.#eventIdx = options.eventIdx;
    this.#indirect = options.indirect;
    this.#notify = options.notify;
    this.#fail = options.fail;
    this.#log = options.log;
    this.#deferArming = options.deferArming ?? null;
    this.#nextAvail = options.nextAvail & 0xffff;
    this.#availSeen = this.#nextAvail;
    // The used index is not sent for split rings: the ring itself is the truth
    // (a guest reboot resets it; rust-vmm/vhost#180).
    this.#nextUsed = Atomics.load(this.#usedHeader, 1);
    this.#publishedUsed = this.#nextUsed;
  }

  /** The next available-ring index the device will serve (GET_VRING_BASE). */
  get nextAvail(): number {
    return this.#nextAvail;
  }

  /** The used index the device will publish next. */
  get nextUsed(): number {
    return this.#nextUsed;
  }

  /** Whether VIRTIO_RING_F_EVENT_IDX governs notifications on this ring. */
  get eventIdx(): boolean {
    return this.#eventIdx;
  }

  /** Whether the driver broke the ring (an impossible available index). */
  get broken(): boolean {
    return this.#broken;
  }

  /** Whether chains are waiting (reads the driver's index). */
  hasAvailable(): boolean {
    if (this.#broken) return false;
    return this.#availSeen !== this.#nextAvail || this.#refreshAvail() !== this.#nextAvail;
  }

  /**
   * Takes the next available chain, or `null` if none. A malformed chain is
   * logged, returned to the driver as used with length 0, and skipped.
   */
  next(): DescriptorChain | null {
    while (!this.#broken) {
      if (this.#availSeen === this.#nextAvail && this.#refreshAvail() === this.#nextAvail) {
        return null;
      }
      if (this.#broken) return null;
      // Atomics.load keeps the entry read after the index read (§2.7.13.1 step 1).
      const head = Atomics.load(this.#avail, 2 + (this.#nextAvail & (this.size - 1)));
      this.#nextAvail = (this.#nextAvail + 1) & 0xffff;
      try {
        return this.#parse(head);
      } catch (error) {
        if (!(error instanceof InvalidChainError)) throw error;
        this.#reject(head, error.message);
      }
    }
    return null;
  }

  /**
   * Parses the chain at `head` again without touching the available ring:
   * for a chain a device took from this ring before it stopped and never
   * returned, when the same ring resumes (the driver still counts it in
   * flight, so its descriptors are unchanged). `null`, logged, if it no
   * longer parses.
   */
  chainAt(head: number): DescriptorChain | null {
    if (this.#broken || head >= this.size) return null;
    try {
      return this.#parse(head);
    } catch (error) {
      if (!(error instanceof InvalidChainError)) throw error;
      this.#log.warn(
        `queue ${this.index}: held chain at head ${head} no longer parses: ${error.message}`,
      );
      return null;
    }
  }

  /** Returns a chain to the driver with `length` bytes written (§2.7.8). Call {@link notify} after a batch. */
  addUsed(head: number, length: number): void {
    const slot = this.#nextUsed & (this.size - 1);
    this.#usedRing[2 * slot] = head;
    this.#usedRing[2 * slot + 1] = length;
    this.#nextUsed = (this.#nextUsed + 1) & 0xffff;
  }

  /**
   * Publishes the used entries added since the last call, then notifies the
   * driver unless it suppressed notifications (§2.7.7, §2.7.10).
   */
  notify(): void {
    if (this.#nextUsed === this.#publishedUsed) return;
    // Entries are written before the index: Atomics.store is sequentially consistent.
    Atomics.store(this.#usedHeader, 1, this.#nextUsed);
    const old = this.#publishedUsed;
    this.#publishedUsed = this.#nextUsed;
    // The index store must be visible before we read the driver's suppression state.
    fullFence();
    if (this.#needsNotification(old, this.#nextUsed)) this.#notify();
  }

  /**
   * Asks the driver for available-buffer notifications again. Returns true
   * if chains arrived meanwhile: the caller must serve them, or it could
   * sleep through a kick that was never sent (§2.7.10).
   *
   * While the owner polls the ring (`deferArming`), notifications stay off
   * (no kick costs the driver a notification, nor us a wake-up): the owner
   * looks for new chains with {@link pollAvailable} and turns them on with
   * {@link armNotification} before it sleeps.
   */
  enableNotification(): boolean {
    if (this.#deferArming !== null && this.#deferArming()) {
      const more = this.hasAvailable();
      this.#unarmed = true;
      this.#polledIdx = this.#availSeen;
      this.#armAt = this.#nextAvail;
      this.#polledKick = false;
      return more;
    }
    return this.armNotification();
  }

  /**
   * Takes over a ring another queue object left {@link unarmed} (the same
   * ring rebuilt), so {@link armNotification} clears all it may have set.
   */
  markUnarmed(): void {
    this.#unarmed = true;
  }

  /** Whether notifications are off only until the owner's {@link armNotification}. */
  get unarmed(): boolean {
    return this.#unarmed;
  }

  /**
   * For an {@link unarmed} ring: whether the driver made chains available
   * since the last look, the kick it did not send. Reads the driver's index
   * only; the device validates it when it takes the chains.
   */
  pollAvailable(): boolean {
    // With EVENT_IDX the driver would kick once, when its index passes
    // avail_event, until the device asks again: so one report per enable
    // (without it, every addition would kick).
    if (!this.#unarmed || this.#broken || this.#polledKick) return false;
    const idx = Atomics.load(this.#avail, 1);
    if (idx === this.#polledIdx) return false;
    this.#polledIdx = idx;
    this.#polledKick = this.#eventIdx;
    return true;
  }

  /**
   * For an {@link unarmed} ring, before its owner sleeps: turns
   * notifications on as the device's last enable asked (with EVENT_IDX
   * `avail_event` = the index it was then, so a kick it already had through
   * {@link pollAvailable} is not asked for twice; without it NO_NOTIFY
   * cleared). Returns true if chains came since the last look, which the
   * device must be told of as a kick.
   */
  armPolled(): boolean {
    if (!this.#unarmed) return false;
    this.#unarmed = false;
    if (this.#eventIdx) {
      Atomics.store(this.#usedHeader, 2 + 4 * this.size, this.#armAt);
    } else {
      Atomics.store(this.#usedHeader, 0, 0);
    }
    fullFence();
    if (this.#broken || this.#polledKick) return false;
    return Atomics.load(this.#avail, 1) !== this.#polledIdx;
  }

  /**
   * Turns available-buffer notifications on (§2.7.10), whatever the owner
   * polls. Returns true if chains arrived meanwhile, as {@link enableNotification}.
   */
  armNotification(): boolean {
    if (this.#eventIdx) {
      Atomics.store(this.#usedHeader, 2 + 4 * this.size, this.#nextAvail);
      // A ring rebuilt with EVENT_IDX may still carry the NO_NOTIFY of its
      // polled past; the driver ignores it then (§2.7.10), but 0 is the truth.
      if (this.#unarmed) Atomics.store(this.#usedHeader, 0, 0);
    } else {
      Atomics.store(this.#usedHeader, 0, 0);
    }
    this.#unarmed = false;
    fullFence();
    return this.hasAvailable();
  }

  /** Tells the driver kicks are not needed while the device is draining the ring. */
  disableNotification(): void {
    // With EVENT_IDX the stale avail_event already suppresses kicks.
    if (!this.#eventIdx) Atomics.store(this.#usedHeader, 0, VIRTQ_USED_F_NO_NOTIFY);
  }

  #refreshAvail(): number {
    const idx = Atomics.load(this.#avail, 1);
    if (((idx - this.#nextAvail) & 0xffff) > this.size) {
      this.#broken = true;
      this.#log.error(
        `queue ${this.index}: available index ${idx} is more than ${this.size} ahead of ${this.#nextAvail}; ` +
          "the driver broke the ring, no more requests are served until it is set up again",
      );
      this.#fail();
      return this.#nextAvail;
    }
    this.#availSeen = idx;
    return idx;
  }

  #needsNotification(old: number, now: number): boolean {
    if (!this.#eventIdx) return (Atomics.load(this.#avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = Atomics.load(this.#avail, 2 + this.size);
    const since = this.#signalledUsed ?? old;
    const first = this.#signalledUsed === null;
    this.#signalledUsed = now;
    return first || vringNeedEvent(usedEvent, { newIdx: now, oldIdx: since });
  }

  #reject(head: number, reason: string): void {
    this.#rejected++;
    // One line per distinct burst keeps a hostile guest from flooding the log.
    const message = `queue ${this.index}: rejected descriptor chain at head ${head}: ${reason}`;
    if (this.#rejected <= 10) this.#log.warn(message);
    else if (this.#rejected % 10000 === 0) {
      this.#log.warn(`${message} (${this.#rejected} chains rejected so far)`);
    } else this.#log.debug(message);
    if (head < this.size) this.addUsed(head, 0);
  }

  #parse(head: number): DescriptorChain {
    const memory = this.#memory;
    // Most chains have buffers of one direction only (an rng request, a
    // vsock tx packet): the other side shares one empty array.
    let readable: GuestSlice[] | null = null;
    let writable: GuestSlice[] | null = null;
    let readableLength = 0;
    let writableLength = 0;
    let table = this.#desc;
    let tableSize = this.size;
    let budget = this.size;
    let indirect = false;
    let seenWritable = false;
    let index = head;
    for (;;) {
      if (index >= tableSize) {
        throw new InvalidChainError(`descriptor index ${index} is outside a table of ${tableSize}`);
      }
      if (budget-- === 0) {
        throw new InvalidChainError(`chain is longer than its table of ${tableSize}: a loop`);
      }
      const at = index * 16;
      const low = table.getUint32(at, true);
      const high = table.getUint32(at + 4, true);
      const length = table.getUint32(at + 8, true);
      const flags = table.getUint16(at + 12, true);
      const next = table.getUint16(at + 14, true);
      // Addresses of 2^53 and above cannot be guest RAM.
      if (high >= 0x200000) {
        throw new InvalidChainError(`descriptor ${index} address is out of range`);
      }
      const address = high * 4294967296 + low;
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.#indirect) {
          throw new InvalidChainError("indirect descriptor without VIRTIO_F_INDIRECT_DESC");
        }
        if (indirect) throw new InvalidChainError("indirect descriptor inside an indirect table");
        if (flags & VIRTQ_DESC_F_NEXT) {
          throw new InvalidChainError("indirect descriptor with NEXT set");
        }
        if (length === 0 || length % 16 !== 0) {
          throw new InvalidChainError(
            `indirect table of ${length} bytes is not a whole number of descriptors`,
          );
        }
        const bytes = memory.bytes(address, length);
        if (!bytes) {
          throw new InvalidChainError(
            `indirect table [0x${address.toString(16)}, +${length}) is outside guest memory`,
          );
        }
        table = new DataView(bytes.buffer, bytes.byteOffset, length);
        tableSize = budget = length / 16;
        indirect = true;
        index = 0;
        continue;
      }
      if (flags & VIRTQ_DESC_F_WRITE) {
        writable ??= [];
        if (!memory.resolve(address, length, writable)) throw this.#outside(address, length);
        writableLength += length;
        seenWritable = true;
      } else {
        if (seenWritable) {
          throw new InvalidChainError("device-readable descriptor after a device-writable one");
        }
        readable ??= [];
        if (!memory.resolve(address, length, readable)) throw this.#outside(address, length);
        readableLength += length;
      }
      // Descriptors may alias, so the sum is not bounded by guest RAM; the used
      // length is a le32 (§2.7.8), so no sane chain is larger.
      if (readableLength + writableLength > MAX_CHAIN_BYTES) {
        throw new InvalidChainError(`chain of more than ${MAX_CHAIN_BYTES} bytes`);
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      index = next;
    }
    return {
      head,
      readable: readable ?? NO_SLICES,
      writable: writable ?? NO_SLICES,
      readableLength,
      writableLength,
    };
  }

  #outside(address: number, length: number): InvalidChainError {
    return new InvalidChainError(
      `buffer [0x${address.toString(16)}, +${length}) is outside guest memory`,
    );
  }
}

/** What one {@link serveAvailable} pass did. */
export interface ServePass {
  /** Chains served. */
  readonly served: number;
  /**
   * The budget ran out with chains still waiting. Notifications stay off,
   * so the caller must come back (`EventLoop.defer`); the next pass that
   * empties the ring turns them on again.
   */
  readonly more: boolean;
}

/**
 * Serves available chains with `handle`, which returns the bytes it wrote,
 * then notifies the driver once. Re-enables notifications before returning
 * and serves anything that raced in (§2.7.10). With a `budget`, stops after
 * that many chains so one busy queue cannot hold the event loop.
 */
export function serveAvailable(
  queue: SplitQueue,
  handle: (chain: DescriptorChain) => number,
  options: { budget?: number } = {},
): ServePass {
  const budget = options.budget ?? Infinity;
  let served = 0;
  do {
    queue.disableNotification();
    for (let chain = queue.next(); chain !== null; chain = queue.next()) {
      queue.addUsed(chain.head, handle(chain));
      if (++served >= budget && queue.hasAvailable()) {
        queue.notify();
        return { served, more: true };
      }
    }
  } while (queue.enableNotification());
  queue.notify();
  return { served, more: false };
}

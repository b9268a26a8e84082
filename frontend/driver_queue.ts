/**
 * The driver (guest) side of a split virtqueue, laid out in {@link DriverMemory}
 * as Linux's virtio_ring.c lays it out: VIRTIO 1.2 §2.7 "Split Virtqueues".
 *
 * Memory ordering (§2.7.13, §2.7.7.2): the device is another process on
 * another CPU. Descriptors and ring entries are written before `avail.idx`,
 * and `avail.idx` is published before `avail_event`/`used.flags` are read.
 * The mapped RAM is not a SharedArrayBuffer, so `Atomics` cannot order it
 * directly; an `Atomics.add` on a small SharedArrayBuffer emits a LOCK-prefixed
 * instruction, a full fence on x86-64 (see DESIGN.md "Data path rules").
 *
 * @module
 */

import { fullFence } from "../core/virtio/fence.ts";
import {
  MAX_QUEUE_SIZE,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../core/virtio/features.ts";
import { vringNeedEvent } from "../core/virtio/split_queue.ts";
import type { DriverMemory } from "./driver_memory.ts";

const DESC_SIZE = 16;
const MIN_BUFFER_CLASS = 64;

/** Byte offsets of the three parts of a split ring from its start. */
export interface SplitRingLayout {
  /** Descriptor table (align 16, 16·Q bytes). */
  readonly descOffset: number;
  /** Available ring (align 2, 6 + 2·Q bytes). */
  readonly availOffset: number;
  /** Used ring (align 4, 6 + 8·Q bytes). */
  readonly usedOffset: number;
  /** Bytes from the start to the end of the used ring. */
  readonly totalSize: number;
}

/**
 * The contiguous layout of Linux's `vring_init`: descriptors, then the
 * available ring right after them, then the used ring at the next multiple
 * of `usedAlign` (4 is the spec's minimum; modern Linux uses 64, legacy 4096).
 */
export function splitRingLayout(size: number, usedAlign = 4): SplitRingLayout {
  if (size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
    throw new RangeError(`queue size ${size} is not a power of 2 in 1..${MAX_QUEUE_SIZE}`);
  }
  if (usedAlign < 4 || (usedAlign & (usedAlign - 1)) !== 0) {
    throw new RangeError(`used ring alignment ${usedAlign} is not a power of 2 >= 4`);
  }
  const availOffset = DESC_SIZE * size;
  const availEnd = availOffset + 6 + 2 * size;
  const usedOffset = Math.ceil(availEnd / usedAlign) * usedAlign;
  return { descOffset: 0, availOffset, usedOffset, totalSize: usedOffset + 6 + 8 * size };
}

/** A descriptor as laid out in the table (§2.7.5). */
export interface Descriptor {
  /** Guest-physical buffer address. */
  readonly addr: number;
  /** Buffer length. */
  readonly len: number;
  /** NEXT / WRITE / INDIRECT. */
  readonly flags: number;
  /** Next descriptor index when NEXT is set. */
  readonly next: number;
}

/** What the driver offers in one chain. */
export interface Chain {
  /** Device-readable buffers, copied into guest memory in this order. */
  readonly readable: readonly Uint8Array[];
  /** Lengths of device-writable buffers, after the readable ones. */
  readonly writable: readonly number[];
  /** Put the chain in an indirect table (one ring descriptor), §2.7.5.3. */
  readonly indirect?: boolean;
}

/** A chain the device has returned. */
export interface UsedBuffer {
  /** The chain's head descriptor index. */
  readonly head: number;
  /** The length the device reported in the used element. */
  readonly length: number;
  /**
   * The bytes the device wrote: the first `length` bytes of the writable
   * buffers, concatenated (truncated to their total size if `length` exceeds it).
   */
  readonly data: Uint8Array;
}

/** A raw used element (`struct virtq_used_elem`). */
export interface UsedElement {
  /** Head index as the device wrote it. */
  readonly id: number;
  /** Length as the device wrote it. */
  readonly length: number;
}

/** Options of {@link DriverQueue}. */
export interface DriverQueueOptions {
  /** Queue size: a power of 2 up to 32768. */
  readonly size: number;
  /** Whether VIRTIO_F_EVENT_IDX is negotiated (§2.7.7, §2.7.10). Default false. */
  readonly eventIdx?: boolean;
  /** Used ring alignment; see {@link splitRingLayout}. Default 4. */
  readonly usedAlign?: number;
  /** Region of {@link DriverMemory} to place the ring and buffers in. Default: first with room. */
  readonly region?: number;
  /**
   * With EVENT_IDX, set `used_event` to the last seen used index after each
   * {@link DriverQueue.takeUsed}, asking for an interrupt at the next
   * completion, as Linux's `virtqueue_get_buf` does. Default true.
   */
  readonly autoUsedEvent?: boolean;
}

interface InFlight {
  /** Ring descriptors this chain holds. */
  readonly count: number;
  /** Pool buffers to return, by guest address and size class. */
  readonly buffers: readonly { gpa: number; size: number }[];
  /** Device-writable buffers in chain order. */
  readonly writable: readonly { gpa: number; len: number }[];
}

/** A split virtqueue, driver side. */
export class DriverQueue {
  /** Queue size. */
  readonly size: number;
  /** Whether EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** Guest-physical address of the descriptor table. */
  readonly descGpa: number;
  /** Guest-physical address of the available ring. */
  readonly availGpa: number;
  /** Guest-physical address of the used ring. */
  readonly usedGpa: number;
  /**
   * The index the device should start at (SET_VRING_BASE). The front-end's
   * `stop()` stores GET_VRING_BASE's answer here, as QEMU keeps
   * `last_avail_idx`; a fresh queue starts at 0.
   */
  lastAvailIndex = 0;

  readonly #memory: DriverMemory;
  readonly #ring: DataView;
  readonly #layout: SplitRingLayout;
  readonly #mask: number;
  readonly #region: number | undefined;
  readonly #autoUsedEvent: boolean;
  /** Shadow of each descriptor's `next`: the free list, never read back from shared memory. */
  readonly #next: Uint16Array;
  readonly #inFlight: (InFlight | undefined)[];
  readonly #pool = new Map<number, number[]>();
  #freeHead = 0;
  #numFree = 0;
  #inFlightCount = 0;
  #availShadow = 0;
  #published = 0;
  #numAdded = 0;
  #lastUsed = 0;
  #noInterrupt = false;

  /** Allocates and initializes the ring in `memory`. */
  constructor(memory: DriverMemory, options: DriverQueueOptions) {
    this.size = options.size;
    this.eventIdx = options.eventIdx ?? false;
    this.#layout = splitRingLayout(options.size, options.usedAlign ?? 4);
    this.#memory = memory;
    this.#region = options.region;
    this.#autoUsedEvent = options.autoUsedEvent ?? true;
    this.#mask = options.size - 1;
    // Linux allocates the ring in whole pages.
    const base = memory.alloc(this.#layout.totalSize, 4096, { region: options.region });
    this.descGpa = base + this.#layout.descOffset;
    this.availGpa = base + this.#layout.availOffset;
    this.usedGpa = base + this.#layout.usedOffset;
    this.#ring = memory.dataView(base, this.#layout.totalSize);
    this.#next = new Uint16Array(options.size);
    this.#inFlight = new Array(options.size);
    this.reset();
  }

  /** The ring layout (offsets from `descGpa`). */
  get layout(): SplitRingLayout {
    return this.#layout;
  }

  /** Free descriptors in the table. */
  get numFree(): number {
    return this.#numFree;
  }

  /** Chains added and not yet returned. */
  get inFlight(): number {
    return this.#inFlightCount;
  }

  /** The driver's next available index (including unpublished additions). */
  get availIndex(): number {
    return this.#availShadow;
  }

  /** The last used index this driver has consumed. */
  get lastUsedIndex(): number {
    return this.#lastUsed;
  }

  /**
   * Zeroes the ring and forgets all chains, as a driver does after a device
   * reset. Pool buffers are kept for reuse; `lastAvailIndex` returns to 0.
   */
  reset(): void {
    new Uint8Array(this.#ring.buffer, this.#ring.byteOffset, this.#ring.byteLength).fill(0);
    for (let i = 0; i < this.size; i++) {
      this.#next[i] = (i + 1) & 0xffff;
      const chain = this.#inFlight[i];
      if (chain) { for (const b of chain.buffers) this.#release(b); }
      this.#inFlight[i] = undefined;
    }
    this.#freeHead = 0;
    this.#numFree = this.size;
    this.#inFlightCount = 0;
    this.#availShadow = 0;
    this.#published = 0;
    this.#numAdded = 0;
    this.#lastUsed = 0;
    this.#noInterrupt = false;
    this.lastAvailIndex = 0;
  }

  /**
   * Ring addresses in front-end virtual addresses, for SET_VRING_ADDR
   * (docs/interop/vhost-user.rst: "ring addresses are user addresses").
   */
  addresses(): { descUser: number; availUser: number; usedUser: number } {
    return {
      descUser: this.#memory.userAddress(this.descGpa),
      availUser: this.#memory.userAddress(this.availGpa),
      usedUser: this.#memory.userAddress(this.usedGpa),
    };
  }

  /**
   * Adds a chain (`virtqueue_add_split`): copies the readable bytes into fresh
   * guest buffers, allocates the writable ones (zeroed), links descriptors
   * from the free list and writes the available ring entry. The device sees
   * it only after {@link publish}. Returns the head index; throws a
   * `RangeError` if the table has too few free descriptors.
   */
  add(chain: Chain): number {
    const n = chain.readable.length + chain.writable.length;
    if (n === 0) throw new RangeError("a chain needs at least one buffer");
    const indirect = chain.indirect ?? false;
    const needed = indirect ? 1 : n;
    if (needed > this.#numFree) {
      throw new RangeError(`queue full: ${needed} descriptors needed, ${this.#numFree} free`);
    }
    const buffers: { gpa: number; size: number }[] = [];
    const writable: { gpa: number; len: number }[] = [];
    const entries: Descriptor[] = [];
    for (const data of chain.readable) {
      const b = this.#acquire(data.length);
      buffers.push(b);
      this.#memory.write(b.gpa, data);
      entries.push({ addr: b.gpa, len: data.length, flags: 0, next: 0 });
    }
    for (const len of chain.writable) {
      const b = this.#acquire(len);
      buffers.push(b);
      this.#memory.view(b.gpa, b.size).fill(0);
      writable.push({ gpa: b.gpa, len });
      entries.push({ addr: b.gpa, len, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    }

    const head = this.#freeHead;
    if (indirect) {
      // §2.7.5.3.1: the table's descriptors chain by index within the table.
      const table = this.#acquire(DESC_SIZE * n);
      buffers.push(table);
      const view = this.#memory.dataView(table.gpa, DESC_SIZE * n);
      entries.forEach((e, i) => {
        const last = i === n - 1;
        writeDesc(view, i * DESC_SIZE, {
          addr: e.addr,
          len: e.len,
          flags: e.flags | (last ? 0 : VIRTQ_DESC_F_NEXT),
          next: last ? 0 : i + 1,
        });
      });
      this.writeDescriptor(head, {
        addr: table.gpa,
        len: DESC_SIZE * n,
        flags: VIRTQ_DESC_F_INDIRECT,
        next: this.#next[head],
      });
      this.#freeHead = this.#next[head];
    } else {
      let i = head;
      let last = head;
      for (let k = 0; k < n; k++) {
        const e = entries[k];
        // Like Linux, `next` always carries the free-list link; NEXT says whether it counts.
        this.writeDescriptor(i, {
          addr: e.addr,
          len: e.len,
          flags: e.flags | (k < n - 1 ? VIRTQ_DESC_F_NEXT : 0),
          next: this.#next[i],
        });
        last = i;
        i = this.#next[i];
      }
      this.#freeHead = this.#next[last];
    }
    this.#numFree -= needed;
    this.#inFlight[head] = { count: needed, buffers, writable };
    this.#inFlightCount++;
    this.rawPushAvail(head);
    return head;
  }

  /**
   * Publishes every chain added since the last call by writing `avail.idx`
   * (§2.7.13: a write barrier orders descriptors and ring entries before it).
   */
  publish(): void {
    fullFence();
    this.#ring.setUint16(this.#layout.availOffset + 2, this.#availShadow, true);
    this.#numAdded += (this.#availShadow - this.#published) & 0xffff;
    this.#published = this.#availShadow;
  }

  /**
   * Whether the device wants a kick for what was published since the last
   * call (`virtqueue_kick_prepare_split`, §2.7.13.4): with EVENT_IDX, whether
   * `avail.idx` moved past `avail_event`; otherwise whether `used.flags` lacks
   * NO_NOTIFY. A full barrier separates the `avail.idx` store from the read.
   */
  needsKick(): boolean {
    fullFence();
    const newIdx = this.#published;
    const oldIdx = (newIdx - this.#numAdded) & 0xffff;
    this.#numAdded = 0;
    if (this.eventIdx) {
      return vringNeedEvent(this.readAvailEvent(), { newIdx: newIdx, oldIdx: oldIdx });
    }
    return (this.readUsedFlags() & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /**
   * Takes every chain the device has returned (`virtqueue_get_buf`), copying
   * out the bytes written, and frees their descriptors and buffers. Throws if
   * the device returns an unknown head or moves `used.idx` past what is in
   * flight: the device is broken and the queue state cannot be trusted.
   */
  takeUsed(): UsedBuffer[] {
    const out: UsedBuffer[] = [];
    for (;;) {
      const usedIdx = this.readUsedIdx();
      // Read used.idx before the elements it covers (§2.7.13).
      fullFence();
      const pending = (usedIdx - this.#lastUsed) & 0xffff;
      if (pending > this.size) {
        throw new Error(
          `device moved used.idx to ${usedIdx}, ${pending} past the driver's ${this.#lastUsed}`,
        );
      }
      while (this.#lastUsed !== usedIdx) {
        const { id, length } = this.readUsedElement(this.#lastUsed & this.#mask);
        const chain = id < this.size ? this.#inFlight[id] : undefined;
        if (!chain) {
          throw new Error(`device returned head ${id}, which is not in flight`);
        }
        out.push({ head: id, length, data: this.#gather(chain, length) });
        this.#free(id, chain);
        this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
      }
      if (!(this.eventIdx && this.#autoUsedEvent && !this.#noInterrupt) || out.length === 0) {
        return out;
      }
      this.setUsedEvent(this.#lastUsed);
      // Entries the device published before it could see the new used_event
      // brought no call: take them now, or a caller that sleeps next would
      // wait forever (Linux's virtqueue_enable_cb, then virtqueue_poll).
      if (this.readUsedIdx() === this.#lastUsed) return out;
    }
  }

  /**
   * Takes used elements without validating or freeing anything: for chains
   * built by hand with {@link rawPushAvail}.
   */
  takeUsedRaw(): UsedElement[] {
    const usedIdx = this.readUsedIdx();
    fullFence();
    const out: UsedElement[] = [];
    while (this.#lastUsed !== usedIdx) {
      out.push(this.readUsedElement(this.#lastUsed & this.#mask));
      this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** Writes `used_event` (§2.7.10): interrupt me when used.idx passes `index`. */
  setUsedEvent(index: number): void {
    this.#ring.setUint16(this.#layout.availOffset + 4 + 2 * this.size, index & 0xffff, true);
    fullFence();
  }

  /** Sets or clears `VIRTQ_AVAIL_F_NO_INTERRUPT` in `avail.flags` (§2.7.7). */
  setNoInterrupt(on: boolean): void {
    this.#noInterrupt = on;
    this.#ring.setUint16(this.#layout.availOffset, on ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0, true);
    fullFence();
  }

  // Raw access, for hostile tests: none of these update the driver's bookkeeping.

  /** Writes descriptor `index` of the table. */
  writeDescriptor(index: number, desc: Descriptor): void {
    writeDesc(this.#ring, this.#layout.descOffset + DESC_SIZE * index, desc);
  }

  /** Reads descriptor `index` of the table. */
  readDescriptor(index: number): Descriptor {
    const at = this.#layout.descOffset + DESC_SIZE * index;
    return {
      addr: Number(this.#ring.getBigUint64(at, true)),
      len: this.#ring.getUint32(at + 8, true),
      flags: this.#ring.getUint16(at + 12, true),
      next: this.#ring.getUint16(at + 14, true),
    };
  }

  /** Writes `avail.ring[slot]` (slot 0..size-1). */
  writeAvailEntry(slot: number, head: number): void {
    this.#ring.setUint16(this.#layout.availOffset + 4 + 2 * slot, head, true);
  }

  /** Writes `avail.idx` directly, bypassing {@link publish}. */
  writeAvailIdx(index: number): void {
    fullFence();
    this.#ring.setUint16(this.#layout.availOffset + 2, index & 0xffff, true);
  }

  /** Reads `avail.idx` as the device sees it. */
  readAvailIdx(): number {
    return this.#ring.getUint16(this.#layout.availOffset + 2, true);
  }

  /**
   * Appends `head` to the available ring at the driver's next index without
   * checking it; {@link publish} makes it visible.
   */
  rawPushAvail(head: number): void {
    this.writeAvailEntry(this.#availShadow & this.#mask, head);
    this.#availShadow = (this.#availShadow + 1) & 0xffff;
  }

  /** Reads `used.idx`. */
  readUsedIdx(): number {
    return this.#ring.getUint16(this.#layout.usedOffset + 2, true);
  }

  /** Reads `used.flags`. */
  readUsedFlags(): number {
    return this.#ring.getUint16(this.#layout.usedOffset, true);
  }

  /** Reads `avail_event` (the u16 after the used ring, §2.7.8). */
  readAvailEvent(): number {
    return this.#ring.getUint16(this.#layout.usedOffset + 4 + 8 * this.size, true);
  }

  /** Reads `used_event` (the u16 after the available ring, §2.7.6). */
  readUsedEvent(): number {
    return this.#ring.getUint16(this.#layout.availOffset + 4 + 2 * this.size, true);
  }

  /** Reads `used.ring[slot]`. */
  readUsedElement(slot: number): UsedElement {
    const at = this.#layout.usedOffset + 4 + 8 * slot;
    return { id: this.#ring.getUint32(at, true), length: this.#ring.getUint32(at + 4, true) };
  }

  #gather(chain: InFlight, length: number): Uint8Array {
    const total = chain.writable.reduce((n, w) => n + w.len, 0);
    const out = new Uint8Array(Math.min(length, total));
    let done = 0;
    for (const w of chain.writable) {
      if (done >= out.length) break;
      const take = Math.min(w.len, out.length - done);
      out.set(this.#memory.view(w.gpa, take), done);
      done += take;
    }
    return out;
  }

  #free(head: number, chain: InFlight): void {
    // detach_buf_split: the chain's descriptors go back on the front of the free list.
    let last = head;
    for (let k = 1; k < chain.count; k++) last = this.#next[last];
    this.#next[last] = this.#freeHead;
    this.#freeHead = head;
    this.#numFree += chain.count;
    this.#inFlight[head] = undefined;
    this.#inFlightCount--;
    for (const b of chain.buffers) this.#release(b);
  }

  /** A buffer of at least `length` bytes, from a power-of-2 size-class pool. */
  #acquire(length: number): { gpa: number; size: number } {
    let size = MIN_BUFFER_CLASS;
    while (size < length) size *= 2;
    const gpa = this.#pool.get(size)?.pop() ??
      this.#memory.alloc(size, DESC_SIZE, { region: this.#region });
    return { gpa, size };
  }

  #release(buffer: { gpa: number; size: number }): void {
    const list = this.#pool.get(buffer.size);
    if (list) list.push(buffer.gpa);
    else this.#pool.set(buffer.size, [buffer.gpa]);
  }
}

function writeDesc(view: DataView, at: number, desc: Descriptor): void {
  view.setBigUint64(at, BigInt(desc.addr), true);
  view.setUint32(at + 8, desc.len, true);
  view.setUint16(at + 12, desc.flags, true);
  view.setUint16(at + 14, desc.next, true);
}

/**
 * Guest RAM as a front-end (QEMU) owns it: one memfd mapped shared in this
 * process, described to the back-end as one or two regions, with a bump
 * allocator of guest-physical addresses for rings and buffers.
 *
 * docs/interop/vhost-user.rst "Memory access": the back-end maps the fd and
 * translates guest-physical addresses (descriptors) and front-end virtual
 * addresses (ring addresses); `userspaceAddr` is therefore the real address
 * of the mapping in this process, as QEMU sends its own.
 *
 * @module
 */

import { close, createMemfd, type Mapping, mapShared, PAGE_SIZE, unmap } from "../ffi/mod.ts";
import type { MemoryRegionDescriptor } from "../core/protocol/message.ts";

/** A region as sent in SET_MEM_TABLE / ADD_MEM_REG: where it is and the fd backing it. */
export interface DriverRegion {
  /** The region description. */
  readonly descriptor: MemoryRegionDescriptor;
  /** The memfd backing it (owned by {@link DriverMemory}; the message sends a copy). */
  readonly fd: number;
}

/** Options of {@link DriverMemory}. */
export interface DriverMemoryOptions {
  /** Total RAM in bytes (a multiple of the page size). */
  readonly size: number;
  /** Guest-physical address of the first byte. Default 0. */
  readonly guestBase?: number;
  /**
   * Split RAM into two regions of the same memfd, as QEMU splits RAM around
   * the PCI hole below 4 GiB: the first `at` bytes at `guestBase`, the rest
   * at file offset `at` and guest-physical `guestBase + at + gap`.
   */
  readonly split?: { readonly at: number; readonly gap?: number };
  /** memfd name, visible in /proc/PID/fd. Default "guest-ram". */
  readonly name?: string;
}

/** Default hole between the two regions of a split: 1 GiB, like QEMU's PCI hole. */
export const DEFAULT_SPLIT_GAP = 0x4000_0000;

interface Span {
  readonly gpa: number;
  readonly size: number;
  /** Offset in the memfd and in the mapping. */
  readonly offset: number;
}

/** Guest RAM backed by a memfd mapped in this process. */
export class DriverMemory {
  /** The memfd. */
  readonly fd: number;
  /** Total bytes. */
  readonly size: number;
  /** All RAM bytes, in file order (region 0 then region 1). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #mapping: Mapping;
  readonly #spans: readonly Span[];
  /** Next free guest-physical address per region. */
  readonly #next: number[];
  #closed = false;

  /** Creates and maps the memfd. */
  constructor(options: DriverMemoryOptions) {
    const { size, guestBase = 0, split, name = "guest-ram" } = options;
    if (!(size > 0) || size % PAGE_SIZE !== 0) {
      throw new RangeError(`guest RAM size ${size} must be a positive multiple of ${PAGE_SIZE}`);
    }
    if (split && !(split.at > 0 && split.at < size && split.at % PAGE_SIZE === 0)) {
      throw new RangeError(`split at ${split.at} must be page aligned inside 0..${size}`);
    }
    this.size = size;
    this.fd = createMemfd(name, size);
    try {
      this.#mapping = mapShared(this.fd, { length: size, offset: 0 });
    } catch (error) {
      close(this.fd);
      throw error;
    }
    this.bytes = new Uint8Array(this.#mapping.buffer);
    this.#spans = split
      ? [
        { gpa: guestBase, size: split.at, offset: 0 },
        {
          gpa: guestBase + split.at + (split.gap ?? DEFAULT_SPLIT_GAP),
          size: size - split.at,
          offset: split.at,
        },
      ]
      : [{ gpa: guestBase, size, offset: 0 }];
    this.#next = this.#spans.map((s) => s.gpa);
  }

  /** Host address of the mapping's first byte (the front-end's "userspace" address). */
  get hostAddress(): number {
    return this.#mapping.address;
  }

  /** Number of regions (1, or 2 when split). */
  get regionCount(): number {
    return this.#spans.length;
  }

  /**
   * The regions to send in SET_MEM_TABLE / ADD_MEM_REG: `userspaceAddr` is
   * this process's address of the region, `mmapOffset` its offset in the memfd.
   */
  regions(): DriverRegion[] {
    return this.#spans.map((s) => ({
      descriptor: {
        guestPhysAddr: s.gpa,
        memorySize: s.size,
        userspaceAddr: this.#mapping.address + s.offset,
        mmapOffset: s.offset,
      },
      fd: this.fd,
    }));
  }

  /**
   * Allocates `size` bytes aligned to `align` (a power of two) from region
   * `options.region` (default: the first region with room). Returns the
   * guest-physical address. Memory is never freed; size the RAM for the test.
   */
  alloc(size: number, align = 8, options: { region?: number } = {}): number {
    if (!(size > 0) || align <= 0 || (align & (align - 1)) !== 0) {
      throw new RangeError(`bad allocation of ${size} bytes aligned to ${align}`);
    }
    const candidates = options.region === undefined
      ? this.#spans.map((_, i) => i)
      : [options.region];
    for (const i of candidates) {
      const span = this.#spans[i];
      if (!span) throw new RangeError(`no region ${i}`);
      const start = Math.ceil(this.#next[i] / align) * align;
      if (start + size <= span.gpa + span.size) {
        this.#next[i] = start + size;
        return start;
      }
    }
    throw new RangeError(`guest RAM exhausted allocating ${size} bytes`);
  }

  /** Bytes still free in region `index` (ignoring alignment). */
  free(index = 0): number {
    const span = this.#spans[index];
    return span.gpa + span.size - this.#next[index];
  }

  /** The offset of `gpa` in the mapping, or -1 outside RAM. */
  offsetOf(gpa: number): number {
    for (const s of this.#spans) {
      if (gpa >= s.gpa && gpa < s.gpa + s.size) return s.offset + (gpa - s.gpa);
    }
    return -1;
  }

  /** The front-end virtual address of `gpa` (what SET_VRING_ADDR carries). */
  userAddress(gpa: number): number {
    const offset = this.offsetOf(gpa);
    if (offset < 0) throw new RangeError(`gpa 0x${gpa.toString(16)} is outside guest RAM`);
    return this.#mapping.address + offset;
  }

  /**
   * A live view (no copy) of `[gpa, gpa + length)`, which must lie within one
   * region. Views die with {@link close}.
   */
  view(gpa: number, length: number): Uint8Array<ArrayBuffer> {
    const offset = this.offsetOf(gpa);
    const span = this.#spans.find((s) => gpa >= s.gpa && gpa < s.gpa + s.size);
    if (offset < 0 || !span || gpa + length > span.gpa + span.size) {
      throw new RangeError(
        `[0x${gpa.toString(16)}, +0x${length.toString(16)}) is not inside one region`,
      );
    }
    return this.bytes.subarray(offset, offset + length);
  }

  /** A `DataView` over `[gpa, gpa + length)` (little-endian accessors for ring fields). */
  dataView(gpa: number, length: number): DataView {
    const v = this.view(gpa, length);
    return new DataView(v.buffer, v.byteOffset, v.byteLength);
  }

  /** Copies `data` into guest memory at `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    this.view(gpa, data.length).set(data);
  }

  /** Copies `length` bytes out of guest memory at `gpa`. */
  read(gpa: number, length: number): Uint8Array<ArrayBuffer> {
    return this.view(gpa, length).slice();
  }

  /** Unmaps the RAM and closes the memfd. Idempotent. Views become invalid. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    unmap(this.#mapping);
    close(this.fd);
  }
}

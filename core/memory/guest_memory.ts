/**
 * Guest RAM as the front-end shares it: regions of memfds mapped into this
 * process, with bounds-checked translation of guest-physical addresses
 * (descriptors) and front-end virtual addresses (ring addresses).
 * docs/interop/vhost-user.rst "Memory access".
 *
 * @module
 */

import { close, fileSize } from "../../ffi/fd.ts";
import { type Mapping, mapShared, unmap } from "../../ffi/memory.ts";
import type { MemoryRegionDescriptor } from "../protocol/message.ts";

/** A mapped region. Shared by every {@link GuestMemory} that contains it. */
export class MemoryRegion {
  /** Where the front-end says this region is. */
  readonly descriptor: MemoryRegionDescriptor;
  /** The region's bytes in this process. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Host address of the first byte. */
  readonly hostAddress: number;
  readonly #mapping: Mapping | null;
  #references = 0;

  /** Wraps a mapping (or plain bytes, for tests) that covers `descriptor`. */
  constructor(
    descriptor: MemoryRegionDescriptor,
    mapping: Mapping | { bytes: Uint8Array<ArrayBuffer> },
  ) {
    this.descriptor = descriptor;
    if ("buffer" in mapping) {
      this.#mapping = mapping;
      this.bytes = new Uint8Array(mapping.buffer);
      this.hostAddress = mapping.address;
    } else {
      this.#mapping = null;
      this.bytes = mapping.bytes;
      this.hostAddress = 0;
    }
  }

  /** First guest-physical address after the region. */
  get guestEnd(): number {
    return this.descriptor.guestPhysAddr + this.descriptor.memorySize;
  }

  /** Counts one more holder. */
  retain(): void {
    this.#references++;
  }

  /** Unmaps a region no table ever held (a table that failed to build). */
  unmapUnused(): void {
    if (this.#references === 0 && this.#mapping) unmap(this.#mapping);
  }

  /** Drops a holder; the last one unmaps the region. */
  release(): void {
    if (--this.#references === 0 && this.#mapping) unmap(this.#mapping);
  }
}

/**
 * Maps `fd` for `descriptor`, then closes `fd` (the mapping keeps the memory).
 * Refuses an empty region or one that extends past the end of the file: a
 * mapping beyond end of file would fault (SIGBUS) on first touch.
 */
export function mapRegion(descriptor: MemoryRegionDescriptor, fd: number): MemoryRegion {
  try {
    const { memorySize, mmapOffset, guestPhysAddr } = descriptor;
    if (memorySize === 0) throw new RangeError("memory region of size 0");
    if (guestPhysAddr + memorySize > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`memory region at 0x${guestPhysAddr.toString(16)} wraps`);
    }
    const size = fileSize(fd);
    if (mmapOffset + memorySize > size) {
      throw new RangeError(
        `memory region [0x${mmapOffset.toString(16)}, +0x${
          memorySize.toString(16)
        }) exceeds its file of 0x${size.toString(16)} bytes`,
      );
    }
    return new MemoryRegion(descriptor, mapShared(fd, { length: memorySize, offset: mmapOffset }));
  } finally {
    close(fd);
  }
}

/** A run of guest memory resolved to this process: a region and an offset into it. */
export interface GuestSlice {
  /** The region holding the bytes. */
  readonly region: MemoryRegion;
  /** Byte offset into `region.bytes`. */
  readonly offset: number;
  /** Length in bytes. */
  readonly length: number;
}

/**
 * An immutable set of non-overlapping regions. Changing the table builds a
 * new `GuestMemory`; regions are unmapped when the last one holding them is
 * released, so views taken from an older table stay valid until then.
 */
export class GuestMemory {
  /** Regions ordered by guest-physical address. */
  readonly regions: readonly MemoryRegion[];
  #released = false;

  /**
   * Builds the table, retaining each region. Throws a `RangeError` if two
   * regions overlap in guest-physical space.
   */
  constructor(regions: readonly MemoryRegion[]) {
    const sorted = [...regions].sort((a, b) =>
      a.descriptor.guestPhysAddr - b.descriptor.guestPhysAddr
    );
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].descriptor.guestPhysAddr < sorted[i - 1].guestEnd) {
        throw new RangeError(
          `memory regions at 0x${sorted[i - 1].descriptor.guestPhysAddr.toString(16)} and 0x${
            sorted[i].descriptor.guestPhysAddr.toString(16)
          } overlap`,
        );
      }
    }
    this.regions = sorted;
    for (const region of sorted) region.retain();
  }

  /** Releases this table's hold on its regions. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const region of this.regions) region.release();
  }

  /** The region containing guest-physical `gpa`, if any. */
  regionAt(gpa: number): MemoryRegion | undefined {
    const regions = this.regions;
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i];
      if (gpa >= r.descriptor.guestPhysAddr && gpa < r.guestEnd) return r;
    }
    return undefined;
  }

  /**
   * Resolves `[gpa, gpa + length)` into slices (several if it spans adjacent
   * regions), appending them to `out`. Returns false, appending nothing, if
   * any byte lies outside guest memory. A zero length resolves to nothing.
   */
  resolve(gpa: number, length: number, out: GuestSlice[]): boolean {
    if (length === 0) return true;
    const start = out.length;
    let address = gpa;
    let remaining = length;
    while (remaining > 0) {
      const region = this.regionAt(address);
      if (!region) {
        out.length = start;
        return false;
      }
      const offset = address - region.descriptor.guestPhysAddr;
      const take = Math.min(remaining, region.descriptor.memorySize - offset);
      out.push({ region, offset, length: take });
      address += take;
      remaining -= take;
    }
    return true;
  }

  /** The bytes at `[gpa, gpa + length)` if they lie within one region. */
  bytes(gpa: number, length: number): Uint8Array<ArrayBuffer> | null {
    const region = this.regionAt(gpa);
    if (!region) return null;
    const offset = gpa - region.descriptor.guestPhysAddr;
    if (offset + length > region.descriptor.memorySize) return null;
    return region.bytes.subarray(offset, offset + length);
  }

  /**
   * The bytes at front-end virtual address `[userAddr, userAddr + length)`,
   * if they lie within one region (ring addresses are given this way).
   */
  userBytes(userAddr: number, length: number): Uint8Array<ArrayBuffer> | null {
    for (const region of this.regions) {
      const { userspaceAddr, memorySize } = region.descriptor;
      if (userAddr >= userspaceAddr && userAddr - userspaceAddr + length <= memorySize) {
        const offset = userAddr - userspaceAddr;
        return region.bytes.subarray(offset, offset + length);
      }
    }
    return null;
  }
}

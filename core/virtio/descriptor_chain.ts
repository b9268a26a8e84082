/**
 * A descriptor chain parsed out of a split virtqueue (VIRTIO 1.2 §2.7.5):
 * its device-readable buffers, then its device-writable buffers, each
 * resolved to bytes of guest memory mapped in this process.
 *
 * @module
 */

import { IOV_MAX, type IovecList } from "../../ffi/iovec.ts";
import type { GuestSlice } from "../memory/guest_memory.ts";

/** A chain the driver made available, ready for the device to serve. */
export interface DescriptorChain {
  /** Index of the head descriptor: what the used ring reports back. */
  readonly head: number;
  /** Device-readable buffers, in order. */
  readonly readable: readonly GuestSlice[];
  /** Device-writable buffers, in order. */
  readonly writable: readonly GuestSlice[];
  /** Total bytes of the readable buffers. */
  readonly readableLength: number;
  /** Total bytes of the writable buffers. */
  readonly writableLength: number;
}

/** Why the device refused a chain; the queue logs it with its context. */
export class InvalidChainError extends Error {
  /** Describes a malformed chain. */
  constructor(message: string) {
    super(message);
    this.name = "InvalidChainError";
  }
}

/**
 * Copies up to `length` bytes from `slices`, starting `skip` bytes in, into
 * a new array. Returns fewer bytes if the slices hold fewer.
 */
export function readSlices(
  slices: readonly GuestSlice[],
  options: { skip?: number; length: number },
): Uint8Array {
  const out = new Uint8Array(options.length);
  let skip = options.skip ?? 0;
  let filled = 0;
  for (const slice of slices) {
    if (filled === out.length) break;
    if (skip >= slice.length) {
      skip -= slice.length;
      continue;
    }
    const take = Math.min(slice.length - skip, out.length - filled);
    const start = slice.offset + skip;
    out.set(slice.region.bytes.subarray(start, start + take), filled);
    filled += take;
    skip = 0;
  }
  return filled === out.length ? out : out.subarray(0, filled);
}

/**
 * Copies `data` into `slices`, starting `skip` bytes in. Returns the bytes
 * written (fewer than `data.length` if the slices are too small).
 */
export function writeSlices(
  slices: readonly GuestSlice[],
  data: Uint8Array,
  options: { skip?: number } = {},
): number {
  let skip = options.skip ?? 0;
  let written = 0;
  for (const slice of slices) {
    if (written === data.length) break;
    if (skip >= slice.length) {
      skip -= slice.length;
      continue;
    }
    const take = Math.min(slice.length - skip, data.length - written);
    slice.region.bytes.set(data.subarray(written, written + take), slice.offset + skip);
    written += take;
    skip = 0;
  }
  return written;
}

/**
 * Appends iovecs for bytes `[skip, skip + max)` of `slices` (by default all
 * of them) to `iov`, so host I/O (readv, writev, preadv…) moves bytes
 * straight between a file or socket and guest memory. Returns the bytes
 * covered: fewer than `max` if the slices end first or `iov` reaches
 * `IOV_MAX` entries, beyond which the kernel refuses the call.
 */
export function pushIovecs(
  slices: readonly GuestSlice[],
  iov: IovecList,
  options: { skip?: number; max?: number } = {},
): number {
  let skip = options.skip ?? 0;
  const max = options.max ?? Infinity;
  let covered = 0;
  for (const slice of slices) {
    if (covered === max || iov.count === IOV_MAX) break;
    if (skip >= slice.length) {
      skip -= slice.length;
      continue;
    }
    const take = Math.min(slice.length - skip, max - covered);
    if (take > 0) iov.push(slice.region.hostAddress + slice.offset + skip, take);
    covered += take;
    skip = 0;
  }
  return covered;
}

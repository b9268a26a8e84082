/**
 * A reusable array of `struct iovec` for scatter/gather calls whose buffers
 * live outside the JavaScript heap (guest memory).
 *
 * @module
 */

import { addressOf, IOVEC_SIZE, setAddress, stableBuffer } from "./structs.ts";

/** Linux's `IOV_MAX`: readv(2) and friends refuse more iovecs (EINVAL). */
export const IOV_MAX = 1024;

/** A growable, reusable `struct iovec[]`. */
export class IovecList {
  #bytes: Uint8Array<ArrayBuffer>;
  #view: DataView;
  #count = 0;
  #total = 0;

  /** Makes room for `capacity` entries (it grows on demand). */
  constructor(capacity = 16) {
    this.#bytes = stableBuffer(capacity * IOVEC_SIZE);
    this.#view = new DataView(this.#bytes.buffer);
  }

  /** Number of entries. */
  get count(): number {
    return this.#count;
  }

  /** Sum of the entry lengths. */
  get totalLength(): number {
    return this.#total;
  }

  /** Host address of the raw array (io_uring takes it as a number). */
  get address(): number {
    return addressOf(this.#bytes);
  }

  /** The raw array, to pass to readv/writev/preadv/pwritev/sendmsg. */
  get bytes(): Uint8Array<ArrayBuffer> {
    return this.#bytes;
  }

  /** Empties the list, keeping its storage. */
  clear(): void {
    this.#count = 0;
    this.#total = 0;
  }

  /** Appends `length` bytes at host `address`. */
  push(address: number, length: number): void {
    const offset = this.#count * IOVEC_SIZE;
    if (offset + IOVEC_SIZE > this.#bytes.length) this.#grow();
    setAddress(this.#view, { offset: offset, value: address });
    setAddress(this.#view, { offset: offset + 8, value: length });
    this.#count++;
    this.#total += length;
  }

  #grow(): void {
    const bigger = stableBuffer(this.#bytes.length * 2);
    bigger.set(this.#bytes);
    this.#bytes = bigger;
    this.#view = new DataView(bigger.buffer);
  }
}

/**
 * A connection's guest-to-host overflow buffer: bytes the guest sent that
 * the host socket could not take yet. It holds at most the `buf_alloc` we
 * advertise, so a guest that respects credit never overflows it (§5.10.6.3).
 *
 * @module
 */

/** A fixed-capacity byte ring, allocated on first use. */
export class TxBuffer {
  /** Most bytes it holds. */
  readonly capacity: number;
  #bytes: Uint8Array | null = null;
  #head = 0;
  #length = 0;

  /** An empty buffer of `capacity` bytes (no memory is taken until used). */
  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Bytes held. */
  get length(): number {
    return this.#length;
  }

  /** Room left. */
  get free(): number {
    return this.capacity - this.#length;
  }

  /** Whether nothing is held. */
  get empty(): boolean {
    return this.#length === 0;
  }

  /** Appends `data`; throws `RangeError` if it does not fit. */
  push(data: Uint8Array): void {
    if (data.length > this.free) {
      throw new RangeError(`${data.length} bytes do not fit in ${this.free} free bytes`);
    }
    const bytes = this.#bytes ??= new Uint8Array(this.capacity);
    const tail = (this.#head + this.#length) % this.capacity;
    const first = Math.min(data.length, this.capacity - tail);
    bytes.set(data.subarray(0, first), tail);
    bytes.set(data.subarray(first), 0);
    this.#length += data.length;
  }

  /** The oldest contiguous run of held bytes (a view; empty when nothing is held). */
  peek(): Uint8Array {
    if (this.#bytes === null || this.#length === 0) return new Uint8Array(0);
    const end = Math.min(this.#head + this.#length, this.capacity);
    return this.#bytes.subarray(this.#head, end);
  }

  /** Drops the oldest `count` bytes (after they were written out). */
  consume(count: number): void {
    if (count > this.#length) throw new RangeError(`cannot consume ${count} of ${this.#length}`);
    this.#length -= count;
    this.#head = this.#length === 0 ? 0 : (this.#head + count) % this.capacity;
    // An idle connection gives its memory back.
    if (this.#length === 0) this.#bytes = null;
  }
}

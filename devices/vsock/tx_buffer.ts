/**
 * A connection's guest-to-host overflow buffer: bytes the guest sent that
 * the host socket could not take yet (for SEQPACKET, its messages on their
 * way to the host). It holds at most the `buf_alloc` we advertise, so a
 * guest that respects credit never overflows it (§5.10.6.3).
 *
 * @module
 */

/** Smallest allocation: a buffer grows from here as bytes wait. */
const MIN_ALLOCATION = 4096;

/** A byte ring of bounded capacity, allocated on first use and grown as needed. */
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
    const bytes = this.#reserve(this.#length + data.length);
    const tail = (this.#head + this.#length) % bytes.length;
    const first = Math.min(data.length, bytes.length - tail);
    bytes.set(data.subarray(0, first), tail);
    bytes.set(data.subarray(first), 0);
    this.#length += data.length;
  }

  /** The oldest contiguous run of held bytes (a view; empty when nothing is held). */
  peek(): Uint8Array {
    if (this.#bytes === null || this.#length === 0) return new Uint8Array(0);
    const end = Math.min(this.#head + this.#length, this.#bytes.length);
    return this.#bytes.subarray(this.#head, end);
  }

  /**
   * The oldest `count` bytes in one array: a view when they do not wrap
   * around the ring's end, else a copy. Throws `RangeError` past what is held.
   */
  head(count: number): Uint8Array {
    if (count > this.#length) throw new RangeError(`cannot take ${count} of ${this.#length}`);
    const run = this.peek();
    if (run.length >= count) return run.subarray(0, count);
    const out = new Uint8Array(new ArrayBuffer(count));
    out.set(run);
    out.set(this.#bytes!.subarray(0, count - run.length), run.length);
    return out;
  }

  /** Drops the oldest `count` bytes (after they were written out). */
  consume(count: number): void {
    if (count > this.#length) throw new RangeError(`cannot consume ${count} of ${this.#length}`);
    this.#length -= count;
    this.#head = this.#length === 0 ? 0 : (this.#head + count) % this.#bytes!.length;
    // An idle connection gives its memory back.
    if (this.#length === 0) this.#bytes = null;
  }

  /**
   * Memory for `needed` bytes: the buffer doubles (up to the capacity) when
   * they do not fit, so a few waiting bytes never cost a whole `buf_alloc`.
   * Each array has its own ArrayBuffer, never on the V8 heap, so a view of
   * it can go to a helper thread's send.
   */
  #reserve(needed: number): Uint8Array {
    const current = this.#bytes;
    if (current !== null && needed <= current.length) return current;
    let size = Math.max(MIN_ALLOCATION, (current?.length ?? 0) * 2);
    while (size < needed) size *= 2;
    const grown = new Uint8Array(new ArrayBuffer(Math.min(size, this.capacity)));
    if (current !== null) {
      // Unwrapped into the new array: the oldest byte goes first.
      const first = current.subarray(
        this.#head,
        Math.min(this.#head + this.#length, current.length),
      );
      grown.set(first);
      grown.set(current.subarray(0, this.#length - first.length), first.length);
    }
    this.#bytes = grown;
    this.#head = 0;
    return grown;
  }
}

/**
 * A first-in first-out queue with O(1) push and shift: control packets and
 * sibling packets wait here for the guest's rx buffers.
 *
 * @module
 */

/** A queue with O(1) push and shift (an array with a moving head, compacted now and then). */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** Items waiting. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Adds `item` at the tail. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** The head item, left in place. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Takes the head item. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Drops every item. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

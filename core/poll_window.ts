/**
 * The adaptive busy-poll window of the event loop, modelled on KVM's halt
 * polling (`virt/kvm/kvm_main.c`: `kvm_vcpu_halt`, `grow_halt_poll_ns`,
 * `shrink_halt_poll_ns`; Documentation/virt/kvm/halt-polling.rst).
 *
 * After serving, the loop polls its fds for {@link PollWindow.micros}
 * before it sleeps. When the next event comes, the loop reports the *block
 * time*: from the start of the poll to that event, whether it was caught by
 * polling or woke a sleep. Then, as KVM decides:
 *
 * - caught within the window: polling paid off, the window stays;
 * - came later, but within the cap: a longer window would have caught it, so
 *   the window grows (×`grow`, at least `growStartMicros`, at most the cap);
 * - came after the cap: no window we allow could have caught it, so the
 *   window shrinks (÷`shrink`, and to 0 below `growStartMicros`; `shrink` 0
 *   drops it to 0 at once).
 *
 * An idle daemon's window therefore falls to 0 after its first long sleep,
 * and it sleeps without polling; a daemon whose guest asks again within the
 * cap keeps a window just long enough to catch it. Pure state: no clock, no
 * fds, so it is tested as a state machine.
 *
 * @module
 */

/** Parameters of a {@link PollWindow}, named after KVM's module parameters. */
export interface PollWindowOptions {
  /** The cap (KVM's `halt_poll_ns`), in µs; 0 turns polling off. */
  readonly maxMicros: number;
  /** Factor a window grows by (`halt_poll_ns_grow`); default 2. */
  readonly grow?: number;
  /** First window grown to from 0, in µs (`halt_poll_ns_grow_start`); default 10. */
  readonly growStartMicros?: number;
  /** Divisor a window shrinks by (`halt_poll_ns_shrink`), 0: straight to 0; default 2. */
  readonly shrink?: number;
}

/** KVM's `halt_poll_ns_grow` default. */
export const POLL_GROW = 2;
/** KVM's `halt_poll_ns_grow_start` default (10,000 ns). */
export const POLL_GROW_START_MICROS = 10;
/** KVM's `halt_poll_ns_shrink` default. */
export const POLL_SHRINK = 2;

/** How one block time changed the window. */
export type PollOutcome = "hit" | "grow" | "shrink" | "none";

/** The current poll window and the rule that moves it. */
export class PollWindow {
  /** The cap, in µs. */
  readonly maxMicros: number;
  readonly #grow: number;
  readonly #growStart: number;
  readonly #shrink: number;
  #micros = 0;

  /** A window of 0 that may grow up to `options.maxMicros`. */
  constructor(options: PollWindowOptions) {
    if (!(options.maxMicros >= 0)) {
      throw new RangeError(`poll cap must be ≥ 0 µs, got ${options.maxMicros}`);
    }
    this.maxMicros = options.maxMicros;
    this.#grow = options.grow ?? POLL_GROW;
    this.#growStart = Math.min(options.growStartMicros ?? POLL_GROW_START_MICROS, this.maxMicros);
    this.#shrink = options.shrink ?? POLL_SHRINK;
  }

  /** How long to poll before sleeping now, in µs (0: sleep at once). */
  get micros(): number {
    return this.#micros;
  }

  /**
   * Records a block time (µs from the start of the poll to the next event;
   * `Infinity` when the loop went idle without one) and adjusts the window.
   */
  record(blockMicros: number): PollOutcome {
    if (this.maxMicros === 0) return "none";
    if (this.#micros > 0 && blockMicros <= this.#micros) return "hit";
    if (blockMicros > this.maxMicros) {
      if (this.#micros === 0) return "none";
      this.#micros = this.#shrink === 0 ? 0 : this.#micros / this.#shrink;
      if (this.#micros < this.#growStart) this.#micros = 0;
      return "shrink";
    }
    if (this.#micros >= this.maxMicros) return "none";
    this.#micros = Math.min(Math.max(this.#micros * this.#grow, this.#growStart), this.maxMicros);
    return "grow";
  }
}

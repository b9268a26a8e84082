/**
 * The byte quota of `--max-bytes` per `--period`, as rust-vmm's
 * vhost-device-rng counts it: a period starts with the first request after
 * the previous one ended, and grants at most `maxBytes` until it ends. The
 * device asks how long to wait instead of sleeping, so the event loop never
 * stalls.
 *
 * @module
 */

/** Milliseconds on a monotonic clock. */
export type Clock = () => number;

/** Options of {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Length of a period in milliseconds (≥ 1). */
  readonly periodMs: number;
  /** Bytes allowed per period, or `null` for no limit. */
  readonly maxBytes: number | null;
  /** The clock; default `performance.now`. */
  readonly now?: Clock;
}

/** A fixed-window byte quota. */
export class RateLimiter {
  readonly #periodMs: number;
  readonly #maxBytes: number | null;
  readonly #now: Clock;
  #periodStart: number | null = null;
  #remaining = 0;

  /** A limiter whose first period starts at the first {@link available} call. */
  constructor(options: RateLimiterOptions) {
    if (!(options.periodMs >= 1)) throw new RangeError(`period ${options.periodMs} ms is not ≥ 1`);
    if (options.maxBytes !== null && !(options.maxBytes >= 1)) {
      throw new RangeError(`max bytes ${options.maxBytes} is not ≥ 1`);
    }
    this.#periodMs = options.periodMs;
    this.#maxBytes = options.maxBytes;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Bytes that may be read now; 0 means wait {@link msUntilRefill}. Starts a
   * new period if the last one has ended. Without a limit: `MAX_SAFE_INTEGER`.
   */
  available(): number {
    if (this.#maxBytes === null) return Number.MAX_SAFE_INTEGER;
    const now = this.#now();
    if (this.#periodStart === null || now - this.#periodStart >= this.#periodMs) {
      this.#periodStart = now;
      this.#remaining = this.#maxBytes;
    }
    return this.#remaining;
  }

  /** Counts `bytes` read against the current period. */
  consume(bytes: number): void {
    if (this.#maxBytes !== null) this.#remaining = Math.max(0, this.#remaining - bytes);
  }

  /** Milliseconds until the current period ends (0 if it has). */
  msUntilRefill(): number {
    if (this.#periodStart === null) return 0;
    return Math.max(0, this.#periodStart + this.#periodMs - this.#now());
  }
}

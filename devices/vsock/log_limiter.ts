/**
 * Log lines a guest can cause, rate-limited: a hostile guest must not be
 * able to flood the host's logs by repeating a bad packet.
 *
 * @module
 */

import type { Logger } from "../../core/log.ts";

/** How many lines of one kind are logged at full level before thinning out. */
export const LOG_BURST = 10;
/** After the burst, one line in this many is logged at full level. */
export const LOG_EVERY = 10_000;

/** Counts guest-caused events per kind and logs the first few of each. */
export class LogLimiter {
  readonly #counts = new Map<string, number>();

  /** Limits lines written to `log`. */
  constructor(readonly log: Logger) {}

  /** Logs `message` at warn level unless `kind` was logged too often; then at debug. */
  warn(kind: string, message: string): void {
    const count = (this.#counts.get(kind) ?? 0) + 1;
    this.#counts.set(kind, count);
    if (count <= LOG_BURST) this.log.warn(message);
    else if (count % LOG_EVERY === 0) this.log.warn(`${message} (${count} times so far)`);
    else this.log.debug(message);
  }

  /** Like {@link warn}, at info level. */
  info(kind: string, message: string): void {
    const count = (this.#counts.get(kind) ?? 0) + 1;
    this.#counts.set(kind, count);
    if (count <= LOG_BURST) this.log.info(message);
    else if (count % LOG_EVERY === 0) this.log.info(`${message} (${count} times so far)`);
    else this.log.debug(message);
  }
}

/**
 * sched_yield(2): lets another runnable thread have this CPU.
 *
 * @module
 */

import { libc } from "./libc.ts";

/**
 * Gives the CPU to another runnable thread, if any, and returns when this one
 * is scheduled again; with nothing else runnable it returns at once. It
 * cannot fail on Linux (sched_yield(2)), so its result is not checked.
 */
export function yieldCpu(): void {
  libc.sched_yield();
}

/**
 * timerfd(2): timers as fds, so the event loop waits on them with everything else.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check } from "./errno.ts";
import { ITIMERSPEC_SIZE, stableBuffer } from "./structs.ts";

const CLOCK_MONOTONIC = 1;
const TFD_NONBLOCK = 0o4000;
const TFD_CLOEXEC = 0o2000000;

const spec = stableBuffer(ITIMERSPEC_SIZE);
const specView = new DataView(spec.buffer);

/** Creates a non-blocking monotonic timerfd. */
export function createTimerFd(): number {
  return check(libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), "timerfd_create");
}

/**
 * Arms `fd` to fire once after `delayMs` (0 disarms). Read the fd to clear
 * the expiry count.
 */
export function armTimerFd(fd: number, delayMs: number): void {
  const ns = BigInt(Math.max(0, Math.round(delayMs * 1e6)));
  // A zero it_value disarms; round positive delays up to at least 1 ns.
  const value = delayMs > 0 && ns === 0n ? 1n : ns;
  specView.setBigInt64(0, 0n, true);
  specView.setBigInt64(8, 0n, true);
  specView.setBigInt64(16, value / 1_000_000_000n, true);
  specView.setBigInt64(24, value % 1_000_000_000n, true);
  check(libc.timerfd_settime(fd, 0, spec, null), "timerfd_settime", { detail: `fd ${fd}` });
}

/**
 * eventfd(2): the kick and call notifications of vhost-user.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, EAGAIN, lastErrno, SyscallError } from "./errno.ts";
import { stableBuffer } from "./structs.ts";

/** `EFD_CLOEXEC`. */
export const EFD_CLOEXEC = 0o2000000;
/** `EFD_NONBLOCK`. */
export const EFD_NONBLOCK = 0o4000;

const counter = stableBuffer(8);
const counterView = new DataView(counter.buffer);
const ONE = stableBuffer(8);
new DataView(ONE.buffer).setUint32(0, 1, true);

/** Creates an eventfd; by default close-on-exec and non-blocking. */
export function createEventFd(options: { blocking?: boolean } = {}): number {
  const flags = EFD_CLOEXEC | (options.blocking ? 0 : EFD_NONBLOCK);
  return check(libc.eventfd(0, flags), "eventfd");
}

/** Adds 1 to the counter, waking a reader. */
export function signalEventFd(fd: number): void {
  if (libc.write(fd, ONE, 8n) === 8) return;
  const errno = lastErrno();
  // A saturated counter is already signalled.
  if (errno !== EAGAIN) throw new SyscallError("write", errno, { detail: `eventfd ${fd}` });
}

/**
 * Reads and resets the counter. Returns its value (at most 2^53 is exact),
 * or 0 if a non-blocking eventfd was not signalled.
 */
export function drainEventFd(fd: number): number {
  if (libc.read(fd, counter, 8n) === 8) {
    return counterView.getUint32(0, true) +
      counterView.getUint32(4, true) * 4294967296;
  }
  const errno = lastErrno();
  if (errno === EAGAIN) return 0;
  throw new SyscallError("read", errno, { detail: `eventfd ${fd}` });
}

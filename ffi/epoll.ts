/**
 * epoll(7): the readiness set the event loop waits on.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, EINTR, lastErrno, SyscallError } from "./errno.ts";
import { EPOLL_EVENT_DATA_OFFSET, EPOLL_EVENT_SIZE, stableBuffer } from "./structs.ts";

/** Readable. */
export const EPOLLIN = 0x1;
/** Writable. */
export const EPOLLOUT = 0x4;
/** Error condition (always reported). */
export const EPOLLERR = 0x8;
/** Hang-up (always reported). */
export const EPOLLHUP = 0x10;
/** Peer closed its writing end. */
export const EPOLLRDHUP = 0x2000;
/** Edge-triggered: report a change of readiness once, not while it lasts. */
export const EPOLLET = 0x80000000;

const EPOLL_CLOEXEC = 0o2000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;

/** An epoll instance; each watched fd carries a 32-bit token chosen by the caller. */
export class Epoll {
  /** The epoll fd. */
  readonly fd: number;
  readonly #ctl = stableBuffer(EPOLL_EVENT_SIZE);
  readonly #ctlView = new DataView(this.#ctl.buffer);
  readonly #events: Uint8Array<ArrayBuffer>;
  readonly #eventsView: DataView;
  readonly #capacity: number;

  /** Creates the instance; `capacity` bounds the events one wait returns. */
  constructor(capacity = 64) {
    this.fd = check(libc.epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
    this.#capacity = capacity;
    this.#events = stableBuffer(capacity * EPOLL_EVENT_SIZE);
    this.#eventsView = new DataView(this.#events.buffer);
  }

  /** Starts watching `fd` for `events`, reporting `token`. */
  add(fd: number, interest: { events: number; token: number }): void {
    this.#control(EPOLL_CTL_ADD, fd, interest);
  }

  /** Changes the events or token of a watched fd. */
  modify(fd: number, interest: { events: number; token: number }): void {
    this.#control(EPOLL_CTL_MOD, fd, interest);
  }

  /** Stops watching `fd`. */
  remove(fd: number): void {
    this.#control(EPOLL_CTL_DEL, fd, { events: 0, token: 0 });
  }

  /**
   * Waits up to `timeoutMs` (-1: forever) and returns how many events are
   * ready; read them with {@link eventToken} and {@link eventFlags}.
   * An interrupted wait returns 0.
   */
  wait(timeoutMs: number): number {
    const n = libc.epoll_wait(this.fd, this.#events, this.#capacity, timeoutMs);
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno === EINTR) return 0;
    throw new SyscallError("epoll_wait", errno);
  }

  /**
   * Like {@link wait}, but on a helper thread: the JavaScript thread stays
   * free for promises, timers and signal listeners meanwhile. Costs a thread
   * hop (tens of µs), so the event loop uses it only when idle. The helper
   * thread's errno is out of reach: a failed wait (EINTR) returns 0.
   */
  async waitAsync(timeoutMs: number): Promise<number> {
    const n = await libc.epoll_wait_nonblocking(this.fd, this.#events, this.#capacity, timeoutMs);
    return n < 0 ? 0 : n;
  }

  /** The token of ready event `index`. */
  eventToken(index: number): number {
    return this.#eventsView.getUint32(index * EPOLL_EVENT_SIZE + EPOLL_EVENT_DATA_OFFSET, true);
  }

  /** The flags (EPOLLIN, EPOLLHUP…) of ready event `index`. */
  eventFlags(index: number): number {
    return this.#eventsView.getUint32(index * EPOLL_EVENT_SIZE, true);
  }

  /** Closes the epoll fd. */
  close(): void {
    libc.close(this.fd);
  }

  #control(op: number, fd: number, interest: { events: number; token: number }): void {
    this.#ctlView.setUint32(0, interest.events, true);
    this.#ctlView.setUint32(EPOLL_EVENT_DATA_OFFSET, interest.token, true);
    this.#ctlView.setUint32(EPOLL_EVENT_DATA_OFFSET + 4, 0, true);
    check(libc.epoll_ctl(this.fd, op, fd, this.#ctl), "epoll_ctl", {
      detail: `op ${op}, fd ${fd}`,
    });
  }
}

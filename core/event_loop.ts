/**
 * The event loop: one epoll set holding every fd the daemon waits on
 * (listening sockets, front-end connections, kick eventfds, device host fds,
 * timerfds).
 *
 * Two ways to wait. While busy it blocks in epoll_wait synchronously: at
 * queue depth 1 each request arrives while the loop waits, and a synchronous
 * wait wakes in the kernel's time, where a promise-based (nonblocking FFI)
 * wait adds a thread hop per request (docs/architecture.md has the figures).
 * After {@link HOT_WAIT_MS} without events, at least every
 * {@link YIELD_INTERVAL_MS} under load, and whenever promises it tracks are
 * pending, it waits on a helper thread instead, which leaves Deno's own loop
 * free to run signal listeners and promise continuations. {@link stop}
 * signals an eventfd in the set, so even an idle wait ends at once.
 *
 * While busy it also polls the set without sleeping for a while before it
 * blocks: the next kick then finds it awake, which saves the wake-up of an
 * idle CPU (tens of µs on a virtual machine; docs/architecture.md). How long
 * is decided as KVM's halt polling decides ({@link PollWindow}): the window
 * grows while events arrive just after it ends and falls to 0 when they do
 * not, so an idle daemon sleeps without polling. `pollMicros` caps it (0:
 * never poll). Between polls the loop yields the CPU, so a runnable thread on
 * the same CPU (the guest's, the front-end's) runs instead of waiting for us,
 * as KVM stops polling when another task is runnable.
 *
 * @module
 */

import {
  armTimerFd,
  close,
  createEventFd,
  createTimerFd,
  drainEventFd,
  Epoll,
  EPOLLIN,
  signalEventFd,
  yieldCpu,
} from "../ffi/mod.ts";
import type { Logger } from "./log.ts";
import { PollWindow } from "./poll_window.ts";

/** Called with the epoll flags (EPOLLIN, EPOLLHUP…) when a watched fd is ready. */
export type ReadyHandler = (flags: number) => void;

/** How long a synchronous wait lasts before the loop counts as idle. */
export const HOT_WAIT_MS = 5;
/** Longest time without letting Deno's loop turn while busy. */
export const YIELD_INTERVAL_MS = 10;
/**
 * A yield that kept the loop off the CPU longer than this (20 µs) ran
 * another task's time slice, not a quick peer's request: the CPU is
 * contended, so polling stops.
 */
const CONTENDED_YIELD_MS = 0.02;
/** The default cap of the adaptive poll window, in µs (`--poll-us`; docs/architecture.md). */
export const DEFAULT_POLL_MICROS = 200;

const WAKE_TOKEN = 0;

/** A one-shot timer on the loop. */
export interface Timer {
  /** Cancels the timer if it has not fired. */
  cancel(): void;
}

/**
 * How the loop waits: `hybrid` (synchronous while busy, on a helper thread
 * when idle) or `async` (always on a helper thread; kept to measure the
 * trade-off, see docs/architecture.md).
 */
export type WaitPolicy = "hybrid" | "async";

/** The daemon's single-threaded event loop. */
export class EventLoop {
  readonly #epoll = new Epoll(64);
  readonly #handlers = new Map<number, { fd: number; handler: ReadyHandler }>();
  readonly #fdTokens = new Map<number, number>();
  readonly #log: Logger;
  readonly #policy: WaitPolicy;
  readonly #window: PollWindow;
  readonly #wakeFd = createEventFd();
  #nextToken = 1;
  readonly #deferred: (() => void)[] = [];
  #pending = 0;
  #running = false;
  #stopping = false;

  /**
   * A loop that reports handler failures to `log`. `pollMicros` caps the
   * adaptive poll window (default {@link DEFAULT_POLL_MICROS}; 0: never poll).
   */
  constructor(log: Logger, options: { policy?: WaitPolicy; pollMicros?: number } = {}) {
    this.#log = log;
    this.#policy = options.policy ?? "hybrid";
    this.#window = new PollWindow({ maxMicros: options.pollMicros ?? DEFAULT_POLL_MICROS });
    this.#epoll.add(this.#wakeFd, { events: EPOLLIN, token: WAKE_TOKEN });
  }

  /** Calls `handler` whenever `fd` is ready for `options.events` (default EPOLLIN). */
  watch(fd: number, handler: ReadyHandler, options: { events?: number } = {}): void {
    const events = options.events ?? EPOLLIN;
    const token = this.#nextToken++;
    this.#epoll.add(fd, { events, token });
    this.#handlers.set(token, { fd, handler });
    this.#fdTokens.set(fd, token);
  }

  /** Changes the events a watched fd waits for (e.g. adding EPOLLOUT). */
  rewatch(fd: number, events: number): void {
    const token = this.#fdTokens.get(fd);
    if (token !== undefined) this.#epoll.modify(fd, { events, token });
  }

  /** Stops watching `fd`. Events already collected for it are dropped. */
  unwatch(fd: number): void {
    const token = this.#fdTokens.get(fd);
    if (token === undefined) return;
    this.#fdTokens.delete(fd);
    this.#handlers.delete(token);
    this.#epoll.remove(fd);
  }

  /** The current poll window in µs (0 when idle or when polling is off). */
  get pollWindowMicros(): number {
    return this.#window.micros;
  }

  /** Whether `fd` is watched. */
  watching(fd: number): boolean {
    return this.#fdTokens.has(fd);
  }

  /** Runs `callback` once after `delayMs`, as a timerfd in the epoll set. */
  setTimer(delayMs: number, callback: () => void): Timer {
    const fd = createTimerFd();
    const cancel = () => {
      if (!this.watching(fd)) return;
      this.unwatch(fd);
      close(fd);
    };
    this.watch(fd, () => {
      drainEventFd(fd);
      cancel();
      callback();
    });
    armTimerFd(fd, Math.max(delayMs, 0.001));
    return { cancel };
  }

  /**
   * Tracks a promise (nonblocking FFI, a worker's reply): while any is
   * pending the loop waits at most 1 ms so its continuation runs promptly.
   */
  track<T>(promise: Promise<T>): Promise<T> {
    this.#pending++;
    return promise.finally(() => this.#pending--);
  }

  /**
   * Runs `callback` after the fds that are ready now have been served. A
   * handler with more work than one pass should take does part of it and
   * defers the rest, so one busy guest cannot starve the others.
   */
  defer(callback: () => void): void {
    this.#deferred.push(callback);
  }

  /** Makes {@link run} return after the current pass, waking an idle wait. */
  stop(): void {
    this.#stopping = true;
    signalEventFd(this.#wakeFd);
  }

  /** Serves events until {@link stop}. */
  async run(): Promise<void> {
    if (this.#running) throw new Error("event loop is already running");
    this.#running = true;
    this.#stopping = false;
    let hot = false;
    let lastYield = performance.now();
    try {
      while (!this.#stopping) {
        let ready: number;
        // Deferred work is due now: look at the fds without blocking.
        const deferred = this.#deferred.length > 0;
        const sync = this.#policy === "hybrid" && this.#pending === 0;
        if (hot && sync && performance.now() - lastYield < YIELD_INTERVAL_MS) {
          if (deferred) ready = this.#epoll.wait(0);
          else {
            const since = performance.now();
            const window = this.#window.micros;
            ready = window > 0 ? this.#poll(since + window / 1000) : 0;
            if (ready === 0) ready = this.#epoll.wait(HOT_WAIT_MS);
            // The block time decides the next window; no event at all: idle.
            this.#window.record(ready > 0 ? (performance.now() - since) * 1000 : Infinity);
          }
          hot = ready > 0 || deferred;
        } else {
          ready = await this.#epoll.waitAsync(hot || deferred ? 0 : -1);
          lastYield = performance.now();
          hot = true;
        }
        for (let i = 0; i < ready; i++) {
          this.#dispatch(this.#epoll.eventToken(i), this.#epoll.eventFlags(i));
        }
        if (deferred) this.#runDeferred();
      }
    } finally {
      this.#running = false;
    }
  }

  /**
   * Closes the epoll set. Watched fds stay open: their owners close them,
   * and may still call {@link unwatch} (nothing is watched any more).
   */
  close(): void {
    this.#handlers.clear();
    this.#fdTokens.clear();
    this.#epoll.close();
    close(this.#wakeFd);
  }

  /**
   * Polls the set without sleeping until `until` (a `performance.now()`
   * time); returns the events ready. Each empty look yields the CPU, so
   * polling never keeps a runnable thread on this CPU waiting; a yield that
   * took long means others want this CPU, and then the loop stops polling
   * and sleeps, as KVM stops when another task is runnable (a sleeper is
   * woken with priority; a yielder waits its turn behind the others).
   */
  #poll(until: number): number {
    for (;;) {
      const ready = this.#epoll.wait(0);
      const now = performance.now();
      if (ready > 0 || now >= until) return ready;
      yieldCpu();
      if (performance.now() - now > CONTENDED_YIELD_MS) return 0;
    }
  }

  #runDeferred(): void {
    for (const callback of this.#deferred.splice(0)) {
      try {
        callback();
      } catch (error) {
        this.#log.error(`deferred work failed: ${error instanceof Error ? error.stack : error}`);
      }
    }
  }

  #dispatch(token: number, flags: number): void {
    if (token === WAKE_TOKEN) {
      drainEventFd(this.#wakeFd);
      return;
    }
    const entry = this.#handlers.get(token);
    if (!entry) return;
    try {
      entry.handler(flags);
    } catch (error) {
      this.#log.error(
        `handler for fd ${entry.fd} failed: ${error instanceof Error ? error.stack : error}`,
      );
    }
  }
}

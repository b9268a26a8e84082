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

import { Epoll, EPOLLIN } from "../ffi/epoll.ts";
import { createEventFd, drainEventFd, signalEventFd } from "../ffi/eventfd.ts";
import { close } from "../ffi/fd.ts";
import { yieldCpu } from "../ffi/sched.ts";
import { armTimerFd, createTimerFd } from "../ffi/timerfd.ts";
import type { Logger } from "./log.ts";
import { PollWindow } from "./poll_window.ts";

/** Called with the epoll flags (EPOLLIN, EPOLLHUP…) when a watched fd is ready. */
export type ReadyHandler = (flags: number) => void;

/** How long a synchronous wait lasts before the loop counts as idle. */
export const HOT_WAIT_MS = 5;
/** Longest time without letting Deno's loop turn while busy. */
export const YIELD_INTERVAL_MS = 10;
/**
 * A yield that kept the loop off the CPU longer than this (50 µs) ran
 * another task's time slice, not a quick peer's request: the CPU is
 * contended, so polling stops. 20 µs stopped too soon on a VM whose
 * wake-ups cost 3.5x more (docs/architecture.md, "Adaptive polling").
 */
const CONTENDED_YIELD_MS = 0.05;
/**
 * While pollers watch rings in memory, how often a poll looks at the fds too
 * (10 µs): other fds wait at most this long for a busy loop, never longer
 * than the poll window for an idle one, which sleeps in epoll_wait.
 */
const FD_LOOK_INTERVAL_MS = 0.01;
/** The default cap of the adaptive poll window, in µs (`--poll-us`; docs/architecture.md). */
export const DEFAULT_POLL_MICROS = 200;

const WAKE_TOKEN = 0;

/**
 * Work the loop looks for in shared memory while it polls: virtqueues whose
 * notifications stay off while the loop polls them (see {@link EventLoop.pollsNext}).
 */
export interface Poller {
  /** Serves what arrived since the last look; true if anything did. */
  poll(): boolean;
  /** Turns notifications back on before the loop sleeps; true if work raced in (and was served). */
  arm(): boolean;
}

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
  readonly #pollers = new Set<Poller>();
  #pollsNext = false;
  /** When {@link #poll} last looked at the fds (a `performance.now()` time). */
  #fdsLookedAt = 0;
  #pending = 0;
  /** The clock reading of the poll's last look (see {@link #poll}). */
  #polledUntil = 0;
  /** The last {@link #poll} ended because pollers found (and served) work. */
  #polledWork = false;
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

  /**
   * True while the loop runs handlers after which it will poll before it
   * sleeps: a queue may then leave its notifications off (no kicks) and let
   * the loop's pollers look at its ring instead. Before any sleep the loop
   * calls every poller's `arm`, so nothing is missed; outside handlers
   * (promise continuations, which run while it sleeps) this is false.
   */
  get pollsNext(): boolean {
    return this.#pollsNext;
  }

  /** Adds work to look for while polling (a connection's rings); see {@link Poller}. */
  addPoller(poller: Poller): void {
    this.#pollers.add(poller);
  }

  /** Removes a poller, e.g. when its connection ends. */
  removePoller(poller: Poller): void {
    this.#pollers.delete(poller);
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
        // Work the pollers found (and served) counts as an event.
        let polled = false;
        // Deferred work is due now: look at the fds without blocking.
        const deferred = this.#deferred.length > 0;
        const sync = this.#policy === "hybrid" && this.#pending === 0;
        // One clock reading serves both the yield deadline and the block
        // time: at queue depth 1 a reading costs as much as the ring work.
        const since = hot && sync ? performance.now() : 0;
        if (hot && sync && since - lastYield < YIELD_INTERVAL_MS) {
          if (deferred) {
            polled = this.#runPollers();
            ready = this.#epoll.wait(0);
            // Only deferred work (a device waiting out a hold, or the rest of a
            // budget): a runnable thread on this CPU, perhaps the guest's, goes first.
            if (ready === 0 && !polled) yieldCpu();
          } else {
            const window = this.#window.micros;
            this.#polledWork = false;
            ready = window > 0 ? this.#poll(since, since + window / 1000) : 0;
            let blockMicros: number;
            if (ready > 0 || this.#polledWork) {
              polled = this.#polledWork;
              blockMicros = (this.#polledUntil - since) * 1000;
            } else if (this.#armPollers()) {
              polled = true;
              blockMicros = (performance.now() - since) * 1000;
            } else {
              ready = this.#epoll.wait(HOT_WAIT_MS);
              // The block time decides the next window; no event at all: idle.
              blockMicros = ready > 0 ? (performance.now() - since) * 1000 : Infinity;
            }
            this.#window.record(blockMicros);
          }
          hot = ready > 0 || deferred || polled;
        } else {
          polled = this.#armPollers();
          ready = await this.#epoll.waitAsync(hot || deferred || polled ? 0 : -1);
          lastYield = performance.now();
          hot = true;
        }
        // Handlers run now may leave notifications off if the loop polls next.
        this.#pollsNext = this.#pollers.size > 0 && sync && this.#window.micros > 0;
        try {
          for (let i = 0; i < ready; i++) {
            this.#dispatch(this.#epoll.eventToken(i), this.#epoll.eventFlags(i));
          }
          if (deferred) this.#runDeferred();
        } finally {
          this.#pollsNext = false;
        }
      }
      this.#armPollers();
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
   * Polls the pollers and the set without sleeping from `since` until
   * `until` (both `performance.now()` times); returns the fd events ready,
   * sets {@link #polledWork} if pollers found (and served) work, and leaves
   * the time of the last look in {@link #polledUntil}. Each empty look
   * yields the CPU, so polling never keeps a runnable thread on this CPU
   * waiting; a yield that took long means others want this CPU, and then the
   * loop stops polling and sleeps, as KVM stops when another task is runnable
   * (a sleeper is woken with priority; a yielder waits its turn behind the
   * others). One clock reading per look: the time between two looks is the
   * yield's plus one epoll_wait's, far below the threshold. While pollers
   * watch rings in memory, the fds are looked at only every
   * {@link FD_LOOK_INTERVAL_MS}: an epoll_wait costs more than the rest of
   * a request at queue depth 1.
   */
  #poll(since: number, until: number): number {
    let last = since;
    this.#polledWork = false;
    for (;;) {
      const polling = this.#pollers.size > 0;
      const served = polling && this.#runPollers();
      let ready = 0;
      if (!polling || last - this.#fdsLookedAt >= FD_LOOK_INTERVAL_MS || last < this.#fdsLookedAt) {
        this.#fdsLookedAt = last;
        ready = this.#epoll.wait(0);
      }
      if (ready > 0 || served) {
        this.#polledWork = served;
        this.#polledUntil = last;
        return ready;
      }
      if (last >= until) return 0;
      yieldCpu();
      const now = performance.now();
      if (now - last > CONTENDED_YIELD_MS) return 0;
      last = now;
    }
  }

  /**
   * Runs every poller (notifications may stay off after: the loop polls or
   * arms next). A poller that throws is logged and counts as no work.
   */
  #runPollers(): boolean {
    let found = false;
    this.#pollsNext = true;
    for (const poller of this.#pollers) {
      try {
        if (poller.poll()) found = true;
      } catch (error) {
        this.#log.error(`poller failed: ${error instanceof Error ? error.stack : error}`);
      }
    }
    this.#pollsNext = false;
    return found;
  }

  /** Turns every poller's notifications back on before a sleep; true if work raced in. */
  #armPollers(): boolean {
    let found = false;
    for (const poller of this.#pollers) {
      try {
        if (poller.arm()) found = true;
      } catch (error) {
        this.#log.error(`arming a poller failed: ${error instanceof Error ? error.stack : error}`);
      }
    }
    return found;
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

/**
 * Fairness between queues, fds and guests on one event loop: a device that
 * stops serving a busy ring after its budget runs the rest of the ring in a
 * later pass, after the loop has served every other ready fd. This is that
 * later pass, scheduled at most once at a time however often it is asked for.
 *
 * @module
 */

import type { EventLoop } from "./event_loop.ts";

/** A serving pass to run again from the event loop, scheduled at most once at a time. */
export class DeferredPass {
  readonly #run: () => void;
  #scheduled = false;

  /** A pass that calls `run`. */
  constructor(run: () => void) {
    this.#run = run;
  }

  /** Whether the pass is scheduled and has not run yet. */
  get scheduled(): boolean {
    return this.#scheduled;
  }

  /** Runs the pass once `loop` has served its other ready fds; nothing if it is already scheduled. */
  schedule(loop: EventLoop): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    loop.defer(() => {
      this.#scheduled = false;
      this.#run();
    });
  }
}

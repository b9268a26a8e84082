/**
 * A host stream paced by a timer rather than by audio hardware: the `null`
 * and `file` back-ends. It moves bytes at the stream's rate from the moment
 * of PCM_START, and wakes exactly when the oldest guest buffer is due, so a
 * played buffer returns when a real device would have consumed it and a
 * captured one when it would have been filled: the guest's ALSA clock runs
 * true. One timerfd per stream, in the daemon's epoll set.
 *
 * @module
 */

import { armTimerFd, close, createTimerFd, drainEventFd } from "../../ffi/mod.ts";
import type { HostEnvironment, HostStream, StreamPort } from "./backend.ts";
import { bytesPerSecond, frameBytes, type PcmParams } from "./pcm.ts";

/** Where a timer-paced stream's bytes go to or come from. */
export interface ClockedIo {
  /** The stream was prepared with `params`. Throws to refuse (IO_ERR). */
  prepare?(params: PcmParams, options: { newParams: boolean }): void;
  /** Output: bytes the clock consumed, in order. */
  consume?(bytes: Uint8Array): void;
  /** Input: fills `into` with the next captured bytes. */
  produce?(into: Uint8Array): void;
  /** The stream was released. */
  release?(): void;
}

/** Most bytes moved per wake-up; a late wake-up catches up over several passes. */
const MAX_CHUNK = 1 << 20;

/**
 * How long the guest may leave a running stream without buffers before
 * PCM_XRUN: a period, but at least this (the end of a drain leaves the
 * stream empty until the guest's PCM_STOP arrives).
 */
export const MIN_XRUN_GRACE_MS = 50;

/** A {@link HostStream} paced by a timerfd. */
export class ClockedStream implements HostStream {
  readonly #port: StreamPort;
  readonly #environment: HostEnvironment;
  readonly #io: ClockedIo;
  readonly #timer: number;
  #params: PcmParams | null = null;
  #bytesPerMs = 0;
  #frameBytes = 1;
  #running = false;
  /** performance.now() at which byte 0 of {@link #done} was due. */
  #origin = 0;
  /** Bytes moved since {@link #origin}. */
  #done = 0;
  /** Since when the guest has left the running stream without buffers, or null. */
  #starvedAt: number | null = null;
  #xrunSent = false;
  #scratch = new Uint8Array(0);
  #closed = false;

  /** A stream moving bytes between `port` and `io` at the stream's rate. */
  constructor(port: StreamPort, environment: HostEnvironment, io: ClockedIo) {
    this.#port = port;
    this.#environment = environment;
    this.#io = io;
    this.#timer = createTimerFd();
    environment.loop.watch(this.#timer, () => {
      drainEventFd(this.#timer);
      this.#tick();
    });
  }

  prepare(params: PcmParams, options: { newParams: boolean }): void {
    this.#io.prepare?.(params, options);
    this.#params = params;
    this.#bytesPerMs = bytesPerSecond(params) / 1000;
    this.#frameBytes = frameBytes(params);
  }

  start(): void {
    if (!this.#params) throw new Error("started before it was prepared");
    this.#running = true;
    this.#restartClock();
    this.#tick();
  }

  stop(): void {
    this.#running = false;
    this.#starvedAt = null;
    armTimerFd(this.#timer, 0);
  }

  release(): void {
    this.stop();
    if (this.#params) this.#io.release?.();
    this.#params = null;
  }

  wake(): void {
    if (!this.#running || this.#starvedAt === null) return;
    // The guest caught up: audio resumes now, the gap was silence.
    this.#starvedAt = null;
    this.#xrunSent = false;
    this.#restartClock();
    this.#tick();
  }

  delayBytes(): number {
    return 0;
  }

  /** Stops the timer for good (the device's connection ended). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.release();
    this.#environment.loop.unwatch(this.#timer);
    close(this.#timer);
  }

  #restartClock(): void {
    this.#origin = performance.now();
    this.#done = 0;
  }

  #tick(): void {
    if (!this.#running || !this.#params) return;
    const now = performance.now();
    if (this.#starvedAt !== null) {
      this.#checkXrun(now);
      return;
    }
    // Whole frames only, so a stream stopped mid-buffer leaves no half frame behind.
    let due = this.#wholeFrames(Math.floor((now - this.#origin) * this.#bytesPerMs)) - this.#done;
    while (due > 0) {
      const chunk = Math.min(due, this.#wholeFrames(MAX_CHUNK));
      const moved = this.#move(chunk);
      this.#done += moved;
      due -= moved;
      if (moved < chunk) {
        // The guest has nothing queued (output) or no room (input): the clock
        // waits for it rather than losing its audio.
        this.#starvedAt = now;
        this.#armXrun(now);
        return;
      }
    }
    this.#armNext(now);
  }

  #move(count: number): number {
    if (this.#scratch.length < count) this.#scratch = new Uint8Array(Math.max(count, 4096));
    const chunk = this.#scratch.subarray(0, count);
    if (this.#port.direction === "output") {
      const read = this.#port.read(chunk);
      if (read > 0) this.#io.consume?.(chunk.subarray(0, read));
      return read;
    }
    const room = Math.min(count, this.#port.queuedBytes());
    if (room === 0) return 0;
    const part = chunk.subarray(0, room);
    if (this.#io.produce) this.#io.produce(part);
    else part.fill(0);
    return this.#port.write(part);
  }

  /** Arms the timer for when the oldest guest buffer completes. */
  #armNext(now: number): void {
    const pending = this.#port.bytesToNextCompletion();
    if (pending === 0) {
      this.#starvedAt = now;
      this.#armXrun(now);
      return;
    }
    // A guest buffer that ends mid-frame completes with the frame that ends in the next one.
    const target = Math.ceil((this.#done + pending) / this.#frameBytes) * this.#frameBytes;
    const at = this.#origin + target / this.#bytesPerMs;
    // A hair late rather than early, so the bytes are due when it fires.
    armTimerFd(this.#timer, Math.max(at - now, 0) + 0.01);
  }

  #wholeFrames(bytes: number): number {
    return bytes - bytes % this.#frameBytes;
  }

  #graceMs(): number {
    const params = this.#params;
    if (!params) return MIN_XRUN_GRACE_MS;
    return Math.max(params.periodBytes / this.#bytesPerMs, MIN_XRUN_GRACE_MS);
  }

  #armXrun(now: number): void {
    if (this.#xrunSent || this.#starvedAt === null) return;
    armTimerFd(this.#timer, Math.max(this.#starvedAt + this.#graceMs() - now, 0.01));
  }

  #checkXrun(now: number): void {
    const starvedAt = this.#starvedAt;
    if (starvedAt === null || this.#xrunSent) return;
    if (now - starvedAt >= this.#graceMs()) {
      this.#xrunSent = true;
      this.#port.xrun();
    } else this.#armXrun(now);
  }
}

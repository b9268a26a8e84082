/**
 * {@link BlockIo} on io_uring: operations are queued on the submission
 * ring and handed to the kernel in one `io_uring_enter` per batch; the
 * kernel completes them in any order (page-cache hits inline, the rest on
 * its own workers) and signals an eventfd that sits in the daemon's epoll
 * set. The loop never waits for the disk.
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import {
  close,
  createEventFd,
  drainEventFd,
  IORING_FSYNC_DATASYNC,
  IoUring,
  IoUringOp,
  type Submission,
} from "../../ffi/mod.ts";
import { type BlockIo, type BlockOp, type BlockOpDone, RWF_DSYNC } from "./block_io.ts";

const FALLOC_PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01;

/** Submission ring size: completions are bounded by twice this (the CQ). */
export const RING_ENTRIES = 256;

interface Slot {
  op: BlockOp | null;
  done: BlockOpDone | null;
}

/** io_uring-backed file I/O for one daemon. */
export class UringBlockIo implements BlockIo {
  readonly #ring: IoUring;
  readonly #eventFd: number;
  readonly #loop: EventLoop;
  readonly #log: Logger;
  /** Slot i is user_data i: the operation (its buffers stay referenced) and its callback. */
  readonly #slots: Slot[] = [];
  readonly #free: number[] = [];
  /** Operations waiting for room on the rings. */
  readonly #backlog: { op: BlockOp; done: BlockOpDone }[] = [];
  #inFlight = 0;
  #closed = false;

  /** Sets up the ring and watches its eventfd on `options.loop`. Throws SyscallError if io_uring is unavailable. */
  constructor(options: { loop: EventLoop; log: Logger; entries?: number }) {
    this.#ring = new IoUring(options.entries ?? RING_ENTRIES);
    this.#loop = options.loop;
    this.#log = options.log;
    this.#eventFd = createEventFd();
    try {
      this.#ring.registerEventFd(this.#eventFd);
    } catch (error) {
      close(this.#eventFd);
      this.#ring.close();
      throw error;
    }
    this.#loop.watch(this.#eventFd, () => {
      drainEventFd(this.#eventFd);
      this.flush();
    });
  }

  get inFlight(): number {
    return this.#inFlight + this.#backlog.length;
  }

  submit(op: BlockOp, done: BlockOpDone): void {
    if (this.#closed) throw new Error("io_uring engine is closed");
    // In flight is bounded by the completion ring, so no completion is ever dropped.
    if (this.#backlog.length > 0 || !this.#push(op, done)) this.#backlog.push({ op, done });
  }

  /**
   * Submits what is queued and runs the completions already posted
   * (page-cache hits complete during the submission itself), until
   * callbacks queue nothing more.
   */
  flush(): void {
    for (;;) {
      while (this.#backlog.length > 0 && this.#push(this.#backlog[0].op, this.#backlog[0].done)) {
        this.#backlog.shift();
      }
      if (this.#ring.pending > 0) this.#enter();
      const reaped = this.#ring.reap((userData, result) => this.#complete(userData, result));
      if (reaped === 0 && this.#ring.pending === 0) break;
    }
  }

  drain(): void {
    for (;;) {
      this.flush();
      if (this.#inFlight === 0 && this.#backlog.length === 0) return;
      this.#ring.submit({ waitFor: 1 });
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The kernel may still write into guest memory: wait for every operation.
    this.drain();
    try {
      this.#loop.unwatch(this.#eventFd);
    } catch {
      // The daemon closed its loop (and epoll set) first: nothing to unwatch.
    }
    close(this.#eventFd);
    this.#ring.close();
  }

  #enter(): void {
    try {
      this.#ring.submit();
    } catch (error) {
      // EAGAIN/EBUSY: the kernel is short of resources; completions will make room.
      this.#log.debug(`io_uring_enter: ${error instanceof Error ? error.message : error}`);
    }
  }

  #push(op: BlockOp, done: BlockOpDone): boolean {
    if (this.#inFlight >= this.#ring.cqEntries || this.#ring.sqSpace === 0) return false;
    const index = this.#free.pop() ?? this.#slots.push({ op: null, done: null }) - 1;
    const slot = this.#slots[index];
    slot.op = op;
    slot.done = done;
    this.#ring.push(submission(op, index));
    this.#inFlight++;
    return true;
  }

  #complete(userData: number, result: number): void {
    const slot = this.#slots[userData];
    const done = slot?.done;
    if (!slot || !done) {
      this.#log.error(`io_uring completion for unknown operation ${userData}`);
      return;
    }
    slot.op = null;
    slot.done = null;
    this.#free.push(userData);
    this.#inFlight--;
    try {
      done(result);
    } catch (error) {
      this.#log.error(`I/O completion failed: ${error instanceof Error ? error.stack : error}`);
    }
  }
}

function submission(op: BlockOp, userData: number): Submission {
  switch (op.kind) {
    case "readv":
    case "writev":
      return {
        opcode: op.kind === "readv" ? IoUringOp.READV : IoUringOp.WRITEV,
        fd: op.fd,
        offset: op.offset,
        address: op.iov.address,
        length: op.iov.count,
        flags: op.kind === "writev" && op.dsync ? RWF_DSYNC : 0,
        userData,
      };
    case "fdatasync":
      return { opcode: IoUringOp.FSYNC, fd: op.fd, flags: IORING_FSYNC_DATASYNC, userData };
    case "punch-hole":
      // IORING_OP_FALLOCATE: addr carries the length and len the mode.
      return {
        opcode: IoUringOp.FALLOCATE,
        fd: op.fd,
        offset: op.offset,
        address: op.length,
        length: FALLOC_PUNCH_HOLE_KEEP_SIZE,
        userData,
      };
  }
}

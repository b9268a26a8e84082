/**
 * The host side of the disk: asynchronous file operations that complete
 * through callbacks on the event loop, so a slow read or a flush never
 * holds the loop. {@link SyncBlockIo} runs each operation at once (the
 * baseline, and what tests may swap in); `uring_block_io.ts` queues them on
 * io_uring.
 *
 * @module
 */

import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  fallocate,
  fdatasync,
  type IovecList,
  preadv,
  pwritev,
  SyscallError,
} from "../../ffi/mod.ts";

/** One host file operation. Buffers (`iov` and what it points to) must stay valid until it completes. */
export type BlockOp =
  | {
    readonly kind: "readv";
    readonly fd: number;
    readonly iov: IovecList;
    readonly offset: number;
  }
  | {
    readonly kind: "writev";
    readonly fd: number;
    readonly iov: IovecList;
    readonly offset: number;
    /** Data and the metadata to read it reach the disk before completion (RWF_DSYNC: FUA). */
    readonly dsync: boolean;
  }
  | { readonly kind: "fdatasync"; readonly fd: number }
  | {
    readonly kind: "punch-hole";
    readonly fd: number;
    readonly offset: number;
    readonly length: number;
  };

/** Called once with the operation's result: bytes moved (0 for the others), or a negated errno. */
export type BlockOpDone = (result: number) => void;

/** An engine running {@link BlockOp}s. Completions run later, never inside {@link submit}. */
export interface BlockIo {
  /** Queues `op`; `done` runs when it completes. */
  submit(op: BlockOp, done: BlockOpDone): void;
  /** Starts everything queued since the last call (a batch: one system call where possible). */
  flush(): void;
  /** Operations submitted and not yet completed. */
  readonly inFlight: number;
  /** Blocks until every operation submitted so far has completed (and its callback ran). */
  drain(): void;
  /** Stops the engine; operations still in flight are waited for first. */
  close(): void;
}

/** `pwritev2` flag RWF_DSYNC: the write is durable (O_DSYNC) when it returns. */
export const RWF_DSYNC = 0x2;

/** Runs one operation synchronously; returns its result as {@link BlockOpDone} gets it. */
export function runBlockOp(op: BlockOp): number {
  try {
    switch (op.kind) {
      case "readv":
        return preadv(op.fd, op.iov, { offset: op.offset });
      case "writev": {
        const n = pwritev(op.fd, op.iov, { offset: op.offset });
        if (op.dsync) fdatasync(op.fd);
        return n;
      }
      case "fdatasync":
        fdatasync(op.fd);
        return 0;
      case "punch-hole":
        fallocate(op.fd, {
          mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
          offset: op.offset,
          length: op.length,
        });
        return 0;
    }
  } catch (error) {
    if (error instanceof SyscallError) return -error.errno;
    throw error;
  }
}

/**
 * Runs each operation in the calling thread when the batch is flushed:
 * simple and correct, but the loop waits for the disk. Kept as the
 * measured alternative to io_uring (README, benchmarks).
 */
export class SyncBlockIo implements BlockIo {
  readonly #queued: { op: BlockOp; done: BlockOpDone }[] = [];

  get inFlight(): number {
    return this.#queued.length;
  }

  submit(op: BlockOp, done: BlockOpDone): void {
    this.#queued.push({ op, done });
  }

  flush(): void {
    // Callbacks may submit follow-up operations: they run in this same flush.
    while (this.#queued.length > 0) {
      const { op, done } = this.#queued.shift()!;
      done(runBlockOp(op));
    }
  }

  drain(): void {
    this.flush();
  }

  close(): void {
    this.flush();
  }
}

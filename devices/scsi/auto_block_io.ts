/**
 * The default engine (`--io auto`): each operation goes the cheapest way
 * that cannot hold the event loop on a disk, and only the rest through
 * io_uring.
 *
 * - An image on a memory file system (tmpfs, ramfs: `fstatfs` f_type) has
 *   no disk behind it: its page cache is the file, so a read or write
 *   only copies memory and `fdatasync` does nothing. Those run inline,
 *   in the loop, when the batch is flushed. io_uring cannot complete them
 *   inline (tmpfs has no `RWF_NOWAIT`, so every one goes to a kernel
 *   worker): measured on this host, a 4 KiB tmpfs read costs 1–3 µs
 *   inline against 5–10 µs of the loop's time through the ring, and the
 *   worker's wake-ups on top.
 * - A read of any other file first tries `preadv2(RWF_NOWAIT)`: cached
 *   data is copied at once; a read that would wait (`EAGAIN`) or a short
 *   one continues on io_uring. A file system without `RWF_NOWAIT`
 *   (`EOPNOTSUPP`) sends that file's reads to io_uring from then on.
 * - Writes, flushes and hole punching on other files go through io_uring.
 * - Transfers larger than {@link INLINE_MAX_BYTES} go through io_uring
 *   whatever the file: copying a megabyte takes the loop long enough that
 *   the ring's kernel workers, copying on other CPUs in parallel, win
 *   (measured: 1 MiB sequential reads at depth 8 reached half the
 *   throughput inline).
 *
 * One caveat: a tmpfs page swapped out to a swap device is read back from
 * it, in the loop. Hosts that swap tmpfs should use `--io io-uring`.
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import {
  fileSystemType,
  preadv2,
  RAMFS_MAGIC,
  RWF_NOWAIT,
  SyscallError,
  TMPFS_MAGIC,
} from "../../ffi/mod.ts";
import { type BlockIo, type BlockOp, type BlockOpDone, runBlockOp } from "./block_io.ts";

const EOPNOTSUPP = 95;

/** Largest read or write run inline (a 4 KiB copy costs about a microsecond). */
export const INLINE_MAX_BYTES = 64 << 10;

/** How the engine treats a file's operations. */
export type FileRoute =
  /** On a memory file system: every operation inline. */
  | "memory"
  /** Reads try `RWF_NOWAIT` inline first; the rest goes to the ring. */
  | "nowait"
  /** Everything through the ring. */
  | "ring";

/** The route for `fd` from its file system: `memory` on tmpfs and ramfs, else `nowait`. */
export function fileRoute(fd: number): FileRoute {
  try {
    const type = fileSystemType(fd);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC ? "memory" : "nowait";
  } catch (error) {
    if (error instanceof SyscallError) return "ring";
    throw error;
  }
}

/** Options of {@link AutoBlockIo}. */
export interface AutoBlockIoOptions {
  /** Where inline work left by completions is flushed from. */
  readonly loop: EventLoop;
  /** The engine for what cannot run inline (io_uring). */
  readonly ring: BlockIo;
  /** The image fds and their routes (see {@link fileRoute}); other fds go to the ring. */
  readonly routes: ReadonlyMap<number, FileRoute>;
}

/** Inline where nothing can wait on a disk, io_uring for the rest. */
export class AutoBlockIo implements BlockIo {
  readonly #loop: EventLoop;
  readonly #ring: BlockIo;
  readonly #routes: Map<number, FileRoute>;
  /** Operations to run inline at the next flush, in order. */
  #inline: { op: BlockOp; done: BlockOpDone }[] = [];
  #flushScheduled = false;
  #inlineCount = 0;
  #ringCount = 0;

  /** An engine routing by `options.routes`, with `options.ring` for the rest. */
  constructor(options: AutoBlockIoOptions) {
    this.#loop = options.loop;
    this.#ring = options.ring;
    this.#routes = new Map(options.routes);
  }

  get inFlight(): number {
    return this.#inline.length + this.#ring.inFlight;
  }

  /** Operations completed inline and handed to the ring so far (for logs and tests). */
  get counts(): { readonly inline: number; readonly ring: number } {
    return { inline: this.#inlineCount, ring: this.#ringCount };
  }

  submit(op: BlockOp, done: BlockOpDone): void {
    const route = this.#routes.get(op.fd) ?? "ring";
    const small = op.kind !== "readv" && op.kind !== "writev" ||
      op.iov.totalLength <= INLINE_MAX_BYTES;
    if (small && (route === "memory" || (route === "nowait" && op.kind === "readv"))) {
      this.#inline.push({ op, done });
      // A completion's follow-up (the rest of a short transfer) is
      // submitted outside the device's own flush: flush it soon.
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        this.#loop.defer(() => {
          this.#flushScheduled = false;
          this.flush();
        });
      }
      return;
    }
    this.#toRing(op, done);
  }

  flush(): void {
    // Callbacks may submit follow-ups, inline or on the ring: until none is left.
    do {
      while (this.#inline.length > 0) {
        const batch = this.#inline;
        this.#inline = [];
        for (const { op, done } of batch) this.#runInline(op, done);
      }
      this.#ring.flush();
    } while (this.#inline.length > 0);
  }

  drain(): void {
    do {
      this.flush();
      this.#ring.drain();
    } while (this.#inline.length > 0);
  }

  close(): void {
    this.flush();
    this.#ring.close();
  }

  #runInline(op: BlockOp, done: BlockOpDone): void {
    if (this.#routes.get(op.fd) === "memory") {
      this.#inlineCount++;
      return done(runBlockOp(op));
    }
    // A read of a file on a disk: only what the page cache holds, without waiting.
    if (op.kind !== "readv") return this.#toRing(op, done);
    let result: number | null;
    try {
      result = preadv2(op.fd, op.iov, { offset: op.offset, flags: RWF_NOWAIT });
    } catch (error) {
      if (!(error instanceof SyscallError)) throw error;
      if (error.errno === EOPNOTSUPP) {
        // The file system cannot tell: its reads go to the ring from now on.
        this.#routes.set(op.fd, "ring");
        return this.#toRing(op, done);
      }
      result = -error.errno;
    }
    // Nothing cached: the ring's worker waits for the disk instead of the loop.
    if (result === null || result === 0) return this.#toRing(op, done);
    // A short read is a success the caller continues from (its next step comes back here).
    this.#inlineCount++;
    done(result);
  }

  #toRing(op: BlockOp, done: BlockOpDone): void {
    this.#ringCount++;
    this.#ring.submit(op, done);
  }
}

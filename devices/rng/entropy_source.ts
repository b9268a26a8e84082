/**
 * The host side of the entropy device: a file (by default `/dev/urandom`)
 * read straight into guest memory with readv(2) on iovecs that point into
 * the guest's mapping, so no byte passes through the JavaScript heap.
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import type { GuestSlice } from "../../core/memory/guest_memory.ts";
import { pushIovecs } from "../../core/virtio/descriptor_chain.ts";
import { errnoName, SyscallError } from "../../ffi/errno.ts";
import { close, openReadOnly, readv } from "../../ffi/fd.ts";
import { IovecList } from "../../ffi/iovec.ts";

/** Where the device gets its bytes; tests substitute a fake. */
export interface EntropySource {
  /**
   * Fills up to `length` bytes of `slices` (guest memory, in order). Returns
   * the count (0 at end of file), or `null` if the source has nothing now:
   * then wait with {@link whenReadable}.
   */
  read(slices: readonly GuestSlice[], length: number): number | null;
  /** Calls `callback` once when the source can be read; returns a cancel function. */
  whenReadable(callback: () => void): () => void;
}

/** Options of {@link FileEntropySource.open}. */
export interface FileEntropySourceOptions {
  /** The loop that waits for a source with nothing to read (a FIFO, a hardware RNG). */
  readonly loop: EventLoop;
}

/**
 * A readable file opened once and shared by every instance, as upstream
 * shares it: a regular-file source hands out each byte once. Opened
 * non-blocking so a slow source (a FIFO, `/dev/hwrng`) never stalls the loop.
 */
export class FileEntropySource implements EntropySource {
  /** The file's path, for messages. */
  readonly path: string;
  readonly #fd: number;
  readonly #loop: EventLoop;
  readonly #iov = new IovecList(4);
  readonly #waiting = new Set<() => void>();

  private constructor(path: string, fd: number, loop: EventLoop) {
    this.path = path;
    this.#fd = fd;
    this.#loop = loop;
  }

  /** Opens `path`; throws an `Error` with a one-line reason if it cannot be read. */
  static open(path: string, options: FileEntropySourceOptions): FileEntropySource {
    let fd: number;
    try {
      if (Deno.statSync(path).isDirectory) throw new Error("is a directory");
      fd = openReadOnly(path, { nonBlocking: true });
    } catch (error) {
      const reason = error instanceof SyscallError
        ? errnoName(error.errno)
        : error instanceof Deno.errors.NotFound
        ? "no such file"
        : error instanceof Error
        ? error.message
        : String(error);
      throw new Error(`cannot read the rng source ${path}: ${reason}`);
    }
    return new FileEntropySource(path, fd, options.loop);
  }

  read(slices: readonly GuestSlice[], length: number): number | null {
    const iov = this.#iov;
    iov.clear();
    pushIovecs(slices, iov, { max: length });
    if (iov.count === 0) return 0;
    return readv(this.#fd, iov);
  }

  whenReadable(callback: () => void): () => void {
    this.#waiting.add(callback);
    // Instances share the fd, and epoll takes an fd once: one watch wakes them all.
    if (!this.#loop.watching(this.#fd)) {
      this.#loop.watch(this.#fd, () => {
        this.#loop.unwatch(this.#fd);
        const callbacks = [...this.#waiting];
        this.#waiting.clear();
        for (const wake of callbacks) wake();
      });
    }
    return () => {
      this.#waiting.delete(callback);
      if (this.#waiting.size === 0 && this.#loop.watching(this.#fd)) this.#loop.unwatch(this.#fd);
    };
  }

  /** Closes the file (closing it also drops it from the loop's epoll set). */
  close(): void {
    this.#waiting.clear();
    close(this.#fd);
  }
}

/**
 * The host side of the entropy device: a file (by default `/dev/urandom`).
 * Linux's driver asks for 64 bytes a request, one request at a time, so a
 * read(2) per request would put a syscall on every guest round trip: small
 * requests are served from bytes read ahead, 4 KiB at a time. Requests at
 * least that large are read straight into guest memory with readv(2).
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import type { GuestSlice } from "../../core/memory/guest_memory.ts";
import { pushIovecs, writeSlices } from "../../core/virtio/descriptor_chain.ts";
import { errnoName, SyscallError } from "../../ffi/errno.ts";
import { close, openReadOnly, read, readv } from "../../ffi/fd.ts";
import { IovecList } from "../../ffi/iovec.ts";

/**
 * Bytes read ahead of the guest's requests; a request this large or larger
 * is read straight into guest memory instead.
 */
export const READ_AHEAD_BYTES = 4096;

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
 * shares it: a regular-file source hands out each byte once, in order (the
 * read-ahead is shared too). Opened non-blocking so a slow source (a FIFO,
 * `/dev/hwrng`) never stalls the loop.
 */
export class FileEntropySource implements EntropySource {
  /** The file's path, for messages. */
  readonly path: string;
  readonly #fd: number;
  readonly #loop: EventLoop;
  readonly #iov = new IovecList(4);
  readonly #ahead = new Uint8Array(READ_AHEAD_BYTES);
  /** The unread bytes of {@link #ahead} are `[#aheadStart, #aheadEnd)`. */
  #aheadStart = 0;
  #aheadEnd = 0;
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
    if (length >= READ_AHEAD_BYTES) {
      // What was read ahead goes first, so the bytes stay in file order.
      const ahead = this.#copyAhead(slices, length);
      const direct = this.#readDirect(slices, { skip: ahead, max: length - ahead });
      return ahead > 0 ? ahead + (direct ?? 0) : direct;
    }
    if (this.#aheadEnd - this.#aheadStart < length) {
      const count = this.#readAhead();
      // Nothing buffered and nothing more now (null) or ever (0).
      if (this.#aheadEnd === this.#aheadStart) return count;
    }
    return this.#copyAhead(slices, length);
  }

  /** Moves up to `length` read-ahead bytes into `slices`; returns the count. */
  #copyAhead(slices: readonly GuestSlice[], length: number): number {
    const take = Math.min(length, this.#aheadEnd - this.#aheadStart);
    const written = writeSlices(
      slices,
      this.#ahead.subarray(this.#aheadStart, this.#aheadStart + take),
    );
    this.#aheadStart += written;
    return written;
  }

  /** Reads into the free end of the read-ahead buffer; read(2)'s count or `null`. */
  #readAhead(): number | null {
    const buffered = this.#aheadEnd - this.#aheadStart;
    this.#ahead.copyWithin(0, this.#aheadStart, this.#aheadEnd);
    this.#aheadStart = 0;
    this.#aheadEnd = buffered;
    const count = read(this.#fd, this.#ahead.subarray(buffered));
    if (count) this.#aheadEnd += count;
    return count;
  }

  /** One readv(2) straight into bytes `[skip, skip + max)` of `slices`. */
  #readDirect(
    slices: readonly GuestSlice[],
    range: { skip: number; max: number },
  ): number | null {
    const iov = this.#iov;
    iov.clear();
    pushIovecs(slices, iov, range);
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

/**
 * io_uring(7) without liburing: `io_uring_setup`, `io_uring_enter` and
 * `io_uring_register` through syscall(2), the submission and completion
 * rings mapped into this process. The rings are shared memory with
 * head/tail indices, the same discipline as a virtqueue: the producer
 * fills entries, then publishes the tail with a release store; the
 * consumer reads the tail with an acquire load before the entries.
 * `Atomics` on the index words gives both (sequentially consistent).
 * Nothing here knows what the operations are for.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check } from "./errno.ts";
import { close } from "./fd.ts";
import { type Mapping, mapShared, unmap } from "./memory.ts";
import { stableBuffer } from "./structs.ts";

const SYS_IO_URING_SETUP = 425n;
const SYS_IO_URING_ENTER = 426n;
const SYS_IO_URING_REGISTER = 427n;

/** `sizeof(struct io_uring_params)`. */
export const IO_URING_PARAMS_SIZE = 120;
/** `sizeof(struct io_uring_sqe)`. */
export const SQE_SIZE = 64;
/** `sizeof(struct io_uring_cqe)` (without IORING_SETUP_CQE32). */
export const CQE_SIZE = 16;

const IORING_OFF_SQ_RING = 0;
const IORING_OFF_CQ_RING = 0x8000000;
const IORING_OFF_SQES = 0x10000000;
const IORING_FEAT_SINGLE_MMAP = 1 << 0;
const IORING_ENTER_GETEVENTS = 1 << 0;
const IORING_REGISTER_EVENTFD = 4;
/** Let the kernel round `entries` down to its limit instead of failing. */
const IORING_SETUP_CLAMP = 1 << 4;

/** `enum io_uring_op` values used here. */
export const IoUringOp = {
  NOP: 0,
  READV: 1,
  WRITEV: 2,
  FSYNC: 3,
  FALLOCATE: 17,
} as const;

/** `IORING_FSYNC_DATASYNC`: fdatasync instead of fsync. */
export const IORING_FSYNC_DATASYNC = 1;

/** Offsets in `struct io_uring_sqe`. */
const SQE = {
  opcode: 0,
  fd: 4,
  off: 8,
  addr: 16,
  len: 24,
  opFlags: 28,
  userData: 32,
} as const;

/** One submission: the fields of `struct io_uring_sqe` an operation sets. */
export interface Submission {
  /** `IoUringOp` value. */
  readonly opcode: number;
  /** File descriptor. */
  readonly fd: number;
  /** `off`: file offset. */
  readonly offset?: number;
  /** `addr`: iovec array address, or (FALLOCATE) the length. */
  readonly address?: number;
  /** `len`: iovec count, or (FALLOCATE) the mode. */
  readonly length?: number;
  /** `rw_flags` / `fsync_flags`. */
  readonly flags?: number;
  /** Returned in the completion: a small non-negative integer. */
  readonly userData: number;
}

function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 4294967296, true);
  view.setUint32(offset + 4, Math.floor(value / 4294967296), true);
}

/** An io_uring instance and its mapped rings. */
export class IoUring {
  /** The ring's fd. */
  readonly fd: number;
  /** Submission queue entries. */
  readonly sqEntries: number;
  /** Completion queue entries. */
  readonly cqEntries: number;
  readonly #mappings: Mapping[] = [];
  readonly #sqHead: Uint32Array;
  readonly #sqTail: Uint32Array;
  readonly #sqArray: Uint32Array;
  readonly #sqes: DataView;
  readonly #sqeBytes: Uint8Array;
  readonly #cqHead: Uint32Array;
  readonly #cqTail: Uint32Array;
  readonly #cqes: DataView;
  #tail: number;
  #toSubmit = 0;
  #closed = false;

  /** Sets up a ring of `entries` submissions (a power of 2). Throws SyscallError (e.g. ENOSYS, EPERM). */
  constructor(entries: number) {
    const params = stableBuffer(IO_URING_PARAMS_SIZE);
    const p = new DataView(params.buffer);
    p.setUint32(8, IORING_SETUP_CLAMP, true);
    this.fd = check(libc.io_uring_setup(SYS_IO_URING_SETUP, entries, params), "io_uring_setup", {
      detail: `${entries} entries`,
    });
    try {
      this.sqEntries = p.getUint32(0, true);
      this.cqEntries = p.getUint32(4, true);
      const features = p.getUint32(20, true);
      const sq = (field: number) => p.getUint32(40 + field, true);
      const cq = (field: number) => p.getUint32(80 + field, true);
      // struct io_sqring_offsets: head, tail, ring_mask, ring_entries, flags, dropped, array.
      const sqSize = sq(24) + this.sqEntries * 4;
      // struct io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow, cqes.
      const cqSize = cq(20) + this.cqEntries * CQE_SIZE;
      const single = (features & IORING_FEAT_SINGLE_MMAP) !== 0;
      const sqRing = this.#map(single ? Math.max(sqSize, cqSize) : sqSize, IORING_OFF_SQ_RING);
      const cqRing = single ? sqRing : this.#map(cqSize, IORING_OFF_CQ_RING);
      const sqes = this.#map(this.sqEntries * SQE_SIZE, IORING_OFF_SQES);
      this.#sqHead = new Uint32Array(sqRing.buffer, sq(0), 1);
      this.#sqTail = new Uint32Array(sqRing.buffer, sq(4), 1);
      this.#sqArray = new Uint32Array(sqRing.buffer, sq(24), this.sqEntries);
      this.#cqHead = new Uint32Array(cqRing.buffer, cq(0), 1);
      this.#cqTail = new Uint32Array(cqRing.buffer, cq(4), 1);
      this.#cqes = new DataView(cqRing.buffer, cq(20), this.cqEntries * CQE_SIZE);
      this.#sqes = new DataView(sqes.buffer);
      this.#sqeBytes = new Uint8Array(sqes.buffer);
      this.#tail = Atomics.load(this.#sqTail, 0);
    } catch (error) {
      this.#release();
      throw error;
    }
  }

  #map(length: number, offset: number): Mapping {
    const mapping = mapShared(this.fd, { length, offset });
    this.#mappings.push(mapping);
    return mapping;
  }

  /** Free submission slots. */
  get sqSpace(): number {
    return this.sqEntries - ((this.#tail - Atomics.load(this.#sqHead, 0)) >>> 0);
  }

  /** Entries queued since the last {@link submit}. */
  get pending(): number {
    return this.#toSubmit;
  }

  /** Signals `eventFd` whenever a completion is posted (IORING_REGISTER_EVENTFD). */
  registerEventFd(eventFd: number): void {
    const arg = stableBuffer(4);
    new DataView(arg.buffer).setInt32(0, eventFd, true);
    check(
      libc.io_uring_register(SYS_IO_URING_REGISTER, this.fd, IORING_REGISTER_EVENTFD, arg, 1),
      "io_uring_register",
      { detail: "IORING_REGISTER_EVENTFD" },
    );
  }

  /** Queues one submission. Returns false if the submission queue is full. */
  push(submission: Submission): boolean {
    if (this.sqSpace === 0) return false;
    const slot = this.#tail & (this.sqEntries - 1);
    const at = slot * SQE_SIZE;
    this.#sqeBytes.fill(0, at, at + SQE_SIZE);
    const v = this.#sqes;
    v.setUint8(at + SQE.opcode, submission.opcode);
    v.setInt32(at + SQE.fd, submission.fd, true);
    setU64(v, at + SQE.off, submission.offset ?? 0);
    setU64(v, at + SQE.addr, submission.address ?? 0);
    v.setUint32(at + SQE.len, submission.length ?? 0, true);
    v.setUint32(at + SQE.opFlags, submission.flags ?? 0, true);
    v.setUint32(at + SQE.userData, submission.userData, true);
    this.#sqArray[slot] = slot;
    this.#tail = (this.#tail + 1) >>> 0;
    // Release: the entry is visible before the tail that covers it.
    Atomics.store(this.#sqTail, 0, this.#tail);
    this.#toSubmit++;
    return true;
  }

  /**
   * Hands queued submissions to the kernel (io_uring_enter). With
   * `waitFor`, blocks until that many completions are posted. Returns the
   * number submitted.
   */
  submit(options: { waitFor?: number } = {}): number {
    const waitFor = options.waitFor ?? 0;
    if (this.#toSubmit === 0 && waitFor === 0) return 0;
    const submitted = check(
      libc.io_uring_enter(
        SYS_IO_URING_ENTER,
        this.fd,
        this.#toSubmit,
        waitFor,
        waitFor > 0 ? IORING_ENTER_GETEVENTS : 0,
        null,
        0n,
      ),
      "io_uring_enter",
      { detail: `${this.#toSubmit} submissions` },
    );
    this.#toSubmit -= submitted;
    return submitted;
  }

  /**
   * Calls `handle(userData, result)` for each posted completion, in order,
   * and frees their slots. Returns the number handled.
   */
  reap(handle: (userData: number, result: number) => void): number {
    let head = Atomics.load(this.#cqHead, 0);
    // Acquire: the entries up to the tail are written before we read them.
    const tail = Atomics.load(this.#cqTail, 0);
    let count = 0;
    while (head !== tail) {
      const at = (head & (this.cqEntries - 1)) * CQE_SIZE;
      const userData = this.#cqes.getUint32(at, true);
      const result = this.#cqes.getInt32(at + 8, true);
      head = (head + 1) >>> 0;
      // The slot is the kernel's again once the head passes it.
      Atomics.store(this.#cqHead, 0, head);
      count++;
      handle(userData, result);
    }
    return count;
  }

  /** Unmaps the rings and closes the fd. Operations in flight are the caller's to wait for. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#release();
  }

  #release(): void {
    for (const mapping of this.#mappings.splice(0)) unmap(mapping);
    close(this.fd);
  }
}

/**
 * Shared memory: memfd_create(2) and mmap(2) of file descriptors.
 *
 * @module
 */

import { libc } from "./libc.ts";
import { check, lastErrno, SyscallError } from "./errno.ts";

const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const MFD_CLOEXEC = 0x1;
const MFD_ALLOW_SEALING = 0x2;
const SC_PAGESIZE = 30;
const MAP_FAILED = 2n ** 64n - 1n;

/** The host page size. */
export const PAGE_SIZE: number = Number(libc.sysconf(SC_PAGESIZE));

/** A shared mapping of a file: its host address, length and bytes. */
export interface Mapping {
  /** Host virtual address of the first byte, as a number (< 2^53). */
  readonly address: number;
  /** Length in bytes. */
  readonly length: number;
  /** The mapped bytes, backed by the mapping itself (no copy). */
  readonly buffer: ArrayBuffer;
}

/**
 * Maps `length` bytes of `fd` starting at file `offset`, shared and
 * read-write. `offset` need not be page aligned: the mapping starts at the
 * page below it and the returned mapping begins exactly at `offset`.
 */
export function mapShared(fd: number, options: { length: number; offset: number }): Mapping {
  const { length, offset } = options;
  if (!(length > 0)) throw new SyscallError("mmap", 22, { detail: `fd ${fd}, length ${length}` });
  const slack = offset % PAGE_SIZE;
  const base = libc.mmap(
    null,
    BigInt(length + slack),
    PROT_READ | PROT_WRITE,
    MAP_SHARED,
    fd,
    BigInt(offset - slack),
  );
  const baseValue = BigInt(Deno.UnsafePointer.value(base));
  if (base === null || baseValue === MAP_FAILED) {
    throw new SyscallError("mmap", lastErrno(), {
      detail: `fd ${fd}, length ${length}, offset ${offset}`,
    });
  }
  const address = Number(baseValue) + slack;
  const buffer = Deno.UnsafePointerView.getArrayBuffer(
    Deno.UnsafePointer.create(BigInt(address))!,
    length,
  );
  return { address, length, buffer };
}

/**
 * Unmaps a mapping from {@link mapShared}. Every view of its buffer must be
 * dead: touching one afterwards faults the process.
 */
export function unmap(mapping: Mapping): void {
  const slack = mapping.address % PAGE_SIZE;
  check(
    libc.munmap(
      Deno.UnsafePointer.create(BigInt(mapping.address - slack)),
      BigInt(mapping.length + slack),
    ),
    "munmap",
  );
}

/** Creates a memfd of `size` bytes (close-on-exec, sealable). */
export function createMemfd(name: string, size: number): number {
  const fd = check(
    libc.memfd_create(new TextEncoder().encode(name + "\0"), MFD_CLOEXEC | MFD_ALLOW_SEALING),
    "memfd_create",
  );
  try {
    check(libc.ftruncate(fd, BigInt(size)), "ftruncate", {
      detail: `memfd ${name}, ${size} bytes`,
    });
  } catch (error) {
    libc.close(fd);
    throw error;
  }
  return fd;
}

/**
 * open(2), until `ffi/` provides it (the lead moves this into `ffi/fd.ts` and
 * `ffi/libc.ts`; see the rng report). Written as the `ffi/` wrappers are: one
 * symbol table, the raw symbol wrapped once, failures thrown as
 * {@link SyscallError}.
 *
 * @module
 */

import { check } from "../../ffi/mod.ts";

const SYMBOLS = {
  // int open(const char *pathname, int flags, ... /* mode_t mode */);
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;

const O_RDONLY = 0;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** Opens `path` read-only and close-on-exec, optionally non-blocking; returns the fd. */
export function openReadOnly(path: string, options: { nonBlocking?: boolean } = {}): number {
  const flags = O_RDONLY | O_CLOEXEC | (options.nonBlocking ? O_NONBLOCK : 0);
  return check(libc.open(new TextEncoder().encode(path + "\0"), flags, 0), "open", path);
}

/**
 * The baseline of `bench:memory`: a Deno process that only opens libc (as
 * every daemon does) and then waits, so its memory is the runtime's own.
 *
 * @module
 */

const libc = Deno.dlopen("libc.so.6", { getpid: { parameters: [], result: "i32" } });
// The pid goes nowhere; the call makes sure the library is really bound.
libc.symbols.getpid();
// Wait until killed, as an idle daemon waits.
setInterval(() => {}, 1 << 30);

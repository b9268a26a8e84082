/**
 * The guest's SOCK_SEQPACKET peer for the vsock e2e tests: a static C program
 * (`in_guest/vsock_seqpeer.c`; the guest has busybox and no libc) built with
 * the host's gcc and handed to the guest as a file.
 *
 * @module
 */

const SOURCE = new URL("./in_guest/vsock_seqpeer.c", import.meta.url).pathname;

/** Where the tests put the program in the guest (not under `/tmp`: the guest mounts a tmpfs there). */
export const SEQPEER_PATH = "/opt/vsock_seqpeer";

/** The message sizes of vsock_seqpeer.c, in order: 1 B to 64 KiB. */
export const SEQ_SIZES: readonly number[] = [1, 2, 100, 4095, 4096, 4097, 12345, 65536];

/** Builds the program in `dir`; returns its bytes for `GuestOptions.files`. */
export async function buildSeqpeer(dir: string): Promise<Uint8Array> {
  const binary = `${dir}/vsock_seqpeer`;
  const out = await new Deno.Command("gcc", {
    args: ["-static", "-O2", "-o", binary, SOURCE],
  }).output();
  if (!out.success) throw new Error(`gcc failed: ${new TextDecoder().decode(out.stderr)}`);
  return await Deno.readFile(binary);
}

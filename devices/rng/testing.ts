/**
 * Runs the real `vhost-device-rng` process for integration tests, end-to-end
 * tests and the benchmark.
 *
 * @module
 */

import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running rng daemon: a {@link DaemonProcess} that knows its sockets. */
export type RngDaemonProcess = DaemonProcess & {
  /** The `--socket-path` prefix; instance `i` listens on `${socketPrefix}${i}`. */
  readonly socketPrefix: string;
};

/**
 * Starts `deno run -A devices/rng/main.ts -s <tmp>/rng.sock <args>` at log
 * level info and waits until every socket listens (`socketCount`, default 1).
 * Stopping it removes the temporary directory. `main` runs another
 * checkout's `main.ts` instead (a benchmark's before/after).
 */
export async function startRngDaemon(
  args: readonly string[],
  options: { socketCount?: number; main?: string } = {},
): Promise<RngDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "rng-" });
  const socketPrefix = `${dir}/rng.sock`;
  const daemon = await DaemonProcess.start(options.main ?? MAIN, {
    args: ["-s", socketPrefix, "--log-level", "info", ...args],
    tempDir: dir,
    listening: options.socketCount ?? 1,
  });
  return Object.assign(daemon, { socketPrefix });
}

/**
 * Runs the real `vhost-device-i2c` process for integration tests,
 * end-to-end tests and the benchmark.
 *
 * @module
 */

import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running i2c daemon: a {@link DaemonProcess} that knows its sockets. */
export type I2cDaemonProcess = DaemonProcess & {
  /** The `--socket-path` prefix; instance `i` listens on `${socketPrefix}${i}`. */
  readonly socketPrefix: string;
};

/**
 * Starts `deno run -A devices/i2c/main.ts -s <tmp>/i2c.sock <args>` at log
 * level debug and waits until every socket listens (`socketCount`, default
 * 1). Stopping it removes the temporary directory.
 */
export async function startI2cDaemon(
  args: readonly string[],
  options: { socketCount?: number; logLevel?: string } = {},
): Promise<I2cDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "i2c-" });
  const socketPrefix = `${dir}/i2c.sock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: ["-s", socketPrefix, "--log-level", options.logLevel ?? "debug", ...args],
    tempDir: dir,
  });
  try {
    await daemon.waitForLog("listening on", { count: options.socketCount ?? 1 });
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  return Object.assign(daemon, { socketPrefix });
}

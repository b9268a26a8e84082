/**
 * Runs the real `vhost-device-scmi` process for integration and end-to-end
 * tests, and writes IIO-shaped directories for its `iio` sensors.
 *
 * @module
 */

import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running scmi daemon: a {@link DaemonProcess} that knows its socket. */
export type ScmiDaemonProcess = DaemonProcess & {
  /** The socket it listens on. */
  readonly socket: string;
  /** Its temporary directory (removed on stop). */
  readonly dir: string;
};

/**
 * Starts `deno run -A devices/scmi/main.ts -s <tmp>/scmi.sock <args>` at log
 * level info and waits until it listens. `args` may name `{dir}`, replaced by
 * the temporary directory (for IIO directories written there first by
 * `prepare`).
 */
export async function startScmiDaemon(
  args: readonly string[],
  options: { prepare?: (dir: string) => void | Promise<void>; logLevel?: string } = {},
): Promise<ScmiDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "scmi-" });
  await options.prepare?.(dir);
  const socket = `${dir}/scmi.sock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: [
      "-s",
      socket,
      "--log-level",
      options.logLevel ?? "info",
      ...args.map((a) => a.replaceAll("{dir}", dir)),
    ],
    tempDir: dir,
    listening: 1,
  });
  return Object.assign(daemon, { socket, dir });
}

/** Writes an IIO device directory: `files` maps file names (e.g. `in_temp_raw`) to contents. */
export function writeIioDevice(dir: string, files: Readonly<Record<string, string>>): void {
  Deno.mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    Deno.writeTextFileSync(`${dir}/${name}`, `${text}\n`);
  }
}

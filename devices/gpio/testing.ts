/**
 * Runs the real `vhost-device-gpio` process for integration tests,
 * end-to-end tests and the benchmark, and talks to its simulated chips'
 * control socket.
 *
 * @module
 */

import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running gpio daemon: a {@link DaemonProcess} that knows its sockets. */
export type GpioDaemonProcess = DaemonProcess & {
  /** The `--socket-path` prefix; instance `i` listens on `${socketPrefix}${i}`. */
  readonly socketPrefix: string;
  /** The `--sim-control` socket. */
  readonly controlPath: string;
};

/**
 * Starts `deno run -A devices/gpio/main.ts -s <tmp>/gpio.sock --sim-control
 * <tmp>/sim.sock -l <deviceList> <args>` at log level info (or the one in
 * `args`) and waits until every socket listens. Stopping it removes the
 * temporary directory.
 */
export async function startGpioDaemon(
  deviceList: string,
  options: { args?: readonly string[]; cpu?: number } = {},
): Promise<GpioDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "gpio-" });
  const socketPrefix = `${dir}/gpio.sock`;
  const controlPath = `${dir}/sim.sock`;
  const count = deviceList.split(":").length;
  const args = options.args ?? [];
  const daemon = await DaemonProcess.start(MAIN, {
    args: [
      "-s",
      socketPrefix,
      "-c",
      String(count),
      "-l",
      deviceList,
      ...(deviceList.includes("s") ? ["--sim-control", controlPath] : []),
      ...(args.includes("--log-level") ? [] : ["--log-level", "info"]),
      ...args,
    ],
    tempDir: dir,
    cpu: options.cpu,
  });
  try {
    await daemon.waitForLog("listening on", { count });
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  return Object.assign(daemon, { socketPrefix, controlPath });
}

/** A connection to the simulated chips' control socket (see `control.ts`). */
export class SimControl implements AsyncDisposable {
  readonly #conn: Deno.UnixConn;
  readonly #lines: AsyncIterator<string>;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#lines = readLines(conn)[Symbol.asyncIterator]();
  }

  /** Connects to the control socket at `path`. */
  static async connect(path: string): Promise<SimControl> {
    return new SimControl(await Deno.connect({ transport: "unix", path }));
  }

  /** Sends commands (one write) and returns their reply lines. */
  async send(...commands: string[]): Promise<string[]> {
    await writeAll(this.#conn, new TextEncoder().encode(commands.map((c) => c + "\n").join("")));
    const replies: string[] = [];
    for (let i = 0; i < commands.length; i++) {
      const next = await this.#lines.next();
      if (next.done) throw new Error("the control socket closed");
      replies.push(next.value);
    }
    return replies;
  }

  /** Drives line `line` of chip `chip` to `level`; throws unless the reply is `ok`. */
  async set(chip: number, line: number, level: 0 | 1): Promise<void> {
    const [reply] = await this.send(`set ${chip} ${line} ${level}`);
    if (reply !== "ok") throw new Error(`set ${chip} ${line} ${level}: ${reply}`);
  }

  /** The line's `{ value, direction, edges }` as the control socket reports it. */
  async get(
    chip: number,
    line: number,
  ): Promise<{ value: number; direction: string; edges: string }> {
    const [reply] = await this.send(`get ${chip} ${line}`);
    const [value, direction, edges] = reply.split(" ");
    if (value === "error") throw new Error(`get ${chip} ${line}: ${reply}`);
    return { value: Number(value), direction, edges };
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Closes the connection. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

async function writeAll(conn: Deno.UnixConn, bytes: Uint8Array): Promise<void> {
  let sent = 0;
  while (sent < bytes.length) sent += await conn.write(bytes.subarray(sent));
}

async function* readLines(conn: Deno.UnixConn): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  let pending = "";
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return;
    pending += decoder.decode(buffer.subarray(0, n), { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
    }
  }
}

/**
 * Runs the real `vhost-device-rng` process for integration tests, end-to-end
 * tests and the benchmark.
 *
 * @module
 */

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A running daemon. */
export interface RngDaemonProcess extends AsyncDisposable {
  /** The process id. */
  readonly pid: number;
  /** The `--socket-path` prefix; instance `i` listens on `${socketPrefix}${i}`. */
  readonly socketPrefix: string;
  /** Its stderr so far (log lines). */
  readonly log: string;
  /** Open file descriptors, from `/proc/<pid>/fd`. */
  fdCount(): number;
  /** Resident set size in KiB, from `/proc/<pid>/status` (VmRSS). */
  rssKiB(): number;
  /** Resolves when the log has `count` lines containing `text`. */
  waitForLog(text: string, options?: { count?: number; timeoutMs?: number }): Promise<void>;
  /** Whether the process still runs. */
  readonly running: boolean;
  /** Sends SIGTERM and waits for the exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `deno run -A devices/rng/main.ts -s <tmp>/rng.sock <args>` at log
 * level info and waits until every socket listens (`socketCount`, default 1).
 */
export async function startRngDaemon(
  args: readonly string[],
  options: { socketCount?: number } = {},
): Promise<RngDaemonProcess> {
  const dir = await Deno.makeTempDir({ prefix: "rng-" });
  const socketPrefix = `${dir}/rng.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "-s", socketPrefix, "--log-level", "info", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  let running = true;
  const status = child.status.then((s) => {
    running = false;
    return s;
  });
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
  })();
  const count = (text: string) => log.split("\n").filter((line) => line.includes(text)).length;
  const waitForLog = async (
    text: string,
    wait: { count?: number; timeoutMs?: number } = {},
  ): Promise<void> => {
    const deadline = performance.now() + (wait.timeoutMs ?? 10_000);
    while (count(text) < (wait.count ?? 1)) {
      if (!running) throw new Error(`rng daemon exited before logging "${text}":\n${log}`);
      if (performance.now() > deadline) {
        throw new Error(`rng daemon did not log "${text}" in time:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const stop = async (): Promise<Deno.CommandStatus> => {
    if (running) child.kill("SIGTERM");
    const result = await status;
    await reading;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return result;
  };
  try {
    await waitForLog("listening on", { count: options.socketCount ?? 1 });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    pid: child.pid,
    socketPrefix,
    get log(): string {
      return log;
    },
    get running(): boolean {
      return running;
    },
    fdCount: () => [...Deno.readDirSync(`/proc/${child.pid}/fd`)].length,
    rssKiB: () => {
      const line = Deno.readTextFileSync(`/proc/${child.pid}/status`).split("\n")
        .find((l) => l.startsWith("VmRSS:"));
      return Number(/(\d+)/.exec(line ?? "")?.[1] ?? NaN);
    },
    waitForLog,
    stop,
    async [Symbol.asyncDispose](): Promise<void> {
      await stop();
    },
  };
}

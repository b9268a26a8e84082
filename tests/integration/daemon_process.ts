/**
 * Runs a device daemon as a child process for integration tests: a real
 * process behind a real socket, its log captured, its fds countable.
 *
 * @module
 */

/** A running daemon. */
export class DaemonProcess implements AsyncDisposable {
  /** The child's process id. */
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #log: string[] = [];
  readonly #logDone: Promise<void>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.pid = child.pid;
    this.#logDone = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.#log.push(decoder.decode(chunk, { stream: true }));
      }
    })();
  }

  /**
   * Spawns `deno run -A <entry> <args>` and waits until every path in
   * `waitFor` exists (the daemon is listening). `cpu` pins the daemon (all
   * its threads) to one CPU with taskset, for benchmarks.
   */
  static async start(
    entry: string,
    options: { args: string[]; waitFor: string[]; cpu?: number },
  ): Promise<DaemonProcess> {
    const command = ["run", "--allow-all", entry, ...options.args];
    const pinned = options.cpu !== undefined;
    const child = new Deno.Command(pinned ? "taskset" : Deno.execPath(), {
      args: pinned ? ["-c", String(options.cpu), Deno.execPath(), ...command] : command,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const daemon = new DaemonProcess(child);
    const deadline = Date.now() + 20_000;
    for (const path of options.waitFor) {
      while (!(await exists(path))) {
        if (Date.now() > deadline) {
          await daemon.stop();
          throw new Error(`daemon did not listen on ${path}:\n${daemon.log}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    return daemon;
  }

  /** Everything the daemon logged so far. */
  get log(): string {
    return this.#log.join("");
  }

  /** Number of open fds of the daemon. */
  fdCount(): number {
    return [...Deno.readDirSync(`/proc/${this.pid}/fd`)].length;
  }

  /** Resident memory of the daemon in KiB. */
  rssKiB(): number {
    const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  }

  /** Waits until the log matches `pattern` (or throws after `timeoutMs`). */
  async waitForLog(pattern: RegExp, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.log)) {
      if (Date.now() > deadline) throw new Error(`log never matched ${pattern}:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Sends `signal` and returns the exit status. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.#child.kill(signal);
    } catch {
      // Already exited.
    }
    const status = await this.#child.status;
    await this.#logDone;
    return status;
  }

  /** Stops the daemon. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A fresh temporary directory for sockets, removed by the caller. */
export function socketDir(): string {
  return Deno.makeTempDirSync({ prefix: "vhost-test-" });
}

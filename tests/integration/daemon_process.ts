/**
 * Runs a device daemon as a child process under test (integration tests,
 * end-to-end tests, benchmarks): a real process behind a real socket, its
 * log captured, its fds and memory countable.
 *
 * @module
 */

/** Options of {@link DaemonProcess.start}. */
export interface DaemonOptions {
  /** Arguments after the entry module. */
  readonly args: readonly string[];
  /** Paths (sockets) that must exist before `start` returns. Default none. */
  readonly waitFor?: readonly string[];
  /** Pins the daemon (all its threads) to this CPU with taskset, for benchmarks. */
  readonly cpu?: number;
  /** Extra environment variables (added to this process's). */
  readonly env?: Readonly<Record<string, string>>;
  /** A directory the daemon owns (its sockets'): removed recursively on {@link DaemonProcess.stop}. */
  readonly tempDir?: string;
  /** How long the daemon may take to listen, in ms. Default 20 000 (more inside a slow guest). */
  readonly startTimeoutMs?: number;
  /**
   * Log lines saying `listening on` to wait for (one per socket) before
   * `start` returns: the sure sign for a daemon whose socket path may
   * exist before it listens. Default 0.
   */
  readonly listening?: number;
  /** Flags for `deno run` before the entry module (e.g. `--v8-flags=…`), for benchmarks. */
  readonly denoFlags?: readonly string[];
}

/** Options of {@link DaemonProcess.waitForLog}. */
export interface WaitForLogOptions {
  /** How many matching log lines to wait for. Default 1. */
  readonly count?: number;
  /** Milliseconds before giving up. Default 10 000. */
  readonly timeoutMs?: number;
}

/** A running daemon; stopped (SIGTERM) on dispose. */
export class DaemonProcess implements AsyncDisposable {
  /** The child's process id. */
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #logDone: Promise<void>;
  readonly #tempDir: string | undefined;
  #log = "";
  #running = true;

  private constructor(child: Deno.ChildProcess, tempDir: string | undefined) {
    this.#child = child;
    this.pid = child.pid;
    this.#tempDir = tempDir;
    this.#status = child.status.then((status) => {
      this.#running = false;
      return status;
    });
    this.#logDone = (async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#log += text;
      }
    })();
  }

  /**
   * Spawns `deno run --allow-all <entry> <args>` with stderr captured and
   * waits until every path in `waitFor` exists and `listening` sockets are
   * logged as listening. Throws, with the log, if the daemon exits first or
   * takes over `startTimeoutMs` (it is stopped then).
   */
  static async start(entry: string, options: DaemonOptions): Promise<DaemonProcess> {
    const command = ["run", "--allow-all", ...(options.denoFlags ?? []), entry, ...options.args];
    const pinned = options.cpu !== undefined;
    const child = new Deno.Command(pinned ? "taskset" : Deno.execPath(), {
      args: pinned ? ["-c", String(options.cpu), Deno.execPath(), ...command] : command,
      env: options.env ? { ...options.env } : undefined,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const daemon = new DaemonProcess(child, options.tempDir);
    const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
    for (const path of options.waitFor ?? []) {
      while (!exists(path)) {
        if (!daemon.running || Date.now() > deadline) {
          await daemon.stop();
          throw new Error(`daemon did not listen on ${path}:\n${daemon.log}`);
        }
        await delay(20);
      }
    }
    if (options.listening) {
      try {
        await daemon.waitForLog("listening on", {
          count: options.listening,
          timeoutMs: Math.max(deadline - Date.now(), 0),
        });
      } catch (error) {
        await daemon.stop();
        throw error;
      }
    }
    return daemon;
  }

  /** Everything the daemon logged (its stderr) so far; all of it after {@link stop}. */
  get log(): string {
    return this.#log;
  }

  /** Whether the daemon still runs. */
  get running(): boolean {
    return this.#running;
  }

  /** Number of open fds of the daemon, from `/proc/<pid>/fd`. */
  fdCount(): number {
    return [...Deno.readDirSync(`/proc/${this.pid}/fd`)].length;
  }

  /** The daemon's open fds, each with what it refers to (`/proc/<pid>/fd/N`'s link). */
  fds(): Map<number, string> {
    const table = new Map<number, string>();
    for (const entry of Deno.readDirSync(`/proc/${this.pid}/fd`)) {
      try {
        table.set(Number(entry.name), Deno.readLinkSync(`/proc/${this.pid}/fd/${entry.name}`));
      } catch {
        // Closed between the listing and the link read.
      }
    }
    return table;
  }

  /**
   * Waits up to `timeoutMs` (default 1000) for the daemon to hold as many
   * fds as it did at `before` (a {@link fds} snapshot); else throws naming
   * the fds gained and lost, so a leak says what leaked.
   */
  async expectFds(
    before: ReadonlyMap<number, string>,
    options: { what?: string; timeoutMs?: number } = {},
  ): Promise<void> {
    const deadline = performance.now() + (options.timeoutMs ?? 1000);
    let now = this.fds();
    while (now.size !== before.size && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      now = this.fds();
    }
    if (now.size === before.size) return;
    const list = (a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>) =>
      [...a].filter(([fd, target]) => b.get(fd) !== target).map(([fd, t]) => `${fd} ${t}`)
        .join(", ") || "none";
    throw new Error(
      `${options.what ?? "the daemon's fds"}: ${before.size} became ${now.size}; ` +
        `gained: ${list(now, before)}; lost: ${list(before, now)}`,
    );
  }

  /** Resident memory of the daemon in KiB, from `/proc/<pid>/status` (VmRSS). */
  rssKiB(): number {
    const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  }

  /**
   * Waits until `count` log lines match `pattern` (a string: lines containing
   * it; a RegExp: tested line by line). Throws, with the log, if the daemon
   * exits first or on timeout.
   */
  async waitForLog(pattern: string | RegExp, options: WaitForLogOptions = {}): Promise<void> {
    const matches = typeof pattern === "string"
      ? (line: string) => line.includes(pattern)
      : (line: string) => line.search(pattern) !== -1;
    const count = options.count ?? 1;
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    while (this.#log.split("\n").filter(matches).length < count) {
      if (!this.#running) {
        await this.#logDone;
        if (this.#log.split("\n").filter(matches).length >= count) return;
        throw new Error(`daemon exited before logging ${count}× ${pattern}:\n${this.#log}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`daemon did not log ${count}× ${pattern} in time:\n${this.#log}`);
      }
      await delay(10);
    }
  }

  /** Sends `signal` (if still running), waits for the exit status and the whole log, removes `tempDir`. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (this.#running) {
      try {
        this.#child.kill(signal);
      } catch {
        // Exited meanwhile.
      }
    }
    const status = await this.#status;
    await this.#logDone;
    if (this.#tempDir) await Deno.remove(this.#tempDir, { recursive: true }).catch(() => {});
    return status;
  }

  /** Stops the daemon. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A fresh temporary directory for sockets, removed by the caller. */
export function socketDir(): string {
  return Deno.makeTempDirSync({ prefix: "vhost-test-" });
}

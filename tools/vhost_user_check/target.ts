/**
 * The back-end under test: a socket someone else serves (`--socket`), or a
 * command this tool starts and restarts (`--exec`), with `{socket}` replaced
 * by a fresh path and `{dir}` by a fresh directory for anything else the
 * back-end needs (a vsock `--uds-path`, a disk image).
 *
 * @module
 */

import { type FrontendOptions, VhostUserFrontend } from "../../frontend/mod.ts";

/** Options of {@link Target.open}. */
export interface TargetOptions {
  /** A socket a running back-end listens on. */
  readonly socket?: string;
  /** A shell command starting the back-end; `{socket}` and `{dir}` are substituted. */
  readonly exec?: string;
  /** Milliseconds to wait for an `--exec` back-end to listen. Default 20 000. */
  readonly startTimeoutMs?: number;
}

/** How an `--exec` back-end ended. */
export interface ExitReport {
  /** Exit code (128 + n after signal n, as the shell reports it). */
  readonly code: number;
  /** The signal that ended it, if any. */
  readonly signal: string | null;
  /** The last lines it wrote to stderr. */
  readonly stderrTail: string;
}

const STDERR_KEEP = 8192;
const SOCKET_NAME = "vhost-user.sock";

/** A back-end: where to connect, and (with `--exec`) its process. */
export class Target {
  readonly #exec: string | undefined;
  readonly #startTimeoutMs: number;
  #path: string;
  #dir: string | null = null;
  #child: Deno.ChildProcess | null = null;
  #status: Promise<Deno.CommandStatus> | null = null;
  #exited: Deno.CommandStatus | null = null;
  #stderrPath: string | null = null;
  #stderrTail = "";
  #starts = 0;

  private constructor(options: TargetOptions) {
    this.#exec = options.exec;
    this.#path = options.socket ?? "";
    this.#startTimeoutMs = options.startTimeoutMs ?? 20_000;
  }

  /** Opens the target: with `exec`, starts the back-end and waits for its socket. */
  static async open(options: TargetOptions): Promise<Target> {
    if ((options.socket === undefined) === (options.exec === undefined)) {
      throw new Error("give exactly one of socket and exec");
    }
    const target = new Target(options);
    if (options.exec !== undefined) await target.restart();
    return target;
  }

  /** The socket path connections go to. */
  get path(): string {
    return this.#path;
  }

  /** Whether this tool started the back-end (and can restart it). */
  get restartable(): boolean {
    return this.#exec !== undefined;
  }

  /** How many times the back-end was started (0 for `--socket`). */
  get starts(): number {
    return this.#starts;
  }

  /** The back-end's pid, when this tool started it and it runs. */
  get pid(): number | null {
    return this.#child && !this.#exited ? this.#child.pid : null;
  }

  /** False once a started back-end has exited. Always true for `--socket`. */
  get running(): boolean {
    return this.#exec === undefined || (this.#child !== null && this.#exited === null);
  }

  /** How the started back-end ended, or null while it runs (or for `--socket`). */
  exitReport(): ExitReport | null {
    if (!this.#exited) return null;
    return {
      code: this.#exited.code,
      signal: this.#exited.signal,
      stderrTail: this.#stderrTail,
    };
  }

  /** The last lines the started back-end wrote to stderr. */
  stderrTail(): string {
    if (!this.#stderrPath) return "";
    try {
      using file = Deno.openSync(this.#stderrPath);
      const size = file.statSync().size;
      const start = Math.max(0, size - STDERR_KEEP);
      file.seekSync(start, Deno.SeekMode.Start);
      const bytes = new Uint8Array(size - start);
      let got = 0;
      while (got < bytes.length) {
        const n = file.readSync(bytes.subarray(got));
        if (n === null) break;
        got += n;
      }
      return new TextDecoder().decode(bytes.subarray(0, got)).split("\n").slice(-20).join("\n")
        .trim();
    } catch {
      return "";
    }
  }

  /** Open fds of the started back-end (`/proc/PID/fd`), or null. */
  fdCount(): number | null {
    const pid = this.pid;
    if (pid === null) return null;
    try {
      return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
    } catch {
      return null;
    }
  }

  /** Resident memory of the started back-end in KiB (`VmRSS`), or null. */
  rssKiB(): number | null {
    const pid = this.pid;
    if (pid === null) return null;
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      const kib = /VmRSS:\s+(\d+)/.exec(status)?.[1];
      return kib === undefined ? null : Number(kib);
    } catch {
      return null;
    }
  }

  /** Waits until an exited back-end's status is known; returns whether it runs. */
  async settle(ms: number): Promise<boolean> {
    if (!this.#status || this.#exited) return this.running;
    await Promise.race([this.#status, new Promise((r) => setTimeout(r, ms))]);
    return this.running;
  }

  /**
   * Connects a front-end, retrying while the socket is missing or refuses,
   * for up to `connectTimeoutMs` (default 5000).
   */
  connect(options: FrontendOptions & { connectTimeoutMs?: number } = {}): Promise<
    VhostUserFrontend
  > {
    return VhostUserFrontend.connect(this.#path, options);
  }

  /**
   * (Re)starts an `--exec` back-end: stops the old one (SIGKILL, it may be
   * hung), then runs the command in a fresh directory and waits until a
   * socket whose name starts with the substituted one appears (daemons that
   * suffix an instance number, like `-s PATH` → `PATH0`, are found too).
   */
  async restart(): Promise<void> {
    if (this.#exec === undefined) throw new Error("a --socket back-end cannot be restarted");
    await this.#stop("SIGKILL");
    this.#dir = Deno.makeTempDirSync({ prefix: "vhost-user-check-" });
    const socket = `${this.#dir}/${SOCKET_NAME}`;
    const command = this.#exec.replaceAll("{socket}", socket).replaceAll("{dir}", this.#dir);
    this.#exited = null;
    // stderr goes to a file, not a pipe: the fuzzer blocks in system calls for a
    // whole burst, and a chatty back-end would fill a pipe and stall on it.
    this.#stderrPath = `${this.#dir}/stderr.log`;
    const child = new Deno.Command("/bin/sh", {
      args: ["-c", `exec ${command} 2>${shellQuote(this.#stderrPath)}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#child = child;
    this.#starts++;
    this.#status = child.status.then((status) => {
      if (this.#child === child) {
        this.#stderrTail = this.stderrTail();
        this.#exited = status;
      }
      return status;
    });
    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      const found = findSocket(this.#dir);
      if (found) {
        this.#path = found;
        return;
      }
      if (this.#exited) {
        const report = this.exitReport();
        throw new Error(
          `the back-end exited (code ${report?.code}) before listening on ${socket}: ${report?.stderrTail}`,
        );
      }
      if (Date.now() > deadline) {
        await this.#stop("SIGKILL");
        throw new Error(
          `the back-end did not listen on ${socket} within ${this.#startTimeoutMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops a started back-end (SIGTERM, then SIGKILL after 5 s) and removes its directory. */
  async close(): Promise<void> {
    await this.#stop("SIGTERM");
  }

  async #stop(signal: Deno.Signal): Promise<void> {
    const child = this.#child;
    if (child && !this.#exited) {
      try {
        child.kill(signal);
      } catch {
        // It exited meanwhile.
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Gone.
        }
      }, 5000);
      await this.#status;
      clearTimeout(timer);
    } else if (this.#status) {
      await this.#status;
    }
    this.#child = null;
    this.#status = null;
    if (this.#dir) Deno.removeSync(this.#dir, { recursive: true });
    this.#dir = null;
  }
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function findSocket(dir: string): string | null {
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.name.startsWith(SOCKET_NAME)) continue;
    const path = `${dir}/${entry.name}`;
    if (Deno.lstatSync(path).isSocket) return path;
  }
  return null;
}

/**
 * Logging to stderr in env_logger's format, filtered the way users of the Rust
 * binaries expect: `RUST_LOG=debug`, `RUST_LOG=vhost_device_rng=trace,warn`,
 * or a `--log-level` flag that overrides it.
 *
 * @module
 */

/** Severity levels, most severe first. */
export const LEVELS = ["off", "error", "warn", "info", "debug", "trace"] as const;
/** One of {@link LEVELS}. */
export type Level = typeof LEVELS[number];

const RANK: Record<Level, number> = { off: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

/** Whether `value` names a level (case-insensitive). */
export function isLevel(value: string): value is Level {
  return (LEVELS as readonly string[]).includes(value.toLowerCase());
}

/**
 * The level a `RUST_LOG`-style filter gives `target`: the last matching
 * `target=level` directive (by module-path prefix), else the bare level, else
 * `fallback`. Unparseable directives are ignored, as env_logger does.
 */
export function levelFor(filter: string, options: { target: string; fallback: Level }): Level {
  let general: Level | undefined;
  let specific: Level | undefined;
  let specificLength = -1;
  for (const raw of filter.split(",")) {
    const directive = raw.trim();
    if (directive === "") continue;
    const eq = directive.indexOf("=");
    if (eq < 0) {
      if (isLevel(directive)) general = directive.toLowerCase() as Level;
      continue;
    }
    const name = directive.slice(0, eq).trim();
    const level = directive.slice(eq + 1).trim().toLowerCase();
    const matches = options.target === name || options.target.startsWith(name + "::");
    if (isLevel(level) && matches && name.length >= specificLength) {
      specific = level as Level;
      specificLength = name.length;
    }
  }
  return specific ?? general ?? options.fallback;
}

/** Where log lines go; tests substitute a collector. */
export type LogSink = (line: string) => void;

const encoder = new TextEncoder();

/** Writes a line to stderr. */
export const stderrSink: LogSink = (line) => {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
};

/** A logger for one target (the binary's crate-style name, e.g. `vhost_device_rng`). */
export class Logger {
  /** The target printed in each line. */
  readonly target: string;
  #rank: number;
  readonly #sink: LogSink;

  /** A logger printing `target` lines at `level` and above into `sink`. */
  constructor(target: string, options: { level: Level; sink?: LogSink }) {
    this.target = target;
    this.#rank = RANK[options.level];
    this.#sink = options.sink ?? stderrSink;
  }

  /** A logger with the same level and sink under a sub-target (`a::b`). */
  child(name: string): Logger {
    const child = new Logger(`${this.target}::${name}`, { level: "off", sink: this.#sink });
    child.#rank = this.#rank;
    return child;
  }

  /** Whether lines of `level` are printed; guard costly messages with it. */
  enabled(level: Exclude<Level, "off">): boolean {
    return RANK[level] <= this.#rank;
  }

  /** Logs at error level. */
  error(message: string): void {
    this.#log("error", message);
  }

  /** Logs at warn level. */
  warn(message: string): void {
    this.#log("warn", message);
  }

  /** Logs at info level. */
  info(message: string): void {
    this.#log("info", message);
  }

  /** Logs at debug level. */
  debug(message: string): void {
    this.#log("debug", message);
  }

  /** Logs at trace level. */
  trace(message: string): void {
    this.#log("trace", message);
  }

  #log(level: Exclude<Level, "off">, message: string): void {
    if (RANK[level] > this.#rank) return;
    const time = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    this.#sink(`[${time} ${level.toUpperCase().padEnd(5)} ${this.target}] ${message}`);
  }
}

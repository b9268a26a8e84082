/**
 * Command lines shaped like the Rust binaries' (clap): one definition per
 * option gives the parser, `--help` and the man page. Errors are one line
 * naming the option, and a non-zero exit.
 *
 * @module
 */

import { type ArgOption, parseArgv } from "./args.ts";
import type { ListenAddress } from "./daemon.ts";
import { socketPaths } from "./daemon.ts";
import { DEFAULT_POLL_MICROS } from "./event_loop.ts";
import { isLevel, type Level, levelFor, Logger } from "./log.ts";

/** The project's version, printed by `--version`. */
export const VERSION = "0.1.0";

/** One command-line option. */
export interface OptionSpec {
  /** Long name without dashes, e.g. `socket-path`. */
  readonly long: string;
  /** Single-letter short name, if any. */
  readonly short?: string;
  /** `value` takes an argument; `flag` does not. */
  readonly kind: "value" | "flag";
  /** May be given more than once (values collect in order). */
  readonly multiple?: boolean;
  /** Placeholder in help, e.g. `SOCKET`. */
  readonly valueName?: string;
  /** One line of help. */
  readonly help: string;
  /** Default shown in help and used when absent. */
  readonly defaultValue?: string;
  /** Must be given. */
  readonly required?: boolean;
}

/** A program's command line. */
export interface CommandSpec {
  /** Binary name, e.g. `vhost-device-rng`. */
  readonly name: string;
  /** One-line description. */
  readonly about: string;
  /** Its options (`--help` and `--version` are added). */
  readonly options: readonly OptionSpec[];
  /**
   * The vhost-user back-end type (`VHostUserBackendType` of QEMU's
   * docs/interop/vhost-user.json, e.g. `rng`, `vsock`). Given, the command
   * answers `--print-capabilities` as the spec's back-end program
   * conventions ask.
   */
  readonly backendType?: string;
  /** Options that may not be combined, by long name. */
  readonly conflicts?: readonly (readonly [string, string])[];
  /** The man page's EXIT STATUS text, for a command that is not a daemon. */
  readonly manExitStatus?: string;
  /** Paragraphs of the man page's DESCRIPTION section, if it has one. */
  readonly manDescription?: readonly string[];
  /** Whether it reads `RUST_LOG` (help and man page say so). Default true: the daemons do. */
  readonly rustLog?: boolean;
  /**
   * Positional arguments, if the command takes any (e.g. scsi's image
   * paths): they are collected, in order, under `name` in the parsed options.
   */
  readonly positionals?: PositionalSpec;
}

/** The positional arguments of a command. */
export interface PositionalSpec {
  /** Key in the parsed options, and the placeholder in help, e.g. `IMAGES`. */
  readonly name: string;
  /** One line of help. */
  readonly help: string;
}

/** Parsed options by long name: strings, booleans, or string lists for `multiple`. */
export type ParsedOptions = Record<string, string | boolean | string[] | undefined>;

/** A command-line mistake; printed as one line, exit status 2 (as clap). */
export class UsageError extends Error {
  /** Describes the mistake. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The event-loop options every daemon shares. */
export const LOOP_OPTIONS: readonly OptionSpec[] = [
  {
    long: "poll-us",
    kind: "value",
    valueName: "MICROSECONDS",
    defaultValue: String(DEFAULT_POLL_MICROS),
    help:
      "Cap of the adaptive poll after serving: it grows while work keeps arriving, falls to 0 when idle (0: never poll)",
  },
];

/** The value of `--poll-us` from {@link LOOP_OPTIONS}. */
export function pollMicros(parsed: ParsedOptions): number {
  return parseInteger(String(parsed["poll-us"] ?? DEFAULT_POLL_MICROS), {
    option: "poll-us",
    min: 0,
    max: 1_000_000,
  });
}

/** The value of `--log-level` from {@link LOG_OPTIONS}, if given; a usage error if it names no level. */
export function logLevelOption(parsed: ParsedOptions): Level | undefined {
  const level = parsed["log-level"];
  if (typeof level !== "string") return undefined;
  if (!isLevel(level)) throw new UsageError(`invalid value '${level}' for --log-level`);
  return level.toLowerCase() as Level;
}

/** The options every daemon shares for logging. */
export const LOG_OPTIONS: readonly OptionSpec[] = [
  {
    long: "log-level",
    kind: "value",
    valueName: "LEVEL",
    help: "Log level: off, error, warn, info, debug or trace (overrides RUST_LOG)",
  },
];

/** Socket options shared by the daemons: `-s/--socket-path`, `--socket-fd`, `-c/--socket-count`. */
export const SOCKET_OPTIONS: readonly OptionSpec[] = [
  {
    long: "socket-path",
    short: "s",
    kind: "value",
    valueName: "SOCKET",
    help: "vhost-user Unix socket path",
  },
  {
    long: "socket-fd",
    kind: "value",
    valueName: "FD",
    help: "Serve an inherited listening socket (systemd socket activation) instead of a path",
  },
  {
    long: "socket-count",
    short: "c",
    kind: "value",
    valueName: "COUNT",
    defaultValue: "1",
    help: "Number of guests (sockets) to serve",
  },
];

/**
 * Where to listen, from {@link SOCKET_OPTIONS}. With `indexed`, `--socket-path`
 * is a prefix completed by the instance number (see `socketPaths`).
 */
export function listenAddresses(
  parsed: ParsedOptions,
  options: { indexed: boolean },
): ListenAddress[] {
  const count = parseInteger(String(parsed["socket-count"] ?? "1"), {
    option: "socket-count",
    min: 1,
    max: 64,
  });
  const path = parsed["socket-path"];
  const fd = parsed["socket-fd"];
  if (typeof fd === "string") {
    if (path !== undefined) throw new UsageError("--socket-fd cannot be used with --socket-path");
    if (count !== 1) {
      throw new UsageError("--socket-fd serves one socket: --socket-count must be 1");
    }
    return [{ fd: parseInteger(fd, { option: "socket-fd", min: 0, max: 65535 }) }];
  }
  if (typeof path !== "string") {
    throw new UsageError("the option --socket-path (or --socket-fd) is required");
  }
  if (!options.indexed && count !== 1) {
    throw new UsageError("--socket-count must be 1 for this device");
  }
  return socketPaths(path, { count, indexed: options.indexed }).map((p) => ({ path: p }));
}

/**
 * Parses `args`. Returns `"help"` or `"version"` when those were asked for.
 * Throws {@link UsageError} for unknown or malformed options.
 */
export function parseCommandLine(
  given: readonly string[],
  spec: CommandSpec,
): ParsedOptions | "help" | "version" | "capabilities" {
  // `deno task <name> -- <flags>` passes the `--` on (Deno 2.9): it separates nothing here.
  const args = given[0] === "--" ? given.slice(1) : given;
  const options: Record<string, ArgOption> = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
    ...(spec.backendType ? { "print-capabilities": { type: "boolean" as const } } : {}),
  };
  for (const option of spec.options) {
    options[option.long] = {
      type: option.kind === "value" ? "string" : "boolean",
      ...(option.short ? { short: option.short } : {}),
      ...(option.multiple ? { multiple: true } : {}),
    };
  }
  let values: ParsedOptions;
  try {
    const parsed = parseArgv(args, {
      options,
      allowPositionals: spec.positionals !== undefined,
    });
    values = parsed.values;
    if (spec.positionals) values[spec.positionals.name] = parsed.positionals;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split("\n")[0] : String(error));
  }
  if (values.help) return "help";
  if (values.version) return "version";
  if (values["print-capabilities"]) return "capabilities";
  for (const option of spec.options) {
    if (values[option.long] === undefined && option.defaultValue !== undefined) {
      values[option.long] = option.defaultValue;
    }
    if (option.required && values[option.long] === undefined) {
      throw new UsageError(`the option --${option.long} is required`);
    }
  }
  for (const [a, b] of spec.conflicts ?? []) {
    if (args.some((x) => isOption(x, spec, a)) && args.some((x) => isOption(x, spec, b))) {
      throw new UsageError(`--${a} cannot be used with --${b}`);
    }
  }
  return values;
}

function isOption(arg: string, spec: CommandSpec, long: string): boolean {
  const short = spec.options.find((o) => o.long === long)?.short;
  return arg === `--${long}` || arg.startsWith(`--${long}=`) ||
    (short !== undefined && arg.startsWith(`-${short}`));
}

const CAPABILITIES_OPTION: OptionSpec = {
  long: "print-capabilities",
  kind: "flag",
  help: "Print the back-end's capabilities as JSON and exit",
};

/** What `--print-capabilities` prints: `{"type": …}` (vhost-user.rst, "Backend program conventions"). */
export function capabilities(spec: CommandSpec): string {
  return JSON.stringify({ type: spec.backendType });
}

/** `--help` text built from the option definitions. */
export function renderHelp(spec: CommandSpec): string {
  const rows = [
    ...spec.options,
    { long: "help", short: "h", kind: "flag", help: "Print help" } as const,
    {
      long: "version",
      short: "V",
      kind: "flag",
      help: "Print version",
    } as const,
    ...(spec.backendType ? [CAPABILITIES_OPTION] : []),
  ].map((o: OptionSpec) => {
    const names = `${o.short ? `-${o.short}, ` : "    "}--${o.long}${
      o.kind === "value" ? ` <${o.valueName ?? "VALUE"}>` : ""
    }`;
    const extra = o.defaultValue !== undefined ? ` [default: ${o.defaultValue}]` : "";
    return { names, text: o.help + extra };
  });
  const width = Math.max(...rows.map((r) => r.names.length)) + 2;
  const required = spec.options.filter((o) => o.required).map((o) =>
    `--${o.long} <${o.valueName ?? "VALUE"}>`
  );
  const positional = spec.positionals ? ` [${spec.positionals.name}]...` : "";
  return [
    spec.about,
    "",
    `Usage: ${spec.name} [OPTIONS]${required.length ? " " + required.join(" ") : ""}${positional}`,
    "",
    ...(spec.positionals
      ? ["Arguments:", `  [${spec.positionals.name}]...  ${spec.positionals.help}`, ""]
      : []),
    "Options:",
    ...rows.map((r) => `  ${r.names.padEnd(width)}${r.text}`),
    "",
    ...(spec.rustLog === false ? [] : [
      "Environment:",
      "  RUST_LOG  Log filter, as env_logger reads it (e.g. info, or vhost_device_rng=debug)",
      "",
    ]),
  ].join("\n");
}

function roff(text: string): string {
  return text.replace(/\\/g, "\\e").replace(/-/g, "\\-").replace(/^([.'])/gm, "\\&$1");
}

/**
 * A man page (roff, `man 7 man` macros) built from the same definitions as
 * the parser and `--help`.
 */
export function renderManPage(
  spec: CommandSpec,
  options: { date: string; section?: number },
): string {
  const section = options.section ?? 1;
  const lines = [
    `.TH ${spec.name.toUpperCase()} ${section} "${options.date}" "${spec.name} ${VERSION}" "User Commands"`,
    ".SH NAME",
    `${roff(spec.name)} \\- ${roff(spec.about)}`,
    ".SH SYNOPSIS",
    `.B ${roff(spec.name)}`,
    "[\\fIOPTIONS\\fR]" +
    (spec.positionals ? ` [\\fI${roff(spec.positionals.name)}\\fR]...` : ""),
    ...(spec.positionals
      ? [
        ".SH ARGUMENTS",
        ".TP",
        `\\fI${roff(spec.positionals.name)}\\fR`,
        roff(spec.positionals.help),
      ]
      : []),
    ...(spec.manDescription
      ? [
        ".SH DESCRIPTION",
        ...spec.manDescription.flatMap((p, i) => i === 0 ? [roff(p)] : [".PP", roff(p)]),
      ]
      : []),
    ".SH OPTIONS",
  ];
  for (const option of spec.options) {
    const value = option.kind === "value" ? ` \\fI${option.valueName ?? "VALUE"}\\fR` : "";
    const names = [
      option.short ? `\\fB\\-${option.short}\\fR${value}` : null,
      `\\fB\\-\\-${roff(option.long)}\\fR${value}`,
    ]
      .filter((n) => n !== null).join(", ");
    lines.push(
      ".TP",
      names,
      roff(
        option.help +
          (option.defaultValue !== undefined ? ` [default: ${option.defaultValue}]` : ""),
      ),
    );
  }
  lines.push(
    ".TP",
    "\\fB\\-h\\fR, \\fB\\-\\-help\\fR",
    "Print help.",
    ".TP",
    "\\fB\\-V\\fR, \\fB\\-\\-version\\fR",
    "Print version.",
    ...(spec.backendType
      ? [
        ".TP",
        "\\fB\\-\\-print\\-capabilities\\fR",
        "Print the back-end's capabilities as JSON and exit.",
      ]
      : []),
    ...(spec.rustLog === false ? [] : [
      ".SH ENVIRONMENT",
      ".TP",
      ".B RUST_LOG",
      "Log filter, as env_logger reads it (e.g. \\fBinfo\\fR, or \\fBvhost_device_rng=debug\\fR); \\fB\\-\\-log\\-level\\fR overrides it.",
    ]),
    ".SH EXIT STATUS",
    roff(
      spec.manExitStatus ??
        "0 after SIGINT or SIGTERM; 2 for a command-line mistake; 1 for any other start-up failure.",
    ),
    "",
  );
  return lines.join("\n");
}

/**
 * An integer option's value, checked against `[min, max]`. Throws
 * {@link UsageError} naming the option.
 */
export function parseInteger(
  value: string,
  options: { option: string; min?: number; max?: number },
): number {
  const text = value.trim();
  const n = /^[0-9]+$/.test(text) ? Number(text) : /^0x[0-9a-f]+$/i.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new UsageError(`invalid value '${value}' for --${options.option}: not a number`);
  }
  if (options.min !== undefined && n < options.min) {
    throw new UsageError(
      `invalid value '${value}' for --${options.option}: must be at least ${options.min}`,
    );
  }
  if (options.max !== undefined && n > options.max) {
    throw new UsageError(
      `invalid value '${value}' for --${options.option}: must be at most ${options.max}`,
    );
  }
  return n;
}

/**
 * The daemon's logger: `--log-level` if given, else `RUST_LOG`, else
 * `fallback` (env_logger's default is `error`).
 */
export function loggerFor(target: string, options: { flag?: string; fallback?: Level }): Logger {
  const fallback = options.fallback ?? "error";
  if (options.flag !== undefined) {
    if (!isLevel(options.flag)) {
      throw new UsageError(`invalid value '${options.flag}' for --log-level`);
    }
    return new Logger(target, { level: options.flag.toLowerCase() as Level });
  }
  let filter = "";
  try {
    filter = Deno.env.get("RUST_LOG") ?? "";
  } catch {
    // Without --allow-env the default applies.
  }
  return new Logger(target, { level: levelFor(filter, { target, fallback }) });
}

/**
 * Runs a daemon's `main`: prints help or version, turns a {@link UsageError}
 * into one line and exit status 2, any other startup failure into one line
 * and exit status 1, never a stack trace.
 */
export async function runMain(
  spec: CommandSpec,
  main: (options: ParsedOptions) => Promise<void>,
): Promise<never> {
  let status = 0;
  try {
    const parsed = parseCommandLine(Deno.args, spec);
    if (parsed === "help") console.log(renderHelp(spec));
    else if (parsed === "version") console.log(`${spec.name} ${VERSION}`);
    else if (parsed === "capabilities") console.log(capabilities(spec));
    else await main(parsed);
  } catch (error) {
    status = error instanceof UsageError ? 2 : 1;
    const message = error instanceof Error ? error.message : String(error);
    Deno.stderr.writeSync(new TextEncoder().encode(`${spec.name}: error: ${message}\n`));
  }
  Deno.exit(status);
}

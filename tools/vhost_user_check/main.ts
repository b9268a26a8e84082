/**
 * `vhost-user-check`: a conformance and fuzz tool for any vhost-user back-end.
 *
 * ```sh
 * deno task check-backend -- --exec 'deno task rng -s {socket}' --device rng --messages 20000
 * ```
 *
 * @module
 */

import { type CommandSpec, parseInteger, runMain, UsageError } from "../../core/cli.ts";
import type { ParsedOptions } from "../../core/cli.ts";
import { type CheckResult, runConformance } from "./conformance.ts";
import { DEVICE_PROFILES, type DeviceProfile } from "./device_profiles.ts";
import { type FuzzSummary, readReproducer, replay, runFuzz } from "./fuzz.ts";
import { failed, renderJson, renderText, type Report } from "./report.ts";
import { Target } from "./target.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = {
  name: "vhost-user-check",
  about: "Checks a vhost-user back-end against the protocol and fuzzes it",
  options: [
    {
      long: "socket",
      kind: "value",
      valueName: "PATH",
      help: "The socket of a running back-end",
    },
    {
      long: "exec",
      kind: "value",
      valueName: "COMMAND",
      help:
        "Start the back-end with this shell command ({socket}: a fresh socket path, {dir}: a fresh directory); restarted when it dies",
    },
    {
      long: "device",
      kind: "value",
      valueName: "NAME",
      help: "Also push real requests and check the answers: blk, rng or vsock",
    },
    {
      long: "seed",
      kind: "value",
      valueName: "N",
      defaultValue: "1",
      help: "Fuzzing seed: the same seed sends the same messages",
    },
    {
      long: "messages",
      kind: "value",
      valueName: "N",
      defaultValue: "0",
      help: "Fuzz with this many vhost-user messages (0: unless --seconds)",
    },
    {
      long: "seconds",
      kind: "value",
      valueName: "S",
      defaultValue: "0",
      help: "Fuzz for this many seconds (with --messages: whichever ends first)",
    },
    {
      long: "burst",
      kind: "value",
      valueName: "N",
      defaultValue: "256",
      help: "Messages per fuzzing connection, each followed by a clean front-end",
    },
    {
      long: "no-conformance",
      kind: "flag",
      help: "Skip the conformance handshakes (fuzz or replay only)",
    },
    {
      long: "reproducer",
      kind: "value",
      valueName: "FILE",
      defaultValue: "vhost-user-check-reproducer.json",
      help: "Where to write the reproducer of a crash or hang",
    },
    {
      long: "shrink-seconds",
      kind: "value",
      valueName: "S",
      defaultValue: "60",
      help:
        "Time to spend shrinking each failure's reproducer (needs --exec; 0: keep the whole burst)",
    },
    {
      long: "max-failures",
      kind: "value",
      valueName: "N",
      defaultValue: "10",
      help: "Stop fuzzing after this many failures",
    },
    {
      long: "replay",
      kind: "value",
      valueName: "FILE",
      help: "Replay a reproducer once and report whether the back-end survives it",
    },
    {
      long: "timeout-ms",
      kind: "value",
      valueName: "MS",
      defaultValue: "5000",
      help: "How long a reply may take before the back-end counts as hung",
    },
    { long: "json", kind: "flag", help: "Print the report as JSON" },
  ],
  conflicts: [["socket", "exec"]],
  rustLog: false,
  manDescription: [
    "Connects to a vhost-user back-end (--socket), or starts one (--exec, restarted when it dies), " +
    "and checks it against QEMU's docs/interop/vhost-user.rst.",
    "Conformance: the handshake in QEMU 10's message order (with a stop, a restart of the rings " +
    "from GET_VRING_BASE and a dropped connection), a reconnect as QEMU performs it, QEMU 7.2's " +
    "order, and one with NEED_REPLY on every message and every optional message the negotiated " +
    "protocol features allow (ADD/REM_MEM_REG, SET_MEM_TABLE with live rings, SET/GET_STATUS, " +
    "RESET_DEVICE, SET_CONFIG). Each reply is checked: flags, request code, size, the values " +
    "(features stable, GET_QUEUE_NUM, GET_CONFIG echo, GET_VRING_BASE between used and offered). " +
    "With --device it also pushes real requests and checks the device's answers.",
    "Fuzzing (--messages or --seconds): seeded bursts of mutated messages, fds, memory tables, ring " +
    "addresses and descriptor chains (loops, addresses outside memory, indirect tables, aliasing, " +
    "avail-index jumps), each burst on its own connection and followed by a clean front-end that " +
    "must be served. A crash, hang or refusal is written as a reproducer (shrunk when the back-end " +
    "can be restarted); --replay runs it again.",
  ],
  manExitStatus: "0 when every check passed; 1 on a conformance failure, a crash, a hang or a " +
    "clean front-end not served; 2 for a command-line mistake.",
};

/** The run a command line asks for. */
export interface CheckConfig {
  /** `--socket`, or null. */
  readonly socket: string | null;
  /** `--exec`, or null. */
  readonly exec: string | null;
  /** `--device`, or null. */
  readonly device: DeviceProfile | null;
  /** Fuzzing seed. */
  readonly seed: number;
  /** Messages to fuzz with (0: none unless `seconds`). */
  readonly messages: number;
  /** Seconds to fuzz for (0: none unless `messages`). */
  readonly seconds: number;
  /** Messages per burst. */
  readonly burst: number;
  /** Run the conformance handshakes. */
  readonly conformance: boolean;
  /** Reproducer path. */
  readonly reproducer: string;
  /** Seconds to shrink each failure. */
  readonly shrinkSeconds: number;
  /** Failures before fuzzing stops. */
  readonly maxFailures: number;
  /** A reproducer to replay, or null. */
  readonly replay: string | null;
  /** Reply timeout. */
  readonly timeoutMs: number;
  /** JSON output. */
  readonly json: boolean;
}

/** Turns parsed options into a {@link CheckConfig}; throws {@link UsageError}. */
export function checkConfig(options: ParsedOptions): CheckConfig {
  const text = (name: string): string | null => {
    const v = options[name];
    return typeof v === "string" ? v : null;
  };
  const socket = text("socket");
  const exec = text("exec");
  if (socket === null && exec === null) {
    throw new UsageError("the option --socket (or --exec) is required");
  }
  if (exec !== null && !exec.includes("{socket}")) {
    throw new UsageError("--exec needs {socket} where the back-end's socket path goes");
  }
  const deviceName = text("device");
  const device = deviceName === null ? null : DEVICE_PROFILES[deviceName] ?? null;
  if (deviceName !== null && device === null) {
    throw new UsageError(
      `invalid value '${deviceName}' for --device: one of ${
        Object.keys(DEVICE_PROFILES).join(", ")
      }`,
    );
  }
  const int = (name: string, min: number, max: number): number =>
    parseInteger(text(name) ?? "0", { option: name, min, max });
  return {
    socket,
    exec,
    device,
    seed: int("seed", 0, 0xffff_ffff),
    messages: int("messages", 0, 1e12),
    seconds: int("seconds", 0, 1e7),
    burst: int("burst", 1, 100_000),
    conformance: options["no-conformance"] !== true,
    reproducer: text("reproducer") ?? "vhost-user-check-reproducer.json",
    shrinkSeconds: int("shrink-seconds", 0, 86_400),
    maxFailures: int("max-failures", 1, 1_000_000),
    replay: text("replay"),
    timeoutMs: int("timeout-ms", 10, 600_000),
    json: options.json === true,
  };
}

/** Runs the checks a config asks for and builds the report. */
export async function check(
  config: CheckConfig,
  options: { progress?: (line: string) => void } = {},
): Promise<Report> {
  const target = await Target.open(
    config.exec !== null ? { exec: config.exec } : { socket: config.socket! },
  );
  try {
    let conformance: CheckResult[] = [];
    if (config.conformance && config.replay === null) {
      conformance = await runConformance(target, {
        device: config.device,
        timeoutMs: config.timeoutMs,
      });
    }
    let fuzz: FuzzSummary | null = null;
    if (config.messages > 0 || config.seconds > 0) {
      fuzz = await runFuzz(target, {
        seed: config.seed,
        messages: config.messages,
        seconds: config.seconds,
        burst: config.burst,
        timeoutMs: config.timeoutMs,
        device: config.device,
        reproducerPath: config.reproducer,
        shrinkSeconds: config.shrinkSeconds,
        maxFailures: config.maxFailures,
        progress: options.progress,
      });
    }
    let replayed: Report["replay"] = null;
    if (config.replay !== null) {
      const result = await replay(target, readReproducer(config.replay), {
        timeoutMs: config.timeoutMs,
        device: config.device,
      });
      replayed = {
        file: config.replay,
        failure: result?.failure ?? null,
        detail: result?.detail ?? "",
      };
    }
    return {
      target: config.exec ?? config.socket!,
      device: config.device?.name ?? null,
      conformance,
      fuzz,
      replay: replayed,
    };
  } finally {
    await target.close();
  }
}

if (import.meta.main) {
  await runMain(COMMAND, async (options) => {
    const config = checkConfig(options);
    const report = await check(config, {
      progress: config.json
        ? undefined
        : (line) => Deno.stderr.writeSync(new TextEncoder().encode(`${line}\n`)),
    });
    console.log(config.json ? renderJson(report) : renderText(report));
    if (failed(report)) Deno.exit(1);
  });
}

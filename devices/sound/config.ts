/**
 * The command line of `vhost-device-sound`, shaped like rust-vmm's (clap)
 * and parsed into a {@link SoundConfig} the daemon runs from.
 *
 * @module
 */

import {
  type CommandSpec,
  LOG_OPTIONS,
  logLevelOption,
  LOOP_OPTIONS,
  type ParsedOptions,
  parseInteger,
  pollMicros,
  UsageError,
} from "../../core/cli.ts";
import type { ListenAddress } from "../../core/daemon.ts";
import type { Level } from "../../core/log.ts";

/** The host audio systems. */
export const BACKENDS = ["null", "alsa", "pipewire", "file"] as const;
/** A `--backend` value. */
export type BackendName = typeof BACKENDS[number];

/** The option definitions: parser, `--help` and man page. */
export const SOUND_COMMAND: CommandSpec = {
  name: "vhost-device-sound",
  about: "A virtio sound card (virtio-snd) served over vhost-user",
  backendType: "sound",
  options: [
    {
      long: "socket",
      kind: "value",
      valueName: "SOCKET",
      help: "vhost-user Unix socket path (created once, served again after each disconnection)",
    },
    {
      long: "socket-fd",
      kind: "value",
      valueName: "FD",
      help: "Serve an inherited listening socket (systemd socket activation) instead of --socket",
    },
    {
      long: "backend",
      kind: "value",
      valueName: "BACKEND",
      required: true,
      help: "Audio back-end: null, alsa, pipewire or file",
    },
    {
      long: "device",
      kind: "value",
      valueName: "PCM",
      defaultValue: "default",
      help: "alsa: the ALSA PCM to play and record with",
    },
    {
      long: "output",
      kind: "value",
      valueName: "FILE",
      help: "file: WAV file the guest's playback is recorded into",
    },
    {
      long: "input",
      kind: "value",
      valueName: "FILE",
      help: "file: WAV file the guest records from (then silence after its end)",
    },
    ...LOOP_OPTIONS,
    ...LOG_OPTIONS,
  ],
  conflicts: [["socket", "socket-fd"]],
};

/** What the daemon runs. */
export interface SoundConfig {
  /** Where to listen. */
  readonly address: ListenAddress;
  /** The host audio system. */
  readonly backend: BackendName;
  /** `--device` (alsa). */
  readonly device: string;
  /** `--output` (file). */
  readonly output: string | undefined;
  /** `--input` (file). */
  readonly input: string | undefined;
  /** `--log-level`, if given. */
  readonly logLevel: Level | undefined;
  /** `--poll-us`. */
  readonly pollMicros: number;
}

/** Parses options into a config. Throws {@link UsageError} naming the bad option. */
export function soundConfig(parsed: ParsedOptions): SoundConfig {
  const socket = parsed.socket;
  const fd = parsed["socket-fd"];
  let address: ListenAddress;
  if (typeof fd === "string") {
    address = { fd: parseInteger(fd, { option: "socket-fd", min: 0, max: 65535 }) };
  } else if (typeof socket === "string" && socket !== "") {
    address = { path: socket };
  } else {
    throw new UsageError("one of --socket or --socket-fd is required");
  }
  const backend = String(parsed.backend);
  if (!(BACKENDS as readonly string[]).includes(backend)) {
    throw new UsageError(
      `invalid value '${backend}' for --backend: one of ${BACKENDS.join(", ")}`,
    );
  }
  const output = typeof parsed.output === "string" ? parsed.output : undefined;
  const input = typeof parsed.input === "string" ? parsed.input : undefined;
  if (backend === "file") {
    if (output === undefined && input === undefined) {
      throw new UsageError("--backend file needs --output, --input or both");
    }
    if (output === "" || input === "") {
      throw new UsageError(`invalid value '' for --${output === "" ? "output" : "input"}`);
    }
  } else if (output !== undefined || input !== undefined) {
    throw new UsageError(`--${output !== undefined ? "output" : "input"} needs --backend file`);
  }
  const device = String(parsed.device);
  if (device === "") throw new UsageError("invalid value '' for --device");
  const logLevel = logLevelOption(parsed);
  return {
    address,
    backend: backend as BackendName,
    device,
    output,
    input,
    logLevel,
    pollMicros: pollMicros(parsed),
  };
}

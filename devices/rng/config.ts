/**
 * The command line of `vhost-device-rng`, shaped like rust-vmm's (clap) and
 * parsed into a {@link RngConfig} the daemon runs from.
 *
 * @module
 */

import {
  type CommandSpec,
  listenAddresses,
  LOG_OPTIONS,
  logLevelOption,
  LOOP_OPTIONS,
  type ParsedOptions,
  parseInteger,
  pollMicros,
  SOCKET_OPTIONS,
  UsageError,
} from "../../core/cli.ts";
import type { ListenAddress } from "../../core/daemon.ts";
import type { Level } from "../../core/log.ts";

/** Longest period, as upstream (`Period is too big` beyond it). */
export const MAX_PERIOD_MS = 65536;

/** The option definitions: parser, `--help` and man page. */
export const RNG_COMMAND: CommandSpec = {
  name: "vhost-device-rng",
  about: "A virtio entropy device (virtio-rng) served over vhost-user",
  backendType: "rng",
  options: [
    ...SOCKET_OPTIONS,
    {
      long: "rng-source",
      short: "f",
      kind: "value",
      valueName: "RNG_SOURCE",
      defaultValue: "/dev/urandom",
      help: "File the random bytes are read from",
    },
    {
      long: "period",
      short: "p",
      kind: "value",
      valueName: "PERIOD",
      defaultValue: String(MAX_PERIOD_MS),
      help: `Rate-limit period in milliseconds (1..=${MAX_PERIOD_MS})`,
    },
    {
      long: "max-bytes",
      short: "m",
      kind: "value",
      valueName: "MAX_BYTES",
      help: "Bytes served per period, shared equally by the sockets [default: unlimited]",
    },
    ...LOOP_OPTIONS,
    ...LOG_OPTIONS,
  ],
};

/** What the daemon runs. */
export interface RngConfig {
  /** One address per instance: `<socket-path>0 … <socket-path>N-1`, or an inherited fd. */
  readonly addresses: readonly ListenAddress[];
  /** The entropy file. */
  readonly source: string;
  /** Rate-limit period in milliseconds. */
  readonly periodMs: number;
  /** Bytes each instance may serve per period, or `null` for no limit. */
  readonly maxBytesPerInstance: number | null;
  /** `--log-level`, if given. */
  readonly logLevel: Level | undefined;
  /** `--poll-us`: cap of the adaptive poll after serving (0: never poll). */
  readonly pollMicros: number;
}

/** Parses options into a config. Throws {@link UsageError} naming the bad option. */
export function rngConfig(parsed: ParsedOptions): RngConfig {
  const addresses = listenAddresses(parsed, { indexed: true });
  const periodMs = parseInteger(String(parsed.period), {
    option: "period",
    min: 1,
    max: MAX_PERIOD_MS,
  });
  let maxBytesPerInstance: number | null = null;
  if (typeof parsed["max-bytes"] === "string") {
    const total = parseInteger(parsed["max-bytes"], { option: "max-bytes", min: 1 });
    // Upstream divides the budget among the sockets (integer division).
    maxBytesPerInstance = Math.floor(total / addresses.length);
    if (maxBytesPerInstance === 0) {
      throw new UsageError(
        `invalid value '${total}' for --max-bytes: less than one byte per socket ` +
          `(--socket-count ${addresses.length})`,
      );
    }
  }
  const source = String(parsed["rng-source"]);
  if (source === "") throw new UsageError("invalid value '' for --rng-source: empty path");
  const logLevel = logLevelOption(parsed);
  return {
    addresses,
    source,
    periodMs,
    maxBytesPerInstance,
    logLevel,
    pollMicros: pollMicros(parsed),
  };
}

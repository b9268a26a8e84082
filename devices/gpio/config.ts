/**
 * The command line of `vhost-device-gpio`, shaped like rust-vmm's (clap) and
 * parsed into a {@link GpioConfig} the daemon runs from.
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
  pollMicros,
  SOCKET_OPTIONS,
  UsageError,
} from "../../core/cli.ts";
import type { ListenAddress } from "../../core/daemon.ts";
import type { Level } from "../../core/log.ts";
import { MAX_SIM_LINES } from "./sim_chip.ts";

/** The option definitions: parser, `--help` and man page. */
export const GPIO_COMMAND: CommandSpec = {
  name: "vhost-device-gpio",
  about: "A virtio GPIO device (virtio-gpio) served over vhost-user",
  backendType: "gpio",
  options: [
    ...SOCKET_OPTIONS,
    {
      long: "device-list",
      short: "l",
      kind: "value",
      valueName: "DEVICE_LIST",
      required: true,
      help: "One chip per socket, colon-separated: N serves /dev/gpiochipN, sN a simulated " +
        'chip of N lines (e.g. "-c 4 -l 3:s4:6:s1")',
    },
    {
      long: "sim-control",
      kind: "value",
      valueName: "PATH",
      help: "Unix socket to drive the simulated chips' input lines from outside " +
        "(commands: set <chip> <line> <0|1>, get <chip> <line>, lines <chip>)",
    },
    ...LOOP_OPTIONS,
    ...LOG_OPTIONS,
  ],
};

/** One entry of `--device-list`. */
export type ChipSpec =
  | { readonly kind: "real"; readonly number: number; readonly path: string }
  | { readonly kind: "simulated"; readonly lines: number };

/** What the daemon runs. */
export interface GpioConfig {
  /** One address per instance: `<socket-path>0 … <socket-path>N-1`, or an inherited fd. */
  readonly addresses: readonly ListenAddress[];
  /** The chip served on each address, in order. */
  readonly chips: readonly ChipSpec[];
  /** `--sim-control`, if given. */
  readonly simControl: string | null;
  /** `--log-level`, if given. */
  readonly logLevel: Level | undefined;
  /** `--poll-us`: busy-poll after serving (0: never). */
  readonly pollMicros: number;
}

/**
 * Parses `--device-list` (`[s]<N1>[:[s]<N2>]…`). Throws {@link UsageError}
 * for a malformed entry or a chip named twice.
 */
export function parseDeviceList(text: string): ChipSpec[] {
  const chips: ChipSpec[] = [];
  const seen = new Set<number>();
  for (const entry of text.split(":")) {
    const match = /^(s?)([0-9]+)$/.exec(entry.trim());
    if (!match) {
      throw new UsageError(
        `invalid value '${text}' for --device-list: '${entry}' is not N (/dev/gpiochipN) or sN (a simulated chip of N lines)`,
      );
    }
    const number = Number(match[2]);
    if (match[1] === "s") {
      if (number < 1 || number > MAX_SIM_LINES) {
        throw new UsageError(
          `invalid value '${text}' for --device-list: a simulated chip has 1 to ${MAX_SIM_LINES} lines, not ${number}`,
        );
      }
      chips.push({ kind: "simulated", lines: number });
      continue;
    }
    if (!Number.isSafeInteger(number)) {
      throw new UsageError(`invalid value '${text}' for --device-list: '${entry}' is too large`);
    }
    if (seen.has(number)) {
      throw new UsageError(
        `invalid value '${text}' for --device-list: /dev/gpiochip${number} is listed twice`,
      );
    }
    seen.add(number);
    chips.push({ kind: "real", number, path: `/dev/gpiochip${number}` });
  }
  return chips;
}

/** Parses options into a config. Throws {@link UsageError} naming the bad option. */
export function gpioConfig(parsed: ParsedOptions): GpioConfig {
  const addresses = listenAddresses(parsed, { indexed: true });
  const chips = parseDeviceList(String(parsed["device-list"]));
  if (chips.length !== addresses.length) {
    throw new UsageError(
      `--device-list names ${chips.length} chip(s) for ${addresses.length} socket(s): ` +
        "give one per socket (--socket-count)",
    );
  }
  const control = parsed["sim-control"];
  if (control === "") throw new UsageError("invalid value '' for --sim-control: empty path");
  if (typeof control === "string" && !chips.some((chip) => chip.kind === "simulated")) {
    throw new UsageError("--sim-control needs a simulated chip (sN) in --device-list");
  }
  const logLevel = logLevelOption(parsed);
  return {
    addresses,
    chips,
    simControl: typeof control === "string" ? control : null,
    logLevel,
    pollMicros: pollMicros(parsed),
  };
}

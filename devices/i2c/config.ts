/**
 * The command line of `vhost-device-i2c`, shaped like rust-vmm's (clap):
 * `-s/--socket-path`, `-c/--socket-count`, `-l/--device-list
 * <bus>:<addr>[:<addr>…][,<bus>:…]`, parsed into an {@link I2cConfig}.
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
import { SIMULATED_KINDS, type SimulatedKind } from "./simulated.ts";

/** Highest 7-bit address (upstream's check lets 128 through). */
export const MAX_ADDRESS = 0x7f;
/** Where Linux lists I2C adapters and clients. */
export const SYSFS_I2C_DEVICES = "/sys/bus/i2c/devices";

/** The option definitions: parser, `--help` and man page. */
export const I2C_COMMAND: CommandSpec = {
  name: "vhost-device-i2c",
  about: "A virtio I2C adapter (virtio-i2c) served over vhost-user, passing host I2C clients",
  backendType: "i2c",
  options: [
    ...SOCKET_OPTIONS,
    {
      long: "device-list",
      short: "l",
      kind: "value",
      valueName: "DEVICE_LIST",
      help: "Host clients to pass: <bus>:<addr>[:<addr>...][,<bus>:...]; <bus> is N of " +
        "/dev/i2c-N or an adapter name from /sys/bus/i2c/devices/i2c-N/name; addresses " +
        "decimal or 0x hex, e.g. 1:32:0x51,SMBus stub driver:80",
    },
    {
      long: "simulated-device",
      kind: "value",
      multiple: true,
      valueName: "KIND@ADDR",
      help: "Test and development aid: a simulated client on an in-process adapter, " +
        "eeprom (24C02-like) or regs (register file), e.g. eeprom@0x50; repeatable",
    },
    ...LOOP_OPTIONS,
    ...LOG_OPTIONS,
  ],
};

/** A host adapter and the client addresses passed from it. */
export interface AdapterConfig {
  /** `/dev/i2c-N`. */
  readonly path: string;
  /** 7-bit client addresses. */
  readonly addresses: readonly number[];
}

/** A simulated client. */
export interface SimulatedConfig {
  /** Its kind. */
  readonly kind: SimulatedKind;
  /** Its 7-bit address. */
  readonly address: number;
}

/** What the daemon runs. */
export interface I2cConfig {
  /** One address per instance: `<socket-path>0 … <socket-path>N-1`, or an inherited fd. */
  readonly addresses: readonly ListenAddress[];
  /** Host adapters from `--device-list`. */
  readonly adapters: readonly AdapterConfig[];
  /** Simulated clients from `--simulated-device`. */
  readonly simulated: readonly SimulatedConfig[];
  /** `--log-level`, if given. */
  readonly logLevel: Level | undefined;
  /** `--poll-us`. */
  readonly pollMicros: number;
}

/** Finds adapter numbers by name; replaceable in tests. */
export type AdapterLookup = (name: string) => number[];

/** Adapters whose sysfs `name` (trimmed) is `name`, from `root` (default {@link SYSFS_I2C_DEVICES}). */
export function adaptersNamed(name: string, root: string = SYSFS_I2C_DEVICES): number[] {
  const found: number[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return found;
  }
  for (const entry of entries) {
    const match = /^i2c-(\d+)$/.exec(entry.name);
    if (!match) continue;
    try {
      if (Deno.readTextFileSync(`${root}/${entry.name}/name`).trim() === name) {
        found.push(Number(match[1]));
      }
    } catch {
      // An adapter going away while we look: not a match.
    }
  }
  return found.sort((a, b) => a - b);
}

/** Parses a 7-bit address: decimal as upstream, or `0x` hex. */
export function parseAddress(text: string, context: string): number {
  const value = /^[0-9]+$/.test(text)
    ? Number(text)
    : /^0x[0-9a-f]+$/i.test(text)
    ? Number(text)
    : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`invalid address '${text}' in ${context}: not a number`);
  }
  if (value > MAX_ADDRESS) {
    throw new UsageError(
      `invalid address '${text}' in ${context}: 7-bit addresses go up to 127 (0x7f)`,
    );
  }
  return value;
}

/**
 * Parses `--device-list`. Refused: an empty item, an adapter without
 * addresses, a name matching no adapter or several, the same adapter twice,
 * the same address twice (on one adapter or across adapters: the guest sees
 * one bus).
 */
export function parseDeviceList(list: string, lookup: AdapterLookup): AdapterConfig[] {
  const adapters: AdapterConfig[] = [];
  const seenAddresses = new Map<number, string>();
  const seenBuses = new Set<number>();
  for (const item of list.split(",")) {
    const [bus, ...addressTexts] = item.split(":");
    if (bus.trim() === "") throw new UsageError(`invalid --device-list item '${item}': no adapter`);
    if (addressTexts.length === 0) {
      throw new UsageError(`invalid --device-list item '${item}': no client address`);
    }
    let number: number;
    if (/^[0-9]+$/.test(bus)) number = Number(bus);
    else {
      const matches = lookup(bus.trim());
      if (matches.length === 0) {
        throw new UsageError(`--device-list: no I2C adapter is named '${bus.trim()}'`);
      }
      if (matches.length > 1) {
        throw new UsageError(
          `--device-list: adapter name '${bus.trim()}' is ambiguous (i2c-${
            matches.join(", i2c-")
          })`,
        );
      }
      number = matches[0];
    }
    if (!Number.isSafeInteger(number) || number > 0xffff_ffff) {
      throw new UsageError(`invalid adapter '${bus}' in --device-list`);
    }
    if (seenBuses.has(number)) {
      throw new UsageError(`--device-list: adapter i2c-${number} is listed twice`);
    }
    seenBuses.add(number);
    const addresses: number[] = [];
    for (const text of addressTexts) {
      const address = parseAddress(text, "--device-list");
      const previous = seenAddresses.get(address);
      if (previous !== undefined) {
        throw new UsageError(
          `--device-list: address ${address} (0x${address.toString(16)}) is given twice ` +
            `(${previous} and i2c-${number})`,
        );
      }
      seenAddresses.set(address, `i2c-${number}`);
      addresses.push(address);
    }
    adapters.push({ path: `/dev/i2c-${number}`, addresses });
  }
  return adapters;
}

/** Parses `--simulated-device KIND@ADDR`. */
export function parseSimulated(text: string): SimulatedConfig {
  const [kind, address, ...rest] = text.split("@");
  if (address === undefined || rest.length > 0) {
    throw new UsageError(`invalid value '${text}' for --simulated-device: expected KIND@ADDR`);
  }
  if (!(SIMULATED_KINDS as readonly string[]).includes(kind)) {
    throw new UsageError(
      `invalid value '${text}' for --simulated-device: kind must be ${
        SIMULATED_KINDS.join(" or ")
      }`,
    );
  }
  return { kind: kind as SimulatedKind, address: parseAddress(address, "--simulated-device") };
}

/** Parses options into a config. Throws {@link UsageError} naming the bad option. */
export function i2cConfig(parsed: ParsedOptions, lookup: AdapterLookup = adaptersNamed): I2cConfig {
  const addresses = listenAddresses(parsed, { indexed: true });
  const list = parsed["device-list"];
  const simulatedTexts = (parsed["simulated-device"] ?? []) as string[];
  if (typeof list !== "string" && simulatedTexts.length === 0) {
    throw new UsageError("the option --device-list is required");
  }
  const adapters = typeof list === "string" ? parseDeviceList(list, lookup) : [];
  const simulated = simulatedTexts.map(parseSimulated);
  const taken = new Set(adapters.flatMap((a) => a.addresses));
  for (const { address } of simulated) {
    if (taken.has(address)) {
      throw new UsageError(
        `--simulated-device: address ${address} (0x${address.toString(16)}) is already used`,
      );
    }
    taken.add(address);
  }
  const logLevel = logLevelOption(parsed);
  return {
    addresses,
    adapters,
    simulated,
    logLevel,
    pollMicros: pollMicros(parsed),
  };
}

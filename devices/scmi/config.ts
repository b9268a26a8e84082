/**
 * The command line of `vhost-device-scmi`, shaped like rust-vmm's (clap):
 * one socket (`-s`, not suffixed), `-d/--device ID[,PROPERTY=VALUE…]`
 * (repeatable) and `--help-devices`, parsed into a {@link ScmiConfig}.
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
import { MAX_NAME_LENGTH } from "./sensor.ts";

/** One device kind: its properties and help. */
export interface DeviceKind {
  /** The id given to `--device`. */
  readonly id: string;
  /** One line. */
  readonly summary: string;
  /** Properties that must be given. */
  readonly required: readonly string[];
  /** Properties that may be given. */
  readonly optional: readonly string[];
  /** One line per property. */
  readonly propertyHelp: readonly string[];
}

/** The device kinds, as upstream. */
export const DEVICE_KINDS: readonly DeviceKind[] = [
  {
    id: "fake",
    summary: "fake accelerometer: a 3-axis sensor whose values change on every read",
    required: [],
    optional: ["name"],
    propertyHelp: [`name: an optional name of the sensor, max. ${MAX_NAME_LENGTH} characters`],
  },
  {
    id: "iio",
    summary: "industrial I/O sensor: a channel of a Linux IIO device, read from sysfs",
    required: ["path", "channel"],
    optional: ["name"],
    propertyHelp: [
      "path: path to the device directory (e.g. /sys/bus/iio/devices/iio:device0)",
      "channel: prefix of the channel files (e.g. in_accel); one of in_accel, in_anglvel, " +
      "in_current, in_illuminance, in_magn, in_pressure, in_temp, in_voltage",
      `name: an optional name of the sensor, max. ${MAX_NAME_LENGTH} characters`,
    ],
  },
];

/** `--help-devices` text. */
export function devicesHelp(): string {
  const lines = ["Available devices:"];
  for (const kind of DEVICE_KINDS) {
    lines.push("", `- ${kind.id}: ${kind.summary}`, "  Parameters:");
    for (const help of kind.propertyHelp) lines.push(`  - ${help}`);
  }
  lines.push(
    "",
    "Device specification example:",
    "--device iio,path=/sys/bus/iio/devices/iio:device0,channel=in_accel",
    "",
  );
  return lines.join("\n");
}

/** The option definitions: parser, `--help` and man page. */
export const SCMI_COMMAND: CommandSpec = {
  name: "vhost-device-scmi",
  about: "A virtio SCMI device (sensors over Arm's System Control and Management Interface) " +
    "served over vhost-user",
  backendType: "scmi",
  options: [
    // One socket, not suffixed: no --socket-count, as upstream.
    ...SOCKET_OPTIONS.filter((o) => o.long !== "socket-count"),
    {
      long: "device",
      short: "d",
      kind: "value",
      multiple: true,
      valueName: "ID[,PROPERTY=VALUE...]",
      help: "A sensor to offer (repeatable), e.g. fake,name=acc0; see --help-devices",
    },
    {
      long: "help-devices",
      kind: "flag",
      help: "Print the device kinds and their properties, and exit",
    },
    ...LOOP_OPTIONS,
    ...LOG_OPTIONS,
  ],
};

/** One `--device` argument, checked against its kind. */
export interface DeviceSpec {
  /** `fake` or `iio`. */
  readonly id: string;
  /** Its properties. */
  readonly properties: ReadonlyMap<string, string>;
}

/** What the daemon runs. */
export type ScmiConfig =
  | { readonly helpDevices: true }
  | {
    readonly helpDevices: false;
    /** The one address to listen on. */
    readonly address: ListenAddress;
    /** The sensors, in id order. */
    readonly devices: readonly DeviceSpec[];
    /** `--log-level`, if given. */
    readonly logLevel: Level | undefined;
    /** `--poll-us`. */
    readonly pollMicros: number;
  };

/**
 * Parses one `ID[,PROPERTY=VALUE…]`. Throws {@link UsageError} naming the
 * unknown id, the malformed, unknown, repeated or missing property.
 */
export function parseDeviceSpec(text: string): DeviceSpec {
  const [id, ...parts] = text.split(",");
  const kind = DEVICE_KINDS.find((k) => k.id === id);
  if (!kind) {
    throw new UsageError(
      `invalid value '${text}' for --device: unknown device '${id}' (one of ${
        DEVICE_KINDS.map((k) => k.id).join(", ")
      }; see --help-devices)`,
    );
  }
  const properties = new Map<string, string>();
  for (const part of parts) {
    const equals = part.indexOf("=");
    if (equals <= 0) {
      throw new UsageError(
        `invalid value '${text}' for --device: '${part}' is not PROPERTY=VALUE`,
      );
    }
    const name = part.slice(0, equals);
    const value = part.slice(equals + 1);
    if (!kind.required.includes(name) && !kind.optional.includes(name)) {
      throw new UsageError(
        `invalid value '${text}' for --device: device ${id} has no property '${name}' ` +
          `(allowed: ${[...kind.required, ...kind.optional].join(", ")})`,
      );
    }
    if (properties.has(name)) {
      throw new UsageError(`invalid value '${text}' for --device: property '${name}' repeated`);
    }
    if (value === "") {
      throw new UsageError(`invalid value '${text}' for --device: property '${name}' is empty`);
    }
    if (name === "name" && value.length > MAX_NAME_LENGTH) {
      throw new UsageError(
        `invalid value '${text}' for --device: name '${value}' is longer than ` +
          `${MAX_NAME_LENGTH} characters`,
      );
    }
    properties.set(name, value);
  }
  const missing = kind.required.filter((name) => !properties.has(name));
  if (missing.length > 0) {
    throw new UsageError(
      `invalid value '${text}' for --device: device ${id} needs ${
        missing.map((m) => `'${m}'`).join(" and ")
      }`,
    );
  }
  return { id, properties };
}

/** Parses options into a config. Throws {@link UsageError} naming the bad option. */
export function scmiConfig(parsed: ParsedOptions): ScmiConfig {
  if (parsed["help-devices"] === true) {
    const others = Object.entries(parsed).filter(([name, value]) =>
      name !== "help-devices" && value !== undefined &&
      SCMI_COMMAND.options.find((o) => o.long === name)?.defaultValue !== value
    );
    if (others.length > 0) {
      throw new UsageError(`--help-devices cannot be used with --${others[0][0]}`);
    }
    return { helpDevices: true };
  }
  const address = listenAddresses(parsed, { indexed: false })[0];
  const given = parsed.device;
  const devices = (Array.isArray(given) ? given : []).map(parseDeviceSpec);
  const logLevel = logLevelOption(parsed);
  return {
    helpDevices: false,
    address,
    devices,
    logLevel,
    pollMicros: pollMicros(parsed),
  };
}

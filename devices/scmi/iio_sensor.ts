/**
 * The `iio` sensor: a channel of a Linux Industrial I/O device read from
 * sysfs (`<channel>_raw` or `<channel>_{x,y,z}_raw`, with `_scale` and
 * `_offset`), converted from IIO's units (Documentation/ABI/testing/
 * sysfs-bus-iio: value = (raw + offset) × scale, in e.g. m/s², milli °C,
 * mV, mA, kPa) to the SCMI unit and a power-of-ten multiplier (DEN0056
 * §4.7). The raw value is read on every request, asynchronously (on a
 * real device the read can wait for a conversion), so a vanished file is a
 * failed reading, not a crash; scale and offset are read once at start.
 *
 * @module
 */

import {
  MAX_EXPONENT,
  MAX_NAME_LENGTH,
  MIN_EXPONENT,
  type Sensor,
  type SensorAxis,
  SensorError,
  SensorType,
} from "./sensor.ts";

/** An IIO channel type upstream supports: its SCMI unit and IIO's unit as a power of ten of it. */
export interface ChannelType {
  /** sysfs prefix, e.g. `in_accel`. */
  readonly prefix: string;
  /** SCMI unit, one of {@link SensorType}. */
  readonly type: number;
  /** IIO's unit = 10^unitExponent SCMI units (e.g. -3: milli °C for °C). */
  readonly unitExponent: number;
}

/** The channel types, with IIO's units from sysfs-bus-iio. */
export const CHANNEL_TYPES: readonly ChannelType[] = [
  { prefix: "in_accel", type: SensorType.METERS_SEC_SQUARED, unitExponent: 0 },
  { prefix: "in_anglvel", type: SensorType.RADIANS_SEC, unitExponent: 0 },
  { prefix: "in_current", type: SensorType.AMPS, unitExponent: -3 },
  { prefix: "in_illuminance", type: SensorType.LUX, unitExponent: 0 },
  { prefix: "in_magn", type: SensorType.GAUSS, unitExponent: 0 },
  { prefix: "in_pressure", type: SensorType.PASCALS, unitExponent: 3 },
  { prefix: "in_temp", type: SensorType.DEGREES_C, unitExponent: -3 },
  { prefix: "in_voltage", type: SensorType.VOLTS, unitExponent: -3 },
];

/** The channel type of `channel` (e.g. `in_voltage0` is a voltage), or undefined. */
export function channelType(channel: string): ChannelType | undefined {
  return CHANNEL_TYPES.find((t) => channel === t.prefix || channel.startsWith(t.prefix));
}

/** An exact decimal: mantissa × 10^exponent. */
export interface Decimal {
  /** Integer digits. */
  readonly mantissa: bigint;
  /** Power of ten. */
  readonly exponent: number;
}

/** Parses a sysfs fixed-point number such as `0.000598`, `-273.15` or `1`; `null` if malformed. */
export function parseDecimal(text: string): Decimal | null {
  const match = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(text.trim());
  if (!match || (match[2] + (match[3] ?? "")).length === 0) return null;
  const fraction = match[3] ?? "";
  const mantissa = BigInt(`${match[1]}${match[2] || "0"}${fraction}`);
  return { mantissa, exponent: fraction.length === 0 ? 0 : -fraction.length };
}

/** How raw readings become SCMI values: value = (raw × rawFactor + offsetTerm) × scale, then shifted. */
export interface Conversion {
  /** The SCMI multiplier: values are in units of 10^exponent. */
  readonly exponent: number;
  /** Converts a raw IIO reading. */
  convert(raw: bigint): bigint;
}

const TEN = 10n;

function pow10(n: number): bigint {
  return TEN ** BigInt(n);
}

/** Integer division rounding half away from zero. */
function divRound(value: bigint, divisor: bigint): bigint {
  const half = divisor / 2n;
  return value >= 0n ? (value + half) / divisor : -((-value + half) / divisor);
}

/**
 * The exact conversion of `(raw + offset) × scale` IIO units to SCMI units
 * of 10^exponent, keeping every digit the files give unless the exponent
 * would leave the 5-bit field (then rounded or padded to fit).
 */
export function conversion(
  scale: Decimal,
  options: { offset: Decimal; unitExponent: number },
): Conversion {
  let scaleMantissa = scale.mantissa;
  let scaleExponent = scale.exponent;
  while (scaleMantissa !== 0n && scaleMantissa % TEN === 0n) {
    scaleMantissa /= TEN;
    scaleExponent++;
  }
  const base = Math.min(options.offset.exponent, 0);
  const rawFactor = pow10(-base);
  const offsetTerm = options.offset.mantissa * pow10(options.offset.exponent - base);
  let exponent = base + scaleExponent + options.unitExponent;
  let divisor = 1n;
  let multiplier = 1n;
  if (exponent < MIN_EXPONENT) {
    divisor = pow10(MIN_EXPONENT - exponent);
    exponent = MIN_EXPONENT;
  } else if (exponent > MAX_EXPONENT) {
    multiplier = pow10(exponent - MAX_EXPONENT);
    exponent = MAX_EXPONENT;
  }
  return {
    exponent,
    convert: (raw) =>
      divRound((raw * rawFactor + offsetTerm) * scaleMantissa * multiplier, divisor),
  };
}

/** Options of {@link IioSensor.open}. */
export interface IioSensorOptions {
  /** The IIO device directory, e.g. `/sys/bus/iio/devices/iio:device0`. */
  readonly path: string;
  /** The channel prefix, e.g. `in_accel` or `in_voltage0`. */
  readonly channel: string;
  /** Name reported to the guest; default the device's `name` file, else the channel. */
  readonly name?: string;
}

interface AxisSource {
  readonly rawFile: string;
  readonly conversion: Conversion;
}

/** An IIO channel as an SCMI sensor (scalar, or three axes x, y, z). */
export class IioSensor implements Sensor {
  readonly name: string;
  readonly type: number;
  readonly exponent: number;
  readonly axes: readonly SensorAxis[];
  readonly #sources: readonly AxisSource[];

  private constructor(
    fields: Pick<IioSensor, "name" | "type" | "exponent" | "axes">,
    sources: readonly AxisSource[],
  ) {
    this.name = fields.name;
    this.type = fields.type;
    this.exponent = fields.exponent;
    this.axes = fields.axes;
    this.#sources = sources;
  }

  /**
   * Opens the channel: finds its raw files and reads scale and offset.
   * Throws an Error naming the directory and file when the channel is not
   * there or not supported.
   */
  static open(options: IioSensorOptions): IioSensor {
    const { path, channel } = options;
    const kind = channelType(channel);
    if (!kind) {
      throw new Error(
        `iio channel '${channel}' is not supported (use one of ${
          CHANNEL_TYPES.map((t) => t.prefix).join(", ")
        })`,
      );
    }
    if (!isDirectory(path)) throw new Error(`iio device directory ${path} does not exist`);
    const name = (options.name ?? readOptional(`${path}/name`)?.trim() ?? channel)
      .slice(0, MAX_NAME_LENGTH);
    const source = (prefix: string): AxisSource => {
      const scaleText = readOptional(`${path}/${prefix}_scale`) ??
        readOptional(`${path}/${channel}_scale`) ?? readOptional(`${path}/${kind.prefix}_scale`);
      const offsetText = readOptional(`${path}/${prefix}_offset`) ??
        readOptional(`${path}/${channel}_offset`) ?? readOptional(`${path}/${kind.prefix}_offset`);
      const scale = scaleText === null ? { mantissa: 1n, exponent: 0 } : parseDecimal(scaleText);
      const offset = offsetText === null ? { mantissa: 0n, exponent: 0 } : parseDecimal(offsetText);
      if (!scale) throw new Error(`${path}: cannot parse the scale '${scaleText?.trim()}'`);
      if (!offset) throw new Error(`${path}: cannot parse the offset '${offsetText?.trim()}'`);
      return {
        rawFile: `${path}/${prefix}_raw`,
        conversion: conversion(scale, { offset, unitExponent: kind.unitExponent }),
      };
    };
    if (isFile(`${path}/${channel}_x_raw`)) {
      const sources = ["x", "y", "z"].map((axis) => {
        if (!isFile(`${path}/${channel}_${axis}_raw`)) {
          throw new Error(`${path}: ${channel}_x_raw exists but ${channel}_${axis}_raw does not`);
        }
        return source(`${channel}_${axis}`);
      });
      const short = channel.replace(/^in_/, "").slice(0, MAX_NAME_LENGTH - 2);
      const axes = sources.map((s, i) => ({
        name: `${short}_${"XYZ"[i]}`,
        type: kind.type,
        exponent: s.conversion.exponent,
      }));
      return new IioSensor({ name, type: SensorType.NONE, exponent: 0, axes }, sources);
    }
    if (!isFile(`${path}/${channel}_raw`)) {
      throw new Error(`${path}: neither ${channel}_raw nor ${channel}_x_raw exists`);
    }
    const scalar = source(channel);
    return new IioSensor(
      { name, type: kind.type, exponent: scalar.conversion.exponent, axes: [] },
      [scalar],
    );
  }

  read(): Promise<readonly bigint[]> {
    return Promise.all(this.#sources.map(async ({ rawFile, conversion }) => {
      let text: string;
      try {
        text = await Deno.readTextFile(rawFile);
      } catch (error) {
        throw new SensorError(
          `sensor '${this.name}': cannot read ${rawFile}: ${
            error instanceof Error ? error.message : error
          }`,
          { cause: error },
        );
      }
      const raw = /^\s*[+-]?\d+\s*$/.test(text) ? BigInt(text.trim()) : null;
      if (raw === null) {
        throw new SensorError(
          `sensor '${this.name}': ${rawFile} holds '${text.trim()}', not an integer`,
        );
      }
      return conversion.convert(raw);
    }));
  }
}

function readOptional(file: string): string | null {
  try {
    return Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new Error(`cannot read ${file}: ${error instanceof Error ? error.message : error}`);
  }
}

/** A readable non-directory: sysfs attributes are files; a test may use a FIFO. */
function isFile(file: string): boolean {
  try {
    return !Deno.statSync(file).isDirectory;
  } catch {
    return false;
  }
}

function isDirectory(dir: string): boolean {
  try {
    return Deno.statSync(dir).isDirectory;
  } catch {
    return false;
  }
}

/**
 * The host side of SCMI sensors: one interface for every kind (`fake`,
 * `iio`), values already in the units and power-of-ten scale the SCMI sensor
 * protocol reports (DEN0056 §4.7, the "sensor value multiplier").
 *
 * @module
 */

/** Sensor types (units), DEN0056 §4.7 table "Sensor type enumerations"; those used here. */
export const SensorType = {
  NONE: 0x0,
  UNSPECIFIED: 0x1,
  DEGREES_C: 0x2,
  VOLTS: 0x5,
  AMPS: 0x6,
  WATTS: 0x7,
  JOULES: 0x8,
  LUX: 0xd,
  GAUSS: 0x2d,
  PASCALS: 0x42,
  RADIANS_SEC: 0x57,
  METERS_SEC_SQUARED: 0x59,
} as const;

/** Smallest and largest sensor value multiplier: a 5-bit two's complement field. */
export const MIN_EXPONENT: number = -16;
/** See {@link MIN_EXPONENT}. */
export const MAX_EXPONENT = 15;
/** Longest sensor or axis name: a 16-byte NUL-terminated field. */
export const MAX_NAME_LENGTH = 15;

/** One axis of a multi-axis sensor. */
export interface SensorAxis {
  /** e.g. `acc_X`; Linux's scmi_iio reads the letter after the last `_` as the axis. */
  readonly name: string;
  /** Unit, one of {@link SensorType}. */
  readonly type: number;
  /** Power of ten the axis values are multiplied by. */
  readonly exponent: number;
}

/** A host sensor the platform reports to the guest. */
export interface Sensor {
  /** Name reported to the guest (at most {@link MAX_NAME_LENGTH} characters). */
  readonly name: string;
  /** Unit of a scalar sensor, one of {@link SensorType}; NONE for a multi-axis one. */
  readonly type: number;
  /** Power of ten a scalar sensor's value is multiplied by. */
  readonly exponent: number;
  /** Axes of a multi-axis sensor; empty for a scalar sensor. */
  readonly axes: readonly SensorAxis[];
  /**
   * Reads the current value: one per axis, or one for a scalar sensor.
   * Host I/O that may block (a sysfs read can wait for a conversion) returns
   * a promise, so the event loop keeps serving meanwhile. Throws (or
   * rejects with) {@link SensorError} when the host cannot read it.
   */
  read(): readonly bigint[] | Promise<readonly bigint[]>;
}

/** The host could not read a sensor (a file vanished, a value did not parse). */
export class SensorError extends Error {
  /** Describes the failure, naming the sensor and the file. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SensorError";
  }
}

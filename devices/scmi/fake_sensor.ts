/**
 * The `fake` sensor: a 3-axis accelerometer whose reading changes on every
 * read, as upstream's, so a guest can see live values without host hardware.
 *
 * @module
 */

import { type Sensor, type SensorAxis, SensorType } from "./sensor.ts";

/** Default name, as upstream. */
export const FAKE_DEFAULT_NAME = "fake";

/** Values are in mm/s² (multiplier 10^-3 m/s²). */
const EXPONENT = -3;

/** A fake accelerometer: x = n, y = n + 1000, z = n + 2000 on the n-th read (n from 1). */
export class FakeSensor implements Sensor {
  readonly name: string;
  readonly type: number = SensorType.NONE;
  readonly exponent = 0;
  readonly axes: readonly SensorAxis[] = ["X", "Y", "Z"].map((letter) => ({
    name: `acc_${letter}`,
    type: SensorType.METERS_SEC_SQUARED,
    exponent: EXPONENT,
  }));
  #reads = 0n;

  /** A fake accelerometer called `name`. */
  constructor(name: string = FAKE_DEFAULT_NAME) {
    this.name = name;
  }

  read(): readonly bigint[] {
    this.#reads++;
    return [this.#reads, this.#reads + 1000n, this.#reads + 2000n];
  }
}

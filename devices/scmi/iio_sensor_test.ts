// IIO sysfs channels in directories the test writes: units and scale
// converted for SCMI, vanished files, unsupported channels.
import assert from "node:assert/strict";
import { channelType, conversion, IioSensor, parseDecimal } from "./iio_sensor.ts";
import { SensorError, SensorType } from "./sensor.ts";
import { writeIioDevice } from "./testing.ts";

Deno.test("parseDecimal: sysfs fixed-point numbers, exactly", () => {
  assert.deepEqual(parseDecimal("0.000598\n"), { mantissa: 598n, exponent: -6 });
  assert.deepEqual(parseDecimal("-273.15"), { mantissa: -27315n, exponent: -2 });
  assert.deepEqual(parseDecimal("10"), { mantissa: 10n, exponent: 0 });
  assert.deepEqual(parseDecimal(".5"), { mantissa: 5n, exponent: -1 });
  for (const bad of ["", "abc", "1e3", "1.2.3", "-"]) assert.equal(parseDecimal(bad), null, bad);
});

Deno.test("conversion: (raw + offset) × scale in IIO units to SCMI units × 10^exponent", () => {
  const zero = { mantissa: 0n, exponent: 0 };
  // Temperature, scale 10 m°C: 2512 → 25120 m°C = 25.12 °C.
  let c = conversion({ mantissa: 10n, exponent: 0 }, { offset: zero, unitExponent: -3 });
  assert.equal(c.exponent, -2);
  assert.equal(c.convert(2512n), 2512n);
  // Voltage, scale 0.5 mV: 1234 → 617 mV = 6170 × 10^-4 V.
  c = conversion({ mantissa: 5n, exponent: -1 }, { offset: zero, unitExponent: -3 });
  assert.deepEqual([c.exponent, c.convert(1234n)], [-4, 6170n]);
  // Offset in raw units, fractional: (100 + -273.15) × 1 m°C.
  c = conversion({ mantissa: 1n, exponent: 0 }, {
    offset: { mantissa: -27315n, exponent: -2 },
    unitExponent: -3,
  });
  assert.deepEqual([c.exponent, c.convert(100n)], [-5, -17315n]);
  // Pressure in kPa: 0.001 kPa = 1 Pa.
  c = conversion({ mantissa: 1n, exponent: -3 }, { offset: zero, unitExponent: 3 });
  assert.deepEqual([c.exponent, c.convert(101325n)], [0, 101325n]);
  // An accelerometer's 0.000598205 m/s²: more digits than 10^-16 keeps, rounded.
  c = conversion({ mantissa: 598205n, exponent: -9 }, {
    offset: { mantissa: 5n, exponent: -10 },
    unitExponent: 0,
  });
  assert.equal(c.exponent, -16);
  assert.equal(c.convert(1000n), 5982050000002991n);
  // A huge scale is padded to the largest multiplier.
  c = conversion({ mantissa: 1n, exponent: 20 }, { offset: zero, unitExponent: 0 });
  assert.deepEqual([c.exponent, c.convert(2n)], [15, 200000n]);
});

Deno.test("channelType: the channel types upstream supports", () => {
  assert.equal(channelType("in_accel")?.type, SensorType.METERS_SEC_SQUARED);
  assert.equal(channelType("in_anglvel")?.type, SensorType.RADIANS_SEC);
  assert.equal(channelType("in_current0")?.type, SensorType.AMPS);
  assert.equal(channelType("in_illuminance")?.type, SensorType.LUX);
  assert.equal(channelType("in_magn")?.type, SensorType.GAUSS);
  assert.equal(channelType("in_pressure")?.type, SensorType.PASCALS);
  assert.equal(channelType("in_temp")?.type, SensorType.DEGREES_C);
  assert.equal(channelType("in_voltage3")?.type, SensorType.VOLTS);
  assert.equal(channelType("in_humidityrelative"), undefined);
});

Deno.test("IioSensor: scalar and 3-axis channels read live, vanished files are SensorErrors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iio-" });
  try {
    writeIioDevice(`${dir}/dev0`, {
      name: "bmp280",
      in_temp_raw: "2512",
      in_temp_scale: "10",
      in_voltage0_raw: "1234",
      in_voltage_scale: "0.5",
      in_accel_x_raw: "100",
      in_accel_y_raw: "-200",
      in_accel_z_raw: "300",
      in_accel_scale: "0.01",
      in_accel_z_offset: "1",
    });
    const temp = IioSensor.open({ path: `${dir}/dev0`, channel: "in_temp" });
    assert.deepEqual([temp.name, temp.type, temp.exponent, temp.axes], ["bmp280", 2, -2, []]);
    assert.deepEqual(await temp.read(), [2512n]);
    Deno.writeTextFileSync(`${dir}/dev0/in_temp_raw`, "2600\n");
    assert.deepEqual(await temp.read(), [2600n]);

    const volts = IioSensor.open({ path: `${dir}/dev0`, channel: "in_voltage0", name: "vdd" });
    assert.deepEqual([volts.name, volts.type, volts.exponent], ["vdd", SensorType.VOLTS, -4]);
    assert.deepEqual(await volts.read(), [6170n]);

    const accel = IioSensor.open({ path: `${dir}/dev0`, channel: "in_accel" });
    assert.equal(accel.type, SensorType.NONE);
    assert.deepEqual(accel.axes.map((a) => [a.name, a.type, a.exponent]), [
      ["accel_X", SensorType.METERS_SEC_SQUARED, -2],
      ["accel_Y", SensorType.METERS_SEC_SQUARED, -2],
      ["accel_Z", SensorType.METERS_SEC_SQUARED, -2],
    ]);
    assert.deepEqual(await accel.read(), [100n, -200n, 301n]);

    Deno.removeSync(`${dir}/dev0/in_temp_raw`);
    await assert.rejects(
      () => temp.read(),
      (e) => e instanceof SensorError && /in_temp_raw/.test(e.message),
    );
    Deno.writeTextFileSync(`${dir}/dev0/in_temp_raw`, "garbage\n");
    await assert.rejects(
      () => temp.read(),
      (e) => e instanceof SensorError && /not an integer/.test(e.message),
    );

    assert.throws(
      () => IioSensor.open({ path: `${dir}/nope`, channel: "in_temp" }),
      /does not exist/,
    );
    assert.throws(() => IioSensor.open({ path: `${dir}/dev0`, channel: "in_magn" }), /neither/);
    assert.throws(
      () => IioSensor.open({ path: `${dir}/dev0`, channel: "in_foo" }),
      /not supported/,
    );
    writeIioDevice(`${dir}/dev1`, { in_magn_x_raw: "1" });
    assert.throws(
      () => IioSensor.open({ path: `${dir}/dev1`, channel: "in_magn" }),
      /in_magn_y_raw/,
    );
    writeIioDevice(`${dir}/dev2`, { in_temp_raw: "1", in_temp_scale: "x" });
    assert.throws(() => IioSensor.open({ path: `${dir}/dev2`, channel: "in_temp" }), /scale/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// The fake accelerometer.
import assert from "node:assert/strict";
import { FakeSensor } from "./fake_sensor.ts";
import { SensorType } from "./sensor.ts";

Deno.test("FakeSensor: three m/s² axes named for scmi_iio, values changing each read", () => {
  const sensor = new FakeSensor();
  assert.equal(sensor.name, "fake");
  assert.deepEqual(sensor.axes.map((a) => a.name), ["acc_X", "acc_Y", "acc_Z"]);
  assert.ok(
    sensor.axes.every((a) => a.type === SensorType.METERS_SEC_SQUARED && a.exponent === -3),
  );
  assert.deepEqual(sensor.read(), [1n, 1001n, 2001n]);
  assert.deepEqual(sensor.read(), [2n, 1002n, 2002n]);
  assert.equal(new FakeSensor("acc0").name, "acc0");
});

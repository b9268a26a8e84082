import assert from "node:assert/strict";
import { type I2cAdapter, I2cBus } from "./adapter.ts";

function adapter(name: string, addresses: number[], closed: string[]): I2cAdapter {
  return {
    name,
    addresses,
    blocking: false,
    transfer: () => ({ completed: 0 }),
    close: () => closed.push(name),
  };
}

Deno.test("i2c bus: addresses map to their adapter; one address on two adapters is refused", () => {
  const closed: string[] = [];
  const a = adapter("/dev/i2c-1", [0x50, 0x20], closed);
  const b = adapter("simulated", [0x51], closed);
  const bus = new I2cBus([a, b]);
  assert.equal(bus.adapterFor(0x20), a);
  assert.equal(bus.adapterFor(0x51), b);
  assert.equal(bus.adapterFor(0x52), undefined);
  assert.deepEqual(bus.addresses, [0x20, 0x50, 0x51]);
  bus.close();
  assert.deepEqual(closed, ["/dev/i2c-1", "simulated"]);
  assert.throws(
    () => new I2cBus([a, adapter("simulated", [0x50], closed)]),
    /address 0x50 is on both \/dev\/i2c-1 and simulated/,
  );
});

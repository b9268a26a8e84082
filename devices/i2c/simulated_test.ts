import assert from "node:assert/strict";
import {
  Eeprom24c02,
  REGISTER_ID,
  RegisterFile,
  SimulatedAdapter,
  type SimulatedClient,
} from "./simulated.ts";

Deno.test("simulated eeprom: byte address, page writes wrap in 8 bytes, sequential reads wrap at 256", () => {
  const eeprom = new Eeprom24c02();
  assert.ok(eeprom.memory.every((b) => b === 0xff));
  assert.ok(eeprom.write(Uint8Array.of(0x10, 1, 2, 3)));
  const out = new Uint8Array(4);
  eeprom.write(Uint8Array.of(0x10));
  eeprom.read(out);
  assert.deepEqual(out, Uint8Array.of(1, 2, 3, 0xff));
  // 10 bytes from 0x1c: 0x1c..0x1f, then wrap to 0x18..0x1d of the same page.
  eeprom.write(Uint8Array.of(0x1c, ...Array.from({ length: 10 }, (_, i) => 0xa0 + i)));
  assert.deepEqual(
    eeprom.memory.subarray(0x18, 0x20),
    Uint8Array.of(0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xa2, 0xa3),
  );
  eeprom.write(Uint8Array.of(0xfe));
  const wrap = new Uint8Array(3);
  eeprom.read(wrap);
  assert.deepEqual(wrap, Uint8Array.of(0xff, 0xff, 0xff));
  // The counter continues after the last read.
  const next = new Uint8Array(1);
  eeprom.read(next);
  assert.equal(next[0], 0xff);
  eeprom.write(Uint8Array.of(0x10));
  eeprom.read(next);
  assert.equal(next[0], 1);
});

Deno.test("simulated register file: auto-increment, read-only id refused", () => {
  const regs = new RegisterFile();
  assert.ok(regs.write(Uint8Array.of(0x20, 0x34, 0x12)));
  assert.deepEqual(regs.registers.subarray(0x20, 0x22), Uint8Array.of(0x34, 0x12));
  const out = new Uint8Array(2);
  regs.write(Uint8Array.of(0xfe));
  regs.read(out);
  assert.deepEqual(out, Uint8Array.of(REGISTER_ID[0xfe], REGISTER_ID[0xff]));
  assert.equal(regs.write(Uint8Array.of(0xfd, 1, 2)), false);
  assert.equal(regs.registers[0xfd], 1);
  assert.equal(regs.registers[0xfe], REGISTER_ID[0xfe]);
});

Deno.test("simulated adapter: combined transfers stop at the first refused message", () => {
  const adapter = new SimulatedAdapter(
    new Map<number, SimulatedClient>([[0x50, new Eeprom24c02()], [0x20, new RegisterFile()]]),
  );
  assert.deepEqual(adapter.addresses.sort(), [0x20, 0x50]);
  const read = new Uint8Array(2);
  const ok = adapter.transfer([
    { address: 0x50, read: false, data: Uint8Array.of(0, 7, 8) },
    { address: 0x50, read: false, data: Uint8Array.of(0) },
    { address: 0x50, read: true, data: read },
  ]);
  assert.deepEqual(ok, { completed: 3 });
  assert.deepEqual(read, Uint8Array.of(7, 8));
  const refused = adapter.transfer([
    { address: 0x20, read: false, data: Uint8Array.of(0) },
    { address: 0x21, read: true, data: read },
    { address: 0x20, read: true, data: read },
  ]);
  assert.equal(refused.completed, 1);
  assert.equal(refused.nack, true);
  assert.match(refused.error ?? "", /0x21 refused message 1/);
});

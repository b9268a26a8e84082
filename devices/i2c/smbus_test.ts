import assert from "node:assert/strict";
import { I2cFunc as F, SmbusSize as S } from "../../ffi/i2c_dev.ts";
import type { I2cMessage } from "./adapter.ts";
import { smbusCall, type SmbusCommand, smbusReply, translateToSmbus } from "./smbus.ts";

const W = (...bytes: number[]): I2cMessage => ({
  address: 0x50,
  read: false,
  data: Uint8Array.from(bytes),
});
const R = (length: number, address = 0x50): I2cMessage => ({
  address,
  read: true,
  data: new Uint8Array(length),
});
const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

/** Every SMBus functionality bit. */
const ALL = 0x0fff_0000 | F.I2C_FUNC_SMBUS_PROC_CALL;
/** i2c-stub's default mask (guest-devices: quick, byte, byte data, word data, I2C block). */
const STUB = 0x0c7f_0000;

function command(messages: I2cMessage[], funcs: number): SmbusCommand | string {
  const t = translateToSmbus(messages, funcs);
  return t.ok ? t.command : t.reason;
}

Deno.test("smbus: the translation table, with every functionality bit", () => {
  const table: [string, I2cMessage[], SmbusCommand][] = [
    ["quick write", [W()], { kind: "quick", read: false }],
    ["quick read", [R(0)], { kind: "quick", read: true }],
    ["send byte", [W(0x12)], { kind: "send-byte", value: 0x12 }],
    ["receive byte", [R(1)], { kind: "receive-byte" }],
    ["write byte data", [W(0x10, 0xab)], { kind: "write-byte-data", command: 0x10, value: 0xab }],
    ["write word data", [W(0x10, 0x34, 0x12)], {
      kind: "write-word-data",
      command: 0x10,
      value: 0x1234,
    }],
    ["read byte data", [W(0x10), R(1)], { kind: "read-byte-data", command: 0x10 }],
    ["read word data", [W(0x10), R(2)], { kind: "read-word-data", command: 0x10 }],
    ["process call", [W(0x10, 0x34, 0x12), R(2)], {
      kind: "process-call",
      command: 0x10,
      value: 0x1234,
    }],
    ["write I2C block", [W(0x10, 1, 2, 3, 4)], {
      kind: "write-i2c-block",
      command: 0x10,
      data: Uint8Array.of(1, 2, 3, 4),
    }],
    ["read I2C block", [W(0x10), R(8)], { kind: "read-i2c-block", command: 0x10, length: 8 }],
    ["read I2C block of 32", [W(0x10), R(32)], {
      kind: "read-i2c-block",
      command: 0x10,
      length: 32,
    }],
  ];
  for (const [name, messages, expected] of table) {
    assert.deepEqual(command(messages, ALL), expected, name);
  }
});

Deno.test("smbus: SMBus block transfers when the adapter lacks I2C block ones", () => {
  const block = ALL & ~(F.I2C_FUNC_SMBUS_READ_I2C_BLOCK | F.I2C_FUNC_SMBUS_WRITE_I2C_BLOCK);
  // command, count, data: an SMBus block write.
  assert.deepEqual(command([W(0x10, 3, 7, 8, 9)], block), {
    kind: "write-block-data",
    command: 0x10,
    data: Uint8Array.of(7, 8, 9),
  });
  // A count that does not match the bytes is no SMBus block write.
  assert.match(command([W(0x10, 9, 7, 8, 9)], block) as string, /no SMBus write of 5 bytes/);
  assert.deepEqual(command([W(0x10), R(33)], block), {
    kind: "read-block-data",
    command: 0x10,
    length: 33,
  });
  assert.match(command([W(0x10), R(34)], block) as string, /no SMBus read of 34 bytes/);
});

Deno.test("smbus: byte/word data fall back to I2C block shapes, and the reverse is refused", () => {
  const noByteData = ALL & ~F.I2C_FUNC_SMBUS_WRITE_BYTE_DATA & ~F.I2C_FUNC_SMBUS_READ_WORD_DATA;
  assert.deepEqual(command([W(0x10, 0xab)], noByteData), {
    kind: "write-i2c-block",
    command: 0x10,
    data: Uint8Array.of(0xab),
  });
  assert.deepEqual(command([W(0x10), R(2)], noByteData), {
    kind: "read-i2c-block",
    command: 0x10,
    length: 2,
  });
  const onlyByteData = F.I2C_FUNC_SMBUS_READ_BYTE_DATA | F.I2C_FUNC_SMBUS_WRITE_BYTE_DATA;
  assert.match(command([W(0x10, 1, 2)], onlyByteData) as string, /no SMBus write of 3 bytes/);
  assert.match(command([W()], onlyByteData) as string, /no SMBus quick/);
  assert.match(command([R(1)], onlyByteData) as string, /no SMBus receive byte/);
  assert.match(command([W(1)], onlyByteData) as string, /no SMBus send byte/);
  assert.match(command([W(0x10, 1, 2), R(2)], STUB) as string, /no SMBus process call/);
});

Deno.test("smbus: shapes SMBus cannot put on the wire are refused, whatever the mask", () => {
  const refused: [I2cMessage[], RegExp][] = [
    [[], /empty transfer/],
    [[W(1), R(1), R(1)], /3 messages/],
    [[W(1), R(1, 0x51)], /different addresses/],
    [[R(1), W(1)], /other than write-then-read/],
    [[W(1), W(1)], /other than write-then-read/],
    [[R(4)], /4-byte read without a command byte/],
    [[W(1, 2), R(1)], /2-byte write before a read/],
    [[W(1), R(0)], /zero-length read/],
    [[W(...range(34))], /no SMBus write of 34 bytes/],
    [[W(1), R(40)], /no SMBus read of 40 bytes/],
  ];
  for (const [messages, pattern] of refused) {
    assert.match(command(messages, ALL) as string, pattern);
  }
});

Deno.test("smbus: ioctl arguments and replies", () => {
  let call = smbusCall({ kind: "quick", read: true });
  assert.deepEqual([call.readWrite, call.size], [1, S.I2C_SMBUS_QUICK]);
  call = smbusCall({ kind: "send-byte", value: 0x42 });
  assert.deepEqual([call.readWrite, call.command, call.size], [0, 0x42, S.I2C_SMBUS_BYTE]);
  call = smbusCall({ kind: "write-word-data", command: 7, value: 0xbeef });
  assert.deepEqual([call.readWrite, call.command, call.size, call.data[0], call.data[1]], [
    0,
    7,
    S.I2C_SMBUS_WORD_DATA,
    0xef,
    0xbe,
  ]);
  call = smbusCall({ kind: "process-call", command: 7, value: 0x0102 });
  assert.deepEqual([call.size, call.data[0], call.data[1]], [S.I2C_SMBUS_PROC_CALL, 2, 1]);
  call = smbusCall({ kind: "write-i2c-block", command: 9, data: Uint8Array.of(5, 6) });
  assert.deepEqual([call.size, ...call.data.subarray(0, 3)], [S.I2C_SMBUS_I2C_BLOCK_DATA, 2, 5, 6]);
  call = smbusCall({ kind: "write-block-data", command: 9, data: Uint8Array.of(5, 6) });
  assert.deepEqual([call.size, ...call.data.subarray(0, 3)], [S.I2C_SMBUS_BLOCK_DATA, 2, 5, 6]);
  call = smbusCall({ kind: "read-i2c-block", command: 9, length: 4 });
  assert.deepEqual([call.readWrite, call.size, call.data[0]], [1, S.I2C_SMBUS_I2C_BLOCK_DATA, 4]);
  assert.equal(smbusCall({ kind: "read-block-data", command: 1, length: 3 }).size, 5);

  const answer = Uint8Array.of(4, 10, 11, 12, 13, 0, 0);
  assert.deepEqual(smbusReply({ kind: "read-byte-data", command: 0 }, answer), Uint8Array.of(4));
  assert.deepEqual(
    smbusReply({ kind: "read-word-data", command: 0 }, answer),
    Uint8Array.of(4, 10),
  );
  assert.deepEqual(
    smbusReply({ kind: "read-i2c-block", command: 0, length: 4 }, answer),
    Uint8Array.of(10, 11, 12, 13),
  );
  // A block answer: count then data; reading fewer bytes is an early stop, more is unknowable.
  assert.deepEqual(
    smbusReply({ kind: "read-block-data", command: 0, length: 5 }, answer),
    Uint8Array.of(4, 10, 11, 12, 13),
  );
  assert.deepEqual(
    smbusReply({ kind: "read-block-data", command: 0, length: 2 }, answer),
    Uint8Array.of(4, 10),
  );
  assert.equal(smbusReply({ kind: "read-block-data", command: 0, length: 6 }, answer), null);
  assert.equal(smbusReply({ kind: "quick", read: false }, answer), null);
});

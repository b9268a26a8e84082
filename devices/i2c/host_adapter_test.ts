// HostAdapter against a stand-in for the kernel's i2c-dev calls (this machine
// has no I2C adapter; tests/e2e/i2c_stub_test.ts runs the real ioctls against
// i2c-stub in a guest).
import assert from "node:assert/strict";
import { I2cFunc as F, SmbusSize as S, SyscallError } from "../../ffi/mod.ts";
import type { I2cMessage } from "./adapter.ts";
import { HostAdapter, type I2cDevCalls } from "./host_adapter.ts";

/** Records calls; answers SMBus reads from `registers`. */
function fakeKernel(funcs: number, options: { busy?: number[]; fail?: number } = {}) {
  const log: string[] = [];
  const registers = Uint8Array.from({ length: 256 }, (_, i) => i ^ 0x5a);
  const calls: I2cDevCalls = {
    open: (path) => (log.push(`open ${path}`), 7),
    funcs: () => funcs,
    setSlave: (_fd, address) => {
      if (options.busy?.includes(address)) throw new SyscallError("ioctl", 16);
      log.push(`slave 0x${address.toString(16)}`);
    },
    rdwr: (_fd, messages: readonly I2cMessage[]) => {
      if (options.fail !== undefined) throw new SyscallError("ioctl", options.fail);
      log.push(`rdwr ${messages.map((m) => `${m.read ? "r" : "w"}${m.data.length}`).join(" ")}`);
      for (const m of messages) if (m.read) m.data.fill(0xee);
    },
    smbus: (_fd, call) => {
      log.push(
        `smbus ${call.readWrite ? "r" : "w"} size ${call.size} cmd 0x${call.command.toString(16)}`,
      );
      if (call.size === S.I2C_SMBUS_BYTE_DATA && call.readWrite) {
        call.data[0] = registers[call.command];
      }
      if (call.size === S.I2C_SMBUS_WORD_DATA && call.readWrite) {
        call.data.set(registers.subarray(call.command, call.command + 2));
      }
      if (call.size === S.I2C_SMBUS_I2C_BLOCK_DATA && call.readWrite) {
        call.data.set(registers.subarray(call.command, call.command + call.data[0]), 1);
      }
      if (call.size === S.I2C_SMBUS_BLOCK_DATA && call.readWrite) {
        call.data[0] = 2;
        call.data.set([0xaa, 0xbb], 1);
      }
    },
    close: () => log.push("close"),
  };
  return { calls, log, registers };
}

const STUB = 0x0c7f_0000;
const w = (...bytes: number[]): I2cMessage => ({
  address: 0x50,
  read: false,
  data: Uint8Array.from(bytes),
});
const r = (length: number): I2cMessage => ({
  address: 0x50,
  read: true,
  data: new Uint8Array(length),
});

Deno.test("host adapter: probes every address at start-up, refuses a busy one and closes", () => {
  const kernel = fakeKernel(STUB);
  const adapter = HostAdapter.open("/dev/i2c-3", { addresses: [0x50, 0x51], calls: kernel.calls });
  assert.deepEqual(kernel.log, ["open /dev/i2c-3", "slave 0x50", "slave 0x51"]);
  assert.equal(adapter.plainI2c, false);
  adapter.close();
  const busy = fakeKernel(STUB, { busy: [0x51] });
  assert.throws(
    () => HostAdapter.open("/dev/i2c-3", { addresses: [0x50, 0x51], calls: busy.calls }),
    /\/dev\/i2c-3: cannot use address 0x51: ioctl failed: EBUSY/,
  );
  assert.equal(busy.log.at(-1), "close");
  const none = fakeKernel(F.I2C_FUNC_SMBUS_QUICK);
  assert.throws(
    () => HostAdapter.open("/dev/i2c-4", { addresses: [0x50], calls: none.calls }),
    /neither I2C nor SMBus byte-data/,
  );
});

Deno.test("host adapter: I2C_RDWR for plain I2C adapters, errno as a transfer error", () => {
  const kernel = fakeKernel(F.I2C_FUNC_I2C);
  const adapter = HostAdapter.open("/dev/i2c-1", { addresses: [0x50], calls: kernel.calls });
  const read = r(3);
  assert.deepEqual(adapter.transfer([w(1, 2), read, w()]), { completed: 3 });
  assert.equal(kernel.log.at(-1), "rdwr w2 r3 w0");
  assert.deepEqual(read.data, Uint8Array.of(0xee, 0xee, 0xee));
  const nack = HostAdapter.open("/dev/i2c-1", {
    addresses: [0x50],
    calls: fakeKernel(1, { fail: 6 }).calls,
  });
  const result = nack.transfer([w(1)]);
  assert.equal(result.completed, 0);
  assert.equal(result.nack, true);
  assert.match(result.error ?? "", /ENXIO/);
  const tooMany = adapter.transfer(Array.from({ length: 43 }, () => w(1)));
  assert.match(tooMany.error ?? "", /43 messages/);
});

Deno.test("host adapter: SMBus emulation on an SMBus-only adapter (i2c-stub's mask)", () => {
  const kernel = fakeKernel(STUB);
  const adapter = HostAdapter.open("/dev/i2c-3", { addresses: [0x50], calls: kernel.calls });
  const byte = r(1);
  assert.deepEqual(adapter.transfer([w(0x10), byte]), { completed: 2 });
  assert.deepEqual(kernel.log.slice(-2), [
    "slave 0x50",
    `smbus r size ${S.I2C_SMBUS_BYTE_DATA} cmd 0x10`,
  ]);
  assert.equal(byte.data[0], kernel.registers[0x10]);
  const word = r(2);
  adapter.transfer([w(0x20), word]);
  assert.deepEqual(word.data, kernel.registers.subarray(0x20, 0x22));
  const block = r(8);
  adapter.transfer([w(0x30), block]);
  assert.deepEqual(block.data, kernel.registers.subarray(0x30, 0x38));
  assert.deepEqual(adapter.transfer([w(0x40, 1, 2, 3, 4, 5)]), { completed: 1 });
  assert.equal(kernel.log.at(-1), `smbus w size ${S.I2C_SMBUS_I2C_BLOCK_DATA} cmd 0x40`);
  // Shapes only I2C_RDWR could put on the wire: an error, no ioctl.
  const before = kernel.log.length;
  const refused = adapter.transfer([w(1, 2, 3), r(2)]);
  assert.equal(refused.completed, 0);
  assert.match(refused.error ?? "", /no SMBus command fits: no SMBus process call/);
  assert.match(adapter.transfer([r(4)]).error ?? "", /4-byte read without a command byte/);
  assert.equal(kernel.log.length, before);
});

Deno.test("host adapter: an SMBus block answer shorter than the guest's read fails after the write", () => {
  const funcs = F.I2C_FUNC_SMBUS_READ_BYTE_DATA | F.I2C_FUNC_SMBUS_WRITE_BYTE_DATA |
    F.I2C_FUNC_SMBUS_READ_BLOCK_DATA;
  const adapter = HostAdapter.open("/dev/i2c-5", {
    addresses: [0x50],
    calls: fakeKernel(funcs).calls,
  });
  const short = r(3);
  assert.deepEqual(adapter.transfer([w(1), short]), { completed: 2 });
  assert.deepEqual(short.data, Uint8Array.of(2, 0xaa, 0xbb));
  const long = r(5);
  const result = adapter.transfer([w(1), long]);
  assert.equal(result.completed, 1);
  assert.match(result.error ?? "", /count 2\) does not fill a 5-byte read/);
});

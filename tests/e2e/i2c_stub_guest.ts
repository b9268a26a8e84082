// Runs INSIDE a guest (tests/e2e/i2c_stub_test.ts boots it): the real
// vhost-device-i2c on /dev/i2c-N of the guest kernel's i2c-stub, an
// SMBus-only adapter, driven by the TypeScript front-end in the same guest.
// This proves the i2c-dev ioctls (I2C_FUNCS, I2C_SLAVE, I2C_SMBUS) and the
// SMBus emulation against a real kernel adapter. I2C_STUB_KO names the
// decompressed i2c-stub.ko; without it (on the host) every test is ignored.
import assert from "node:assert/strict";
import { VIRTIO_I2C_MSG_ERR as ERR, VIRTIO_I2C_MSG_OK as OK } from "../../devices/i2c/request.ts";
import { i2cSession, startI2cDaemon } from "../../devices/i2c/testing.ts";

const STUB_KO = Deno.env.get("I2C_STUB_KO");
const STUB_NAME = "SMBus stub driver";

async function sh(command: string, args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, { args }).output();
  const text = new TextDecoder().decode(stdout).trim();
  if (!success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`);
  }
  return text;
}

/** Loads i2c-stub with `params` and returns its bus number, found by name. */
async function loadStub(params: string[]): Promise<number> {
  await sh("insmod", [STUB_KO!, ...params]);
  for (const entry of Deno.readDirSync("/sys/bus/i2c/devices")) {
    const match = /^i2c-(\d+)$/.exec(entry.name);
    if (
      match && Deno.readTextFileSync(`/sys/bus/i2c/devices/${entry.name}/name`).trim() === STUB_NAME
    ) {
      return Number(match[1]);
    }
  }
  throw new Error("i2c-stub loaded but no adapter is named " + STUB_NAME);
}

Deno.test({
  name:
    "i2c-stub: byte, word and I2C block transfers land in the stub and read back; RDWR-only shapes fail",
  ignore: STUB_KO === undefined,
  async fn() {
    const bus = await loadStub(["chip_addr=0x50,0x51"]);
    try {
      // Found by name, as upstream.
      await using daemon = await startI2cDaemon(["-l", `${STUB_NAME}:0x50:81`], {
        logLevel: "debug",
        timeoutMs: 60_000,
      });
      assert.match(
        daemon.log,
        new RegExp(`/dev/i2c-${bus}: SMBus emulation \\(I2C_FUNCS 0xc7f0000\\)`),
      );
      const s = await i2cSession(`${daemon.socketPrefix}0`);
      try {
        const status = (...m: Parameters<typeof s.xfer>) => s.xfer(...m).map((r) => r.status);
        // Quick (i2cdetect's probe): the stub's chips answer; 0x52 is not passed to the guest.
        assert.deepEqual(status({ address: 0x50, write: [] }), [OK]);
        assert.deepEqual(status({ address: 0x52, write: [] }), [ERR]);
        // Byte data.
        assert.deepEqual(status({ address: 0x50, write: [0x10, 0xab] }), [OK]);
        assert.deepEqual(s.xfer({ address: 0x50, write: [0x10] }, { address: 0x50, read: 1 })[1], {
          status: OK,
          data: [0xab],
          length: 2,
        });
        // Word data (the stub keeps words apart from bytes: its byte at 0x21 is untouched).
        assert.deepEqual(status({ address: 0x50, write: [0x20, 0x34, 0x12] }), [OK]);
        assert.deepEqual(
          s.xfer({ address: 0x50, write: [0x20] }, { address: 0x50, read: 2 })[1].data,
          [0x34, 0x12],
        );
        // I2C block write and read.
        assert.deepEqual(status({ address: 0x51, write: [0x40, 1, 2, 3, 4, 5, 6, 7, 8] }), [OK]);
        assert.deepEqual(
          s.xfer({ address: 0x51, write: [0x40] }, { address: 0x51, read: 8 })[1].data,
          [1, 2, 3, 4, 5, 6, 7, 8],
        );
        // Send byte sets the stub's pointer; receive byte reads from it and advances.
        assert.deepEqual(status({ address: 0x51, write: [0x42] }), [OK]);
        assert.deepEqual(s.xfer({ address: 0x51, read: 1 })[0].data, [3]);
        assert.deepEqual(s.xfer({ address: 0x51, read: 1 })[0].data, [4]);
        // What the guest wrote is in the kernel's stub, seen through i2c-dev directly.
        assert.equal(await sh("i2cget", ["-y", String(bus), "0x50", "0x10"]), "0xab");
        assert.equal(await sh("i2cget", ["-y", String(bus), "0x50", "0x20", "w"]), "0x1234");
        assert.equal(await sh("i2cget", ["-y", String(bus), "0x51", "0x47"]), "0x08");
        // Shapes only I2C_RDWR could put on the wire: a clean error status, nothing sent.
        assert.deepEqual(status({ address: 0x50, read: 4 }), [ERR]);
        assert.deepEqual(status({ address: 0x50, write: [0x10, 1] }, { address: 0x50, read: 1 }), [
          ERR,
          ERR,
        ]);
        assert.deepEqual(
          status({ address: 0x50, write: [0x10, 1, 2] }, { address: 0x50, read: 2 }),
          [ERR, ERR],
        );
        assert.deepEqual(
          status({ address: 0x50, write: [0x10] }, { address: 0x50, read: 1 }, {
            address: 0x50,
            read: 1,
          }),
          [ERR, ERR, ERR],
        );
        assert.deepEqual(status({ address: 0x50, write: [0x10] }, { address: 0x51, read: 1 }), [
          ERR,
          ERR,
        ]);
        assert.equal(await sh("i2cget", ["-y", String(bus), "0x50", "0x10"]), "0xab");
        await daemon.waitForLog("no SMBus command fits", { count: 5 });
        assert.match(daemon.log, /a 4-byte read without a command byte/);
        assert.match(daemon.log, /no SMBus process call/);
      } finally {
        s.close();
      }
    } finally {
      await sh("rmmod", ["i2c_stub"]);
    }
  },
});

Deno.test({
  name: "i2c-stub: SMBus block transfers when the adapter has them and no I2C block ones",
  ignore: STUB_KO === undefined,
  async fn() {
    // Functionality: everything the stub has (SMBus block included) but I2C block.
    const bus = await loadStub(["chip_addr=0x50", "functionality=0xf3ffffff"]);
    try {
      await using daemon = await startI2cDaemon(["-l", `${bus}:0x50`], {
        logLevel: "debug",
        timeoutMs: 60_000,
      });
      assert.match(daemon.log, /SMBus emulation \(I2C_FUNCS 0x37f0000\)/);
      const s = await i2cSession(`${daemon.socketPrefix}0`);
      try {
        // Command, count, data: an SMBus block write.
        assert.deepEqual(s.xfer({ address: 0x50, write: [0x60, 3, 7, 8, 9] })[0].status, OK);
        // Block read: count then data; fewer bytes is an early stop; more is refused.
        const read = (n: number) =>
          s.xfer({ address: 0x50, write: [0x60] }, { address: 0x50, read: n })[1];
        assert.deepEqual(read(4), { status: OK, data: [3, 7, 8, 9], length: 5 });
        assert.deepEqual(read(2).data, [3, 7]);
        assert.equal(read(6).status, ERR);
        // Without I2C block, a plain multi-byte write is no SMBus command.
        assert.equal(s.xfer({ address: 0x50, write: [0x61, 1, 2, 3, 4] })[0].status, ERR);
        // Byte data still works.
        assert.deepEqual(s.xfer({ address: 0x50, write: [0x10, 0x5a] })[0].status, OK);
        assert.equal(await sh("i2cget", ["-y", String(bus), "0x50", "0x10"]), "0x5a");
      } finally {
        s.close();
      }
    } finally {
      await sh("rmmod", ["i2c_stub"]);
    }
  },
});

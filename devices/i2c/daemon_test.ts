// The real vhost-device-i2c process with simulated clients, driven by the
// TypeScript vhost-user front-end (tests/frontend): real socket, memfd guest
// RAM and eventfds. Requests are laid out as Linux's i2c-virtio lays them out.
import assert from "node:assert/strict";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import { VHOST_USER_F_PROTOCOL_FEATURES } from "../../core/protocol/constants.ts";
import { VIRTIO_F_NOTIFY_ON_EMPTY } from "../../core/virtio/features.ts";
import type { Chain } from "../../tests/frontend/mod.ts";
import {
  VIRTIO_I2C_FLAGS_FAIL_NEXT,
  VIRTIO_I2C_FLAGS_M_RD,
  VIRTIO_I2C_MSG_ERR,
  VIRTIO_I2C_MSG_OK,
} from "./request.ts";
import { REGISTER_ID } from "./simulated.ts";
import {
  DRIVER_FEATURES as FEATURES,
  i2cSession as session,
  outHeader as header,
  startI2cDaemon,
  transferChains as transfer,
} from "./testing.ts";
const EEPROM = 0x50;
const REGS = 0x20;
const SIMULATED = ["--simulated-device", `eeprom@${EEPROM}`, "--simulated-device", "regs@0x20"];

const OK = VIRTIO_I2C_MSG_OK;
const ERR = VIRTIO_I2C_MSG_ERR;

Deno.test("i2c daemon: features, a bus scan finds exactly the configured clients, every transfer shape", async () => {
  await using daemon = await startI2cDaemon(SIMULATED);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    assert.equal(
      s.init.features,
      FEATURES | bit(VIRTIO_F_NOTIFY_ON_EMPTY) | bit(VHOST_USER_F_PROTOCOL_FEATURES),
    );
    assert.equal(
      s.init.protocolFeatures,
      bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS),
    );
    assert.equal(s.init.queueNum, 1);

    // i2cdetect: a zero-length write (SMBus quick) to each address; zero-length read too.
    const found: number[] = [];
    for (let address = 0x03; address <= 0x77; address++) {
      const [quick] = s.xfer({ address, write: [] });
      assert.equal(quick.length, 1);
      if (quick.status === OK) found.push(address);
    }
    assert.deepEqual(found, [REGS, EEPROM]);
    assert.deepEqual(s.xfer({ address: EEPROM, read: 0 }), [{ status: OK, data: [], length: 1 }]);

    // A page write, then write-then-read (repeated start): used lengths 1 and 1 + 4 + 1.
    assert.deepEqual(s.xfer({ address: EEPROM, write: [0x10, 1, 2, 3, 4] })[0].status, OK);
    assert.deepEqual(s.xfer({ address: EEPROM, write: [0x10] }, { address: EEPROM, read: 4 }), [
      { status: OK, data: [], length: 1 },
      { status: OK, data: [1, 2, 3, 4], length: 5 },
    ]);
    // A sequential read continues from the address counter.
    assert.deepEqual(s.xfer({ address: EEPROM, read: 2 })[0].data, [0xff, 0xff]);
    // The whole EEPROM in one read, wrapping at 256.
    const all = s.xfer({ address: EEPROM, write: [0] }, { address: EEPROM, read: 256 });
    assert.equal(all[1].length, 257);
    assert.deepEqual(all[1].data.slice(0x10, 0x14), [1, 2, 3, 4]);

    // SMBus-shaped transfers to the register file: byte, word data, receive byte.
    assert.equal(s.xfer({ address: REGS, write: [0x30, 0x34, 0x12] })[0].status, OK);
    assert.deepEqual(s.xfer({ address: REGS, write: [0x30] }, { address: REGS, read: 2 })[1].data, [
      0x34,
      0x12,
    ]);
    assert.deepEqual(s.xfer({ address: REGS, read: 1 })[0].data, [0]);
    assert.deepEqual(
      s.xfer({ address: REGS, write: [0xfe] }, { address: REGS, read: 2 })[1].data,
      [REGISTER_ID[0xfe], REGISTER_ID[0xff]],
    );
    // Three messages, two clients, one transfer.
    assert.deepEqual(
      s.xfer(
        { address: REGS, write: [0x30] },
        { address: EEPROM, write: [0x11] },
        { address: EEPROM, read: 1 },
      ).map((r) => r.status),
      [OK, OK, OK],
    );
    // A refused write (read-only id register): that request and the rest of the group fail,
    // the read's buffer comes back zeroed with its full used length.
    assert.deepEqual(
      s.xfer({ address: REGS, write: [0x40] }, { address: REGS, write: [0xfe, 1] }, {
        address: REGS,
        read: 3,
      }),
      [
        { status: OK, data: [], length: 1 },
        { status: ERR, data: [], length: 1 },
        { status: ERR, data: [0, 0, 0], length: 4 },
      ],
    );
    // An absent client in the middle: NACK there, no log (bus scans are normal).
    assert.deepEqual(
      s.xfer({ address: EEPROM, write: [0] }, { address: 0x51, read: 1 }, {
        address: EEPROM,
        read: 1,
      }).map((r) => r.status),
      [OK, ERR, ERR],
    );
    // Indirect tables, and the header and data split across descriptors: the layout is free.
    const [indirectWrite, indirectRead] = transfer([
      { address: EEPROM, write: [0x20, 0xc1, 0xc2] },
      { address: EEPROM, read: 2 },
    ]).map((c) => ({ ...c, indirect: true }));
    const alone = header(EEPROM << 1, 0);
    const split = {
      readable: [
        alone.subarray(0, 3),
        alone.subarray(3),
        Uint8Array.of(0x20),
        Uint8Array.of(0xc1, 0xc2),
      ],
      writable: [1],
    };
    assert.deepEqual(s.run([split]).map((u) => u.data[0]), [OK]);
    assert.deepEqual(
      s.run([
        { ...indirectWrite, readable: [indirectWrite.readable[0], Uint8Array.of(0x20)] },
        indirectRead,
      ])
        .map((u) => [...u.data.subarray(0, u.length)]),
      [[OK], [0xc1, 0xc2, OK]],
    );
    // Two transfers in one kick are two groups: the first's failure does not touch the second.
    const used = s.run([
      ...transfer([{ address: 0x33, write: [1] }]),
      ...transfer([{ address: EEPROM, write: [0x10] }, { address: EEPROM, read: 1 }]),
    ]);
    assert.deepEqual(used.map((u) => u.data[u.length - 1]), [ERR, OK, OK]);
    assert.equal(used[2].data[0], 1);
    assert.ok(!/rejected|warn/i.test(daemon.log), daemon.log);
  } finally {
    s.close();
  }
});

Deno.test("i2c daemon: hostile requests get an error status and a log line; the daemon keeps serving", async () => {
  await using daemon = await startI2cDaemon(SIMULATED);
  const s = await session(`${daemon.socketPrefix}0`);
  try {
    const eeprom = (flags: number) => header(EEPROM << 1, flags);
    const cases: { chain: Chain; length: number; status?: number }[] = [
      // Short out header.
      { chain: { readable: [new Uint8Array(4)], writable: [1] }, length: 1, status: ERR },
      // Reserved flag bits.
      { chain: { readable: [eeprom(0x80)], writable: [1] }, length: 1, status: ERR },
      // Not a 7-bit address (bit 0 set).
      { chain: { readable: [header(0xa1, 0)], writable: [1] }, length: 1, status: ERR },
      // A read with device-readable data.
      {
        chain: { readable: [eeprom(VIRTIO_I2C_FLAGS_M_RD), new Uint8Array(3)], writable: [2, 1] },
        length: 0,
      },
      // A write with a device-writable buffer.
      { chain: { readable: [eeprom(0), Uint8Array.of(0)], writable: [4, 1] }, length: 0 },
      // No status byte at all.
      { chain: { readable: [eeprom(0), Uint8Array.of(0, 9)], writable: [] }, length: 0 },
      // A buffer beyond i2c-dev's 8192 bytes.
      { chain: { readable: [eeprom(VIRTIO_I2C_FLAGS_M_RD)], writable: [20000, 1] }, length: 0 },
      // A 10-bit address: refused quietly.
      { chain: { readable: [header(0x12f2, 0)], writable: [1] }, length: 1, status: ERR },
    ];
    for (const { chain, length, status } of cases) {
      const [used] = s.run([chain]);
      assert.equal(used.length, length, JSON.stringify(chain.writable));
      if (status !== undefined) assert.equal(used.data[0], status);
    }
    await daemon.waitForLog("rejected", { count: 7 });
    assert.match(daemon.log, /out header has 4 of 8 bytes/);
    assert.match(daemon.log, /reserved flag bits 0x80/);
    assert.match(daemon.log, /no device-writable byte for the status/);

    // A malformed request inside a group fails the whole group before anything runs.
    const group = transfer([{ address: EEPROM, write: [0x60, 0xaa] }, {
      address: EEPROM,
      read: 1,
    }]);
    const bad = { readable: [header(EEPROM << 1, 0x40)], writable: [1] };
    const used = s.run([group[0], bad]);
    assert.deepEqual(used.map((u) => u.data[u.length - 1]), [ERR, ERR]);
    assert.deepEqual(
      s.xfer({ address: EEPROM, write: [0x60] }, { address: EEPROM, read: 1 })[1].data,
      [0xff],
      "the first write of the failed group did not run",
    );

    // A request with FAIL_NEXT and nothing after it: run alone once the group stops waiting.
    const [open] = s.run([{
      readable: [eeprom(VIRTIO_I2C_FLAGS_FAIL_NEXT), Uint8Array.of(0x61, 7)],
      writable: [1],
    }]);
    assert.equal(open.data[0], OK);
    assert.deepEqual(
      s.xfer({ address: EEPROM, write: [0x61] }, { address: EEPROM, read: 1 })[1].data,
      [7],
    );
    assert.ok(daemon.running);
  } finally {
    s.close();
  }
});

Deno.test("i2c daemon: clients keep their state across front-ends and sockets; fd count stable", async () => {
  await using daemon = await startI2cDaemon(["-c", "2", ...SIMULATED], { socketCount: 2 });
  const first = await session(`${daemon.socketPrefix}0`);
  first.xfer({ address: EEPROM, write: [0x80, 9, 8, 7] });
  first.close();
  await daemon.waitForLog("waiting for a front-end", { count: 1 });
  const fds = daemon.fdCount();
  for (let i = 0; i < 6; i++) {
    const s = await session(`${daemon.socketPrefix}${i % 2}`);
    try {
      const [, read] = s.xfer({ address: EEPROM, write: [0x80] }, { address: EEPROM, read: 3 });
      assert.deepEqual(read.data, [9, 8, 7]);
    } finally {
      s.close();
    }
    await daemon.waitForLog("waiting for a front-end", { count: i + 2 });
  }
  assert.equal(daemon.fdCount(), fds);
});

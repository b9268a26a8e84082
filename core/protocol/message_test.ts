import assert from "node:assert/strict";
import fc from "fast-check";
import { FrontendRequest as R, NEED_REPLY_FLAG, VERSION } from "./constants.ts";
import {
  decodeHeader,
  decodeMessage,
  encodeConfig,
  encodeHeader,
  encodeMemoryTable,
  encodeReply,
  encodeSingleRegion,
  encodeU64,
  encodeVringAddr,
  encodeVringState,
  ProtocolError,
} from "./message.ts";

const h = (request: number, size: number, flags = VERSION) => ({ request, flags, size });
const region = {
  guestPhysAddr: 0x1000,
  memorySize: 0x2000,
  userspaceAddr: 0x7f00_0000_0000,
  mmapOffset: 0,
};

Deno.test("headers round-trip and replies carry exactly REPLY|version", () => {
  assert.deepEqual(decodeHeader(encodeHeader(h(24, 20, VERSION | NEED_REPLY_FLAG))), h(24, 20, 9));
  const reply = encodeReply(R.GET_FEATURES, encodeU64(5n));
  assert.deepEqual(decodeHeader(reply.subarray(0, 12)), { request: 1, flags: 5, size: 8 });
});

Deno.test("headers with a wrong version, reserved bits or oversize payload are refused", () => {
  assert.throws(() => decodeHeader(encodeHeader(h(1, 0, 2))), ProtocolError);
  assert.throws(() => decodeHeader(encodeHeader(h(1, 0, 0x11))), /reserved flag bits/);
  assert.throws(() => decodeHeader(encodeHeader(h(1, 0x1001))), /exceeds 4096/);
});

Deno.test("each payload layout decodes to its typed message", () => {
  const dec = (request: number, payload: Uint8Array, fds: number[] = []) =>
    decodeMessage(h(request, payload.length), { payload, fds }).message;
  assert.deepEqual(dec(R.SET_FEATURES, encodeU64(1n << 32n)), {
    kind: "SET_FEATURES",
    features: 1n << 32n,
  });
  assert.deepEqual(dec(R.SET_VRING_NUM, encodeVringState(1, 256)), {
    kind: "SET_VRING_NUM",
    index: 1,
    num: 256,
  });
  assert.deepEqual(dec(R.GET_VRING_BASE, encodeVringState(0, 0)), {
    kind: "GET_VRING_BASE",
    index: 0,
  });
  assert.deepEqual(dec(R.SET_VRING_ENABLE, encodeVringState(2, 1)), {
    kind: "SET_VRING_ENABLE",
    index: 2,
    enable: true,
  });
  const addresses = {
    index: 0,
    flags: 0,
    descUser: 0x1000,
    usedUser: 0x3000,
    availUser: 0x2000,
    logGuest: 0,
  };
  assert.deepEqual(dec(R.SET_VRING_ADDR, encodeVringAddr(addresses)), {
    kind: "SET_VRING_ADDR",
    addresses,
  });
  assert.deepEqual(dec(R.SET_VRING_KICK, encodeU64(1n), [7]), {
    kind: "SET_VRING_KICK",
    index: 1,
    fd: 7,
  });
  assert.deepEqual(dec(R.SET_VRING_CALL, encodeU64(0x102n)), {
    kind: "SET_VRING_CALL",
    index: 2,
    fd: null,
  });
  assert.deepEqual(dec(R.SET_MEM_TABLE, encodeMemoryTable([region]), [5]), {
    kind: "SET_MEM_TABLE",
    regions: [region],
    fds: [5],
  });
  assert.deepEqual(dec(R.ADD_MEM_REG, encodeSingleRegion(region), [5]), {
    kind: "ADD_MEM_REG",
    region,
    fd: 5,
  });
  assert.deepEqual(dec(R.REM_MEM_REG, encodeSingleRegion(region)), { kind: "REM_MEM_REG", region });
  const config = { offset: 0, size: 2, flags: 0, data: new Uint8Array([1, 2]) };
  assert.deepEqual(dec(R.SET_CONFIG, encodeConfig(config)), { kind: "SET_CONFIG", config });
  assert.deepEqual(dec(R.SET_STATUS, encodeU64(0x10fn)), { kind: "SET_STATUS", status: 0x0f });
  assert.deepEqual(dec(R.GET_FEATURES, new Uint8Array(0)), { kind: "GET_FEATURES" });
  assert.deepEqual(dec(999, new Uint8Array(3)), { kind: "UNSUPPORTED", name: "UNKNOWN(999)" });
});

Deno.test("malformed payloads are refused with the request named", () => {
  const dec = (request: number, payload: Uint8Array, fds: number[] = []) =>
    decodeMessage(h(request, payload.length), { payload, fds });
  assert.throws(
    () => dec(R.SET_FEATURES, new Uint8Array(4)),
    /SET_FEATURES: payload of 4 bytes, expected 8/,
  );
  assert.throws(
    () => dec(R.SET_VRING_KICK, encodeU64(0n)),
    /SET_VRING_KICK: 0 file descriptors attached, expected 1/,
  );
  assert.throws(() => dec(R.SET_VRING_CALL, encodeU64(0x100n), [3]), /expected 0/);
  assert.throws(() => dec(R.SET_MEM_TABLE, encodeMemoryTable([])), /0 regions/);
  assert.throws(
    () => dec(R.SET_MEM_TABLE, encodeMemoryTable([region]).subarray(0, 20), [3]),
    /expected 40/,
  );
  assert.throws(() => dec(R.SET_MEM_TABLE, encodeMemoryTable([region])), /expected 1/);
  const huge = encodeSingleRegion(region);
  new DataView(huge.buffer).setBigUint64(16, 1n << 60n, true);
  assert.throws(
    () => dec(R.ADD_MEM_REG, huge, [3]),
    /memory_size 0x1000000000000000 is out of range/,
  );
  const badConfig = encodeConfig({ offset: 0, size: 4, flags: 0, data: new Uint8Array(2) });
  assert.throws(() => dec(R.GET_CONFIG, badConfig), /config size 4 does not match/);
  assert.throws(() => dec(R.GET_FEATURES, new Uint8Array(0), [3]), /expected 0/);
});

Deno.test("property: any header and payload decode to a message or a ProtocolError", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 50 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.integer({ min: 0, max: 9 }),
      fc.boolean(),
      (request, payload, fdCount, needReply) => {
        const header = {
          request,
          flags: VERSION | (needReply ? NEED_REPLY_FLAG : 0),
          size: payload.length,
        };
        const fds = Array.from({ length: fdCount }, (_, i) => 100 + i);
        try {
          const decoded = decodeMessage(header, { payload, fds });
          assert.equal(decoded.needReply, needReply);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, `unexpected ${error}`);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("property: encoded payloads decode to the values encoded", () => {
  const address = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          guestPhysAddr: address,
          memorySize: address,
          userspaceAddr: address,
          mmapOffset: address,
        }),
        {
          minLength: 1,
          maxLength: 8,
        },
      ),
      fc.record({
        index: fc.integer({ min: 0, max: 0xffff }),
        flags: fc.integer({ min: 0, max: 1 }),
        descUser: address,
        usedUser: address,
        availUser: address,
        logGuest: address,
      }, { noNullPrototype: true }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      (regions, addresses, features) => {
        const table = encodeMemoryTable(regions);
        const fds = regions.map((_, i) => i + 3);
        assert.deepEqual(
          decodeMessage(h(R.SET_MEM_TABLE, table.length), { payload: table, fds }).message,
          { kind: "SET_MEM_TABLE", regions: regions.map((r) => ({ ...r })), fds },
        );
        const addr = encodeVringAddr(addresses);
        assert.deepEqual(
          decodeMessage(h(R.SET_VRING_ADDR, 40), { payload: addr, fds: [] }).message,
          {
            kind: "SET_VRING_ADDR",
            addresses,
          },
        );
        const u64 = encodeU64(features);
        assert.deepEqual(decodeMessage(h(R.SET_FEATURES, 8), { payload: u64, fds: [] }).message, {
          kind: "SET_FEATURES",
          features,
        });
      },
    ),
    { numRuns: 500 },
  );
});

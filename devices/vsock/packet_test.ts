import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeHeader,
  decodeHeaderAt,
  encodeHeader,
  encodeHeaderAt,
  headerBytes,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_TYPE_STREAM,
  VSOCK_HEADER_SIZE,
  type VsockHeader,
} from "./packet.ts";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u16 = fc.integer({ min: 0, max: 0xffff });

Deno.test("packet: header encodes to the spec's 44-byte little-endian layout", () => {
  const bytes = headerBytes({
    srcCid: 3,
    dstCid: 2,
    srcPort: 0x11223344,
    dstPort: 5,
    len: 6,
    type: 1,
    op: VIRTIO_VSOCK_OP_RW,
    flags: 0,
    bufAlloc: 65536,
    fwdCnt: 7,
  });
  assert.equal(bytes.length, VSOCK_HEADER_SIZE);
  assert.deepEqual([...bytes.subarray(0, 24)], [
    3,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    2,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x44,
    0x33,
    0x22,
    0x11,
    5,
    0,
    0,
    0,
  ]);
  assert.deepEqual([...bytes.subarray(24, 44)], [
    6,
    0,
    0,
    0,
    1,
    0,
    5,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    7,
    0,
    0,
    0,
  ]);
});

Deno.test("packet: decode(encode(h)) == h for every header; CIDs with upper bits are NaN", () => {
  fc.assert(fc.property(
    fc.record({
      srcCid: u32,
      dstCid: u32,
      srcPort: u32,
      dstPort: u32,
      len: u32,
      type: u16,
      op: u16,
      flags: u32,
      bufAlloc: u32,
      fwdCnt: u32,
    }),
    (header: VsockHeader) => {
      assert.deepEqual(decodeHeader(headerBytes(header)), { ...header });
    },
  ));
  const bytes = new Uint8Array(VSOCK_HEADER_SIZE);
  bytes[4] = 1; // src_cid = 2^32
  assert.ok(Number.isNaN(decodeHeader(bytes).srcCid));
  assert.throws(() => decodeHeader(new Uint8Array(43)), RangeError);
  assert.throws(() => encodeHeader(decodeHeader(bytes), new Uint8Array(10)), RangeError);
});

Deno.test("packet: decoding any 44 bytes never throws", () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 44, maxLength: 60 }), (bytes) => {
    const h = decodeHeader(bytes);
    assert.ok(h.len >= 0 && h.op >= 0);
  }));
});

Deno.test("decodeHeaderAt / encodeHeaderAt work in place, as their copying forms", () => {
  const header = {
    srcCid: 3,
    dstCid: 2,
    srcPort: 1234,
    dstPort: 80,
    len: 4096,
    type: VIRTIO_VSOCK_TYPE_STREAM,
    op: VIRTIO_VSOCK_OP_RW,
    flags: 0,
    bufAlloc: 262144,
    fwdCnt: 77,
  };
  const memory = new Uint8Array(100);
  memory.set(headerBytes(header), 30);
  assert.deepEqual(decodeHeaderAt(new DataView(memory.buffer), 30), header);
  const into = new Uint8Array(100);
  encodeHeaderAt(header, new DataView(into.buffer), 30);
  assert.deepEqual(into, memory);
  assert.throws(() => encodeHeaderAt(header, new DataView(into.buffer), 60), RangeError);
  assert.throws(() => decodeHeaderAt(new DataView(memory.buffer), 60), RangeError);
});

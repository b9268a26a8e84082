import assert from "node:assert/strict";
import { MemoryRegion } from "../../core/memory/guest_memory.ts";
import type { DescriptorChain } from "../../core/virtio/descriptor_chain.ts";
import {
  decodeRequest,
  MAX_BUFFER,
  VIRTIO_I2C_FLAGS_FAIL_NEXT,
  VIRTIO_I2C_FLAGS_M_RD,
} from "./request.ts";

/** A chain over plain bytes: readable buffers with the given contents, writable ones of the given sizes. */
function chain(readable: Uint8Array[], writable: number[]): DescriptorChain {
  const total = readable.reduce((n, b) => n + b.length, 0) + writable.reduce((n, w) => n + w, 0);
  const bytes = new Uint8Array(total);
  const region = new MemoryRegion(
    { guestPhysAddr: 0, memorySize: total, userspaceAddr: 0, mmapOffset: 0 },
    { bytes },
  );
  let offset = 0;
  const r = readable.map((b) => {
    bytes.set(b, offset);
    offset += b.length;
    return { region, offset: offset - b.length, length: b.length };
  });
  const w = writable.map((length) => {
    offset += length;
    return { region, offset: offset - length, length };
  });
  return {
    head: 0,
    readable: r,
    writable: w,
    readableLength: r.reduce((n, s) => n + s.length, 0),
    writableLength: w.reduce((n, s) => n + s.length, 0),
  };
}

function header(addr: number, flags: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, addr, true);
  view.setUint32(4, flags, true);
  return out;
}

Deno.test("request: a write with its bytes, split anywhere across descriptors", () => {
  const h = header(0x50 << 1, VIRTIO_I2C_FLAGS_FAIL_NEXT);
  const whole = decodeRequest(chain([h, Uint8Array.of(1, 2, 3)], [1]));
  assert.deepEqual(whole, {
    kind: "request",
    address: 0x50,
    read: false,
    failNext: true,
    data: Uint8Array.of(1, 2, 3),
  });
  const joined = new Uint8Array([...h, 1, 2, 3]);
  const split = decodeRequest(chain([joined.subarray(0, 5), joined.subarray(5)], [1]));
  assert.deepEqual(split, whole);
});

Deno.test("request: a read's buffer size comes from the writable part; zero-length both ways", () => {
  const read = decodeRequest(chain([header(0x20 << 1, VIRTIO_I2C_FLAGS_M_RD)], [16, 1]));
  assert.equal(read.kind, "request");
  if (read.kind !== "request") return;
  assert.equal(read.read, true);
  assert.equal(read.data.length, 16);
  assert.equal(read.failNext, false);
  const quickWrite = decodeRequest(chain([header(0x20 << 1, 0)], [1]));
  assert.equal(quickWrite.kind === "request" && quickWrite.data.length, 0);
  const quickRead = decodeRequest(chain([header(0x20 << 1, VIRTIO_I2C_FLAGS_M_RD)], [1]));
  assert.equal(quickRead.kind === "request" && quickRead.read && quickRead.data.length, 0);
});

Deno.test("request: malformed chains are named, keeping FAIL_NEXT when the header is readable", () => {
  const cases: [DescriptorChain, RegExp, boolean][] = [
    [chain([new Uint8Array(4)], [1]), /out header has 4 of 8/, false],
    [chain([header(0x50 << 1, 1)], []), /no device-writable byte/, true],
    [chain([header(0x50 << 1, 4)], [1]), /reserved flag bits 0x4/, false],
    [chain([header(0xa1, 0)], [1]), /addr 0xa1 is no 7-bit/, false],
    [chain([header(0x1234, 0)], [1]), /addr 0x1234/, false],
    [
      chain([header(0x50 << 1, VIRTIO_I2C_FLAGS_M_RD), new Uint8Array(2)], [3]),
      /read request with 2/,
      false,
    ],
    [chain([header(0x50 << 1, 0)], [4]), /write request with 3 device-writable/, false],
    [
      chain([header(0x50 << 1, VIRTIO_I2C_FLAGS_M_RD)], [MAX_BUFFER + 2]),
      /8193-byte buffer/,
      false,
    ],
  ];
  for (const [c, pattern, failNext] of cases) {
    const decoded = decodeRequest(c);
    assert.equal(decoded.kind, "malformed", String(pattern));
    if (decoded.kind !== "malformed") continue;
    assert.match(decoded.reason, pattern);
    assert.equal(decoded.failNext, failNext, String(pattern));
    assert.equal(decoded.loud, true);
  }
  // A 10-bit address (1111_0AA0 in the low byte, A7..A0 high) is refused quietly.
  const tenBit = decodeRequest(chain([header(0x12f2, 0)], [1]));
  assert.equal(
    tenBit.kind === "malformed" && !tenBit.loud && tenBit.reason,
    "10-bit addresses are not supported",
  );
});

import assert from "node:assert/strict";
import { IOV_MAX, IovecList } from "../../ffi/mod.ts";
import { type GuestSlice, MemoryRegion } from "../memory/guest_memory.ts";
import { pushIovecs, readSlices, writeSlices } from "./descriptor_chain.ts";

const region = new MemoryRegion({
  guestPhysAddr: 0,
  memorySize: 64,
  userspaceAddr: 0,
  mmapOffset: 0,
}, {
  bytes: new Uint8Array(new ArrayBuffer(64)),
});
const slices: GuestSlice[] = [
  { region, offset: 0, length: 3 },
  { region, offset: 10, length: 0 },
  { region, offset: 20, length: 5 },
];

Deno.test("writes and reads cross slices, honour skip, and stop at the end", () => {
  assert.equal(writeSlices(slices, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])), 8);
  assert.deepEqual([...region.bytes.subarray(0, 3)], [1, 2, 3]);
  assert.deepEqual([...region.bytes.subarray(20, 25)], [4, 5, 6, 7, 8]);
  assert.deepEqual([...readSlices(slices, { length: 100 })], [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...readSlices(slices, { skip: 2, length: 3 })], [3, 4, 5]);
  assert.equal(writeSlices(slices, new Uint8Array([9, 9]), { skip: 4 }), 2);
  assert.deepEqual([...readSlices(slices, { length: 8 })], [1, 2, 3, 4, 9, 9, 7, 8]);
});

Deno.test("iovecs point at each non-empty slice", () => {
  const iov = new IovecList(1);
  pushIovecs(slices, iov);
  assert.equal(iov.count, 2);
  assert.equal(iov.totalLength, 8);
});

Deno.test("iovecs cover a range of the slices and stop at IOV_MAX", () => {
  const iov = new IovecList(1);
  assert.equal(pushIovecs(slices, iov, { skip: 2, max: 4 }), 4);
  assert.equal(iov.count, 2);
  assert.equal(iov.totalLength, 4);
  const many: GuestSlice[] = Array.from(
    { length: IOV_MAX + 5 },
    (_, i) => ({ region, offset: i % 64, length: 1 }),
  );
  iov.clear();
  assert.equal(pushIovecs(many, iov), IOV_MAX);
  assert.equal(iov.count, IOV_MAX);
});

import assert from "node:assert/strict";
import { mapShared, PAGE_SIZE, unmap } from "../ffi/mod.ts";
import { DEFAULT_SPLIT_GAP, DriverMemory } from "./driver_memory.ts";

Deno.test("one region: base GPA, this process's address, offset 0, the memfd", () => {
  const memory = new DriverMemory({ size: 16 * PAGE_SIZE, guestBase: 0x10_0000 });
  try {
    const regions = memory.regions();
    assert.equal(regions.length, 1);
    assert.deepEqual(regions[0].descriptor, {
      guestPhysAddr: 0x10_0000,
      memorySize: 16 * PAGE_SIZE,
      userspaceAddr: memory.hostAddress,
      mmapOffset: 0,
    });
    assert.equal(regions[0].fd, memory.fd);
    assert.equal(memory.userAddress(0x10_0010), memory.hostAddress + 0x10);
  } finally {
    memory.close();
  }
});

Deno.test("split RAM: two regions of one memfd with a GPA gap", () => {
  const memory = new DriverMemory({ size: 8 * PAGE_SIZE, split: { at: 2 * PAGE_SIZE } });
  try {
    const [low, high] = memory.regions();
    assert.deepEqual(low.descriptor, {
      guestPhysAddr: 0,
      memorySize: 2 * PAGE_SIZE,
      userspaceAddr: memory.hostAddress,
      mmapOffset: 0,
    });
    assert.deepEqual(high.descriptor, {
      guestPhysAddr: 2 * PAGE_SIZE + DEFAULT_SPLIT_GAP,
      memorySize: 6 * PAGE_SIZE,
      userspaceAddr: memory.hostAddress + 2 * PAGE_SIZE,
      mmapOffset: 2 * PAGE_SIZE,
    });
    assert.equal(low.fd, high.fd);
    // The gap is not memory.
    assert.equal(memory.offsetOf(2 * PAGE_SIZE), -1);
    assert.throws(() => memory.view(2 * PAGE_SIZE - 4, 8), RangeError);
    const gpa = high.descriptor.guestPhysAddr + 100;
    memory.write(gpa, new Uint8Array([7, 8, 9]));
    assert.deepEqual([...memory.bytes.subarray(2 * PAGE_SIZE + 100, 2 * PAGE_SIZE + 103)], [
      7,
      8,
      9,
    ]);
  } finally {
    memory.close();
  }
});

Deno.test("the bump allocator aligns, fills a region, then moves to the next", () => {
  const memory = new DriverMemory({
    size: 2 * PAGE_SIZE,
    split: { at: PAGE_SIZE, gap: PAGE_SIZE },
  });
  try {
    assert.equal(memory.alloc(3, 1), 0);
    assert.equal(memory.alloc(8, 16), 16);
    assert.equal(memory.alloc(10, 4), 24);
    assert.equal(memory.alloc(1, 4096, { region: 1 }), 2 * PAGE_SIZE);
    // 34 bytes are used in region 0: this cannot fit there.
    assert.equal(memory.alloc(PAGE_SIZE - 32, 8), 2 * PAGE_SIZE + 8);
    assert.throws(() => memory.alloc(PAGE_SIZE, 8), /exhausted/);
    assert.throws(() => memory.alloc(8, 3), RangeError);
    assert.throws(() => memory.alloc(8, 8, { region: 2 }), RangeError);
  } finally {
    memory.close();
  }
});

Deno.test("bytes written by GPA are visible through another mapping of the memfd", () => {
  const memory = new DriverMemory({ size: 4 * PAGE_SIZE, split: { at: PAGE_SIZE, gap: 0 } });
  const other = mapShared(memory.fd, { length: 3 * PAGE_SIZE, offset: PAGE_SIZE });
  try {
    const [, high] = memory.regions();
    // With no gap, the second region starts right after the first.
    assert.equal(high.descriptor.guestPhysAddr, PAGE_SIZE);
    memory.write(PAGE_SIZE + 5, new TextEncoder().encode("hello"));
    assert.equal(new TextDecoder().decode(new Uint8Array(other.buffer, 5, 5)), "hello");
    new Uint8Array(other.buffer)[64] = 0xab;
    assert.deepEqual([...memory.read(PAGE_SIZE + 64, 1)], [0xab]);
    memory.dataView(PAGE_SIZE + 128, 8).setUint32(0, 0xdeadbeef, true);
    assert.equal(new DataView(other.buffer).getUint32(128, true), 0xdeadbeef);
  } finally {
    unmap(other);
    memory.close();
  }
});

Deno.test("bad sizes and splits are refused; close is idempotent", () => {
  assert.throws(() => new DriverMemory({ size: 100 }), RangeError);
  assert.throws(() => new DriverMemory({ size: PAGE_SIZE, split: { at: PAGE_SIZE } }), RangeError);
  const memory = new DriverMemory({ size: PAGE_SIZE });
  memory.close();
  memory.close();
});

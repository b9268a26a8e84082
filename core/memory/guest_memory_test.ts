import assert from "node:assert/strict";
import { createMemfd, PAGE_SIZE } from "../../ffi/mod.ts";
import { GuestMemory, mapRegion, MemoryRegion } from "./guest_memory.ts";

const plain = (gpa: number, size: number, user = 0x7000_0000 + gpa) =>
  new MemoryRegion({ guestPhysAddr: gpa, memorySize: size, userspaceAddr: user, mmapOffset: 0 }, {
    bytes: new Uint8Array(new ArrayBuffer(size)),
  });

Deno.test("guest-physical and front-end addresses translate within one region only", () => {
  const memory = new GuestMemory([plain(0x10000, 0x1000), plain(0, 0x1000)]);
  assert.deepEqual(memory.regions.map((r) => r.descriptor.guestPhysAddr), [0, 0x10000]);
  assert.equal(memory.bytes(0x10000, 0x1000)?.length, 0x1000);
  assert.equal(memory.bytes(0x10001, 0x1000), null);
  assert.equal(memory.bytes(0x2000, 1), null);
  assert.equal(memory.userBytes(0x7000_0000 + 0x10ff0, 16)?.length, 16);
  assert.equal(memory.userBytes(0x7000_0000 + 0x10ff0, 17), null);
  const out: unknown[] = [];
  assert.equal(memory.resolve(0xff0, 0x20, out as never), false, "a gap between regions");
  assert.equal(out.length, 0);
});

Deno.test("overlapping regions are refused", () => {
  assert.throws(() => new GuestMemory([plain(0, 0x2000), plain(0x1000, 0x1000)]), /overlap/);
});

Deno.test("a memfd region maps, shares bytes, and unmaps with its last table", () => {
  const fd = createMemfd("guest", 4 * PAGE_SIZE);
  const descriptor = {
    guestPhysAddr: 0,
    memorySize: 2 * PAGE_SIZE,
    userspaceAddr: 0,
    mmapOffset: 2 * PAGE_SIZE,
  };
  const region = mapRegion(descriptor, fd);
  const first = new GuestMemory([region]);
  const second = new GuestMemory([region]);
  first.bytes(0, 4)!.set([1, 2, 3, 4]);
  first.release();
  first.release();
  assert.deepEqual([...second.bytes(0, 4)!], [1, 2, 3, 4], "still mapped while a table holds it");
  second.release();
});

Deno.test("a region past the end of its file, or empty, is refused and its fd closed", () => {
  const fd = createMemfd("short", PAGE_SIZE);
  assert.throws(
    () =>
      mapRegion(
        { guestPhysAddr: 0, memorySize: 2 * PAGE_SIZE, userspaceAddr: 0, mmapOffset: 0 },
        fd,
      ),
    /exceeds its file/,
  );
  const fd2 = createMemfd("empty", PAGE_SIZE);
  assert.throws(
    () => mapRegion({ guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0, mmapOffset: 0 }, fd2),
    /size 0/,
  );
  assert.throws(
    () => mapRegion({ guestPhysAddr: 0, memorySize: 1, userspaceAddr: 0, mmapOffset: 0 }, fd2),
    /EBADF/,
  );
});

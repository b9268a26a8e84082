import assert from "node:assert/strict";
import { close, createMemfd, fileSize, mapShared, PAGE_SIZE, unmap } from "./mod.ts";

Deno.test("two mappings of one memfd share their bytes", () => {
  const fd = createMemfd("test", 4 * PAGE_SIZE);
  try {
    assert.equal(fileSize(fd), 4 * PAGE_SIZE);
    const a = mapShared(fd, { length: 4 * PAGE_SIZE, offset: 0 });
    const b = mapShared(fd, { length: PAGE_SIZE, offset: 2 * PAGE_SIZE + 16 });
    new Uint8Array(a.buffer)[2 * PAGE_SIZE + 16] = 0xab;
    assert.equal(new Uint8Array(b.buffer)[0], 0xab);
    assert.equal(b.address % PAGE_SIZE, 16);
    unmap(b);
    unmap(a);
  } finally {
    close(fd);
  }
});

Deno.test("mapping a bad fd names the call and errno", () => {
  assert.throws(() => mapShared(12345, { length: PAGE_SIZE, offset: 0 }), /mmap\(fd 12345.*EBADF/);
});

Deno.test("a zero-length mapping is refused", () => {
  assert.throws(() => mapShared(0, { length: 0, offset: 0 }), /EINVAL/);
});

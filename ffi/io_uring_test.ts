import assert from "node:assert/strict";
import { createEventFd, drainEventFd } from "./eventfd.ts";
import { close, openFile } from "./fd.ts";
import { IovecList } from "./iovec.ts";
import { CQE_SIZE, IO_URING_PARAMS_SIZE, IoUring, IoUringOp, SQE_SIZE } from "./io_uring.ts";
import { addressOf, stableBuffer } from "./structs.ts";

Deno.test("io_uring: struct sizes of <linux/io_uring.h>", () => {
  assert.equal(IO_URING_PARAMS_SIZE, 120);
  assert.equal(SQE_SIZE, 64);
  assert.equal(CQE_SIZE, 16);
});

Deno.test("io_uring: NOP and READV complete with their user_data; the eventfd is signalled", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, Uint8Array.from({ length: 8192 }, (_, i) => i & 0xff));
  const fd = openFile(path, { readOnly: true });
  const eventFd = createEventFd();
  const ring = new IoUring(8);
  try {
    assert.equal(ring.sqEntries, 8);
    assert.ok(ring.cqEntries >= 8);
    ring.registerEventFd(eventFd);
    const buffer = stableBuffer(100);
    const iov = new IovecList();
    iov.push(addressOf(buffer), buffer.length);
    assert.ok(ring.push({ opcode: IoUringOp.NOP, fd: -1, userData: 7 }));
    assert.ok(ring.push({
      opcode: IoUringOp.READV,
      fd,
      offset: 300,
      address: iov.address,
      length: iov.count,
      userData: 8,
    }));
    assert.equal(ring.pending, 2);
    assert.equal(ring.submit({ waitFor: 2 }), 2);
    const seen = new Map<number, number>();
    assert.equal(ring.reap((userData, result) => seen.set(userData, result)), 2);
    assert.deepEqual([...seen], [[7, 0], [8, 100]]);
    assert.equal(buffer[0], 300 & 0xff);
    assert.ok(drainEventFd(eventFd) > 0);
    // The submission ring fills, then frees as the kernel consumes entries.
    for (let i = 0; i < 8; i++) {
      assert.ok(ring.push({ opcode: IoUringOp.NOP, fd: -1, userData: i }));
    }
    assert.equal(ring.push({ opcode: IoUringOp.NOP, fd: -1, userData: 99 }), false);
    ring.submit({ waitFor: 8 });
    assert.equal(ring.sqSpace, 8);
    assert.equal(ring.reap(() => {}), 8);
  } finally {
    ring.close();
    close(eventFd);
    close(fd);
    await Deno.remove(path);
  }
});

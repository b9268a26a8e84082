import assert from "node:assert/strict";
import {
  bytesReadable,
  close,
  createEventFd,
  createMemfd,
  errnoName,
  fileSystemType,
  IovecList,
  mapShared,
  openReadOnly,
  preadv,
  pwritev,
  read,
  readv,
  socketPair,
  TMPFS_MAGIC,
  unmap,
  write,
  writev,
} from "./mod.ts";

Deno.test("scatter/gather I/O moves bytes between a socket and mapped memory", () => {
  const memfd = createMemfd("iov", 8192);
  const map = mapShared(memfd, { length: 8192, offset: 0 });
  const [a, b] = socketPair();
  try {
    const bytes = new Uint8Array(map.buffer);
    bytes.set([1, 2, 3], 100);
    bytes.set([4, 5], 5000);
    const iov = new IovecList(1);
    iov.push(map.address + 100, 3);
    iov.push(map.address + 5000, 2);
    assert.equal(iov.count, 2);
    assert.equal(iov.totalLength, 5);
    assert.equal(writev(a, iov), 5);
    const got = new Uint8Array(5);
    assert.equal(read(b, got), 5);
    assert.deepEqual([...got], [1, 2, 3, 4, 5]);

    assert.equal(write(b, new Uint8Array([9, 8, 7, 6, 5])), 5);
    iov.clear();
    iov.push(map.address + 200, 2);
    iov.push(map.address + 300, 3);
    assert.equal(readv(a, iov), 5);
    assert.deepEqual([...bytes.subarray(200, 202), ...bytes.subarray(300, 303)], [9, 8, 7, 6, 5]);

    iov.clear();
    iov.push(map.address + 200, 2);
    assert.equal(pwritev(memfd, iov, { offset: 4000 }), 2);
    iov.clear();
    iov.push(map.address + 7000, 2);
    assert.equal(preadv(memfd, iov, { offset: 4000 }), 2);
    assert.deepEqual([...bytes.subarray(7000, 7002)], [9, 8]);
  } finally {
    unmap(map);
    close(memfd);
    close(a);
    close(b);
  }
});

Deno.test("fileSystemType tells tmpfs (memfd) from procfs, and names a bad fd", () => {
  const memfd = createMemfd("fstatfs-test", 4096);
  const proc = openReadOnly("/proc/self/stat");
  try {
    assert.equal(fileSystemType(memfd), TMPFS_MAGIC);
    assert.equal(fileSystemType(proc), 0x9fa0); // PROC_SUPER_MAGIC
  } finally {
    close(memfd);
    close(proc);
  }
  assert.throws(() => fileSystemType(-1), /fstatfs.*EBADF/);
});

Deno.test("errno names are symbolic", () => {
  assert.equal(errnoName(11), "EAGAIN");
  assert.equal(errnoName(4242), "errno 4242");
});

Deno.test("openReadOnly opens files and names the path when it cannot", () => {
  const fd = openReadOnly("/dev/null", { nonBlocking: true });
  assert.equal(read(fd, new Uint8Array(4)), 0);
  close(fd);
  assert.throws(() => openReadOnly("/nonexistent/x"), /open\(\/nonexistent\/x\) failed: ENOENT/);
});

Deno.test("bytesReadable counts what a socket holds; an eventfd cannot tell", () => {
  const [a, b] = socketPair();
  const eventFd = createEventFd();
  try {
    assert.equal(bytesReadable(b), 0);
    write(a, new Uint8Array(1000));
    write(a, new Uint8Array(24));
    assert.equal(bytesReadable(b), 1024);
    assert.throws(() => bytesReadable(eventFd), /FIONREAD/);
  } finally {
    close(a);
    close(b);
    close(eventFd);
  }
});

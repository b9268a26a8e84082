// The I/O engines against a real file: vectored reads and writes, RWF_DSYNC,
// fdatasync, hole punching, errors as negated errnos, completions out of the
// submitting call. `auto` runs twice: on tmpfs (/dev/shm: everything
// inline) and on the disk file system of /tmp (cached reads inline, the
// rest on io_uring).
import assert from "node:assert/strict";
import { EventLoop } from "../../core/event_loop.ts";
import { Logger } from "../../core/log.ts";
import { addressOf, close, IovecList, openFile, stableBuffer } from "../../ffi/mod.ts";
import { AutoBlockIo, type FileRoute, fileRoute, INLINE_MAX_BYTES } from "./auto_block_io.ts";
import { type BlockIo, type BlockOp, SyncBlockIo } from "./block_io.ts";
import { UringBlockIo } from "./uring_block_io.ts";

const log = new Logger("test", { level: "error" });

function engine(name: string, options: { loop: EventLoop; fd: number }): BlockIo {
  if (name === "sync") return new SyncBlockIo();
  const ring = new UringBlockIo({ loop: options.loop, log });
  if (name === "io-uring") return ring;
  const route: FileRoute = fileRoute(options.fd);
  assert.equal(route, name === "auto-tmpfs" ? "memory" : "nowait");
  return new AutoBlockIo({ loop: options.loop, ring, routes: new Map([[options.fd, route]]) });
}

async function withEngine(
  name: string,
  body: (
    io: BlockIo,
    run: (op: BlockOp) => Promise<number>,
    fd: number,
    path: string,
  ) => Promise<void>,
): Promise<void> {
  const path = await Deno.makeTempFile({ dir: name === "auto-tmpfs" ? "/dev/shm" : undefined });
  await Deno.writeFile(path, new Uint8Array(1 << 20).fill(0x55));
  const fd = openFile(path, { readOnly: false });
  const loop = new EventLoop(log);
  const io = engine(name, { loop, fd });
  const running = loop.run();
  const run = (op: BlockOp): Promise<number> =>
    new Promise((resolve) => {
      let completed = false;
      io.submit(op, (result) => {
        completed = true;
        resolve(result);
      });
      assert.equal(completed, false, "no completion inside submit");
      io.flush();
    });
  try {
    await body(io, run, fd, path);
  } finally {
    io.close();
    loop.stop();
    await running;
    loop.close();
    close(fd);
    await Deno.remove(path);
  }
}

for (const name of ["sync", "io-uring", "auto-tmpfs", "auto-disk"]) {
  Deno.test(`block io (${name}): readv, writev (+ dsync), fdatasync, punch hole, errors`, async () => {
    await withEngine(name, async (io, run, fd, path) => {
      const a = stableBuffer(4096).fill(1);
      const b = stableBuffer(512).fill(2);
      const iov = new IovecList();
      iov.push(addressOf(a), a.length);
      iov.push(addressOf(b), b.length);
      assert.equal(await run({ kind: "writev", fd, iov, offset: 8192, dsync: true }), 4608);
      assert.equal(await run({ kind: "fdatasync", fd }), 0);
      const back = stableBuffer(4608);
      const readIov = new IovecList();
      readIov.push(addressOf(back), back.length);
      assert.equal(await run({ kind: "readv", fd, iov: readIov, offset: 8192 }), 4608);
      assert.deepEqual(back.subarray(0, 4096), a);
      assert.deepEqual(back.subarray(4096), b);
      const before = (await Deno.stat(path)).blocks!;
      assert.equal(await run({ kind: "punch-hole", fd, offset: 0, length: 512 << 10 }), 0);
      assert.ok((await Deno.stat(path)).blocks! < before, "blocks were deallocated");
      const zero = stableBuffer(4096).fill(9);
      const zeroIov = new IovecList();
      zeroIov.push(addressOf(zero), zero.length);
      assert.equal(await run({ kind: "readv", fd, iov: zeroIov, offset: 4096 }), 4096);
      assert.ok(zero.every((x) => x === 0), "a hole reads zeros");
      assert.equal((await Deno.stat(path)).size, 1 << 20, "KEEP_SIZE");
      assert.equal(await run({ kind: "readv", fd: 9999, iov: zeroIov, offset: 0 }), -9, "EBADF");
      assert.equal(io.inFlight, 0);
      if (io instanceof AutoBlockIo) {
        // tmpfs: all 5 inline; disk: the 2 cached reads. The unknown fd 9999 goes to the ring.
        assert.deepEqual(
          io.counts,
          name === "auto-tmpfs" ? { inline: 5, ring: 1 } : {
            inline: 2,
            ring: 4,
          },
        );
      }
    });
  });
}

/** A file for {@link withAutoIo}: where it lives, its size and fill byte, and its route. */
interface AutoFile {
  dir?: string;
  size: number;
  fill: number;
  route: FileRoute;
}

/** Runs `body` with an {@link AutoBlockIo} on a running loop over `files`, opened in order. */
async function withAutoIo(
  files: readonly AutoFile[],
  body: (io: AutoBlockIo, fds: number[]) => Promise<void>,
): Promise<void> {
  const paths: string[] = [];
  const fds: number[] = [];
  for (const file of files) {
    const path = await Deno.makeTempFile({ dir: file.dir });
    await Deno.writeFile(path, new Uint8Array(file.size).fill(file.fill));
    paths.push(path);
    fds.push(openFile(path, { readOnly: false }));
  }
  const loop = new EventLoop(log);
  const running = loop.run();
  const io = new AutoBlockIo({
    loop,
    ring: new UringBlockIo({ loop, log }),
    routes: new Map(files.map((file, i) => [fds[i], file.route])),
  });
  try {
    await body(io, fds);
  } finally {
    io.close();
    loop.stop();
    await running;
    loop.close();
    for (const fd of fds) close(fd);
    for (const path of paths) await Deno.remove(path);
  }
}

/** Submits `op` and resolves with its result once the engine completes it. */
function submitted(io: BlockIo, op: BlockOp): Promise<number> {
  return new Promise<number>((resolve) => {
    io.submit(op, resolve);
    io.flush();
  });
}

Deno.test("block io (auto): a file system without RWF_NOWAIT sends its reads to the ring", async () => {
  // tmpfs routed as a disk: preadv2(RWF_NOWAIT) fails with EOPNOTSUPP there.
  const file = { dir: "/dev/shm", size: 8192, fill: 7, route: "nowait" } as const;
  await withAutoIo([file], async (io, [fd]) => {
    const buffer = stableBuffer(4096);
    const iov = new IovecList(1);
    iov.push(addressOf(buffer), buffer.length);
    for (const offset of [0, 4096]) {
      assert.equal(await submitted(io, { kind: "readv", fd, iov, offset }), 4096);
      assert.ok(buffer.every((b) => b === 7));
    }
    assert.deepEqual(io.counts, { inline: 0, ring: 2 });
  });
});

Deno.test("block io (auto): a transfer beyond INLINE_MAX_BYTES goes to the ring, even on tmpfs", async () => {
  const file = { dir: "/dev/shm", size: 2 * INLINE_MAX_BYTES, fill: 5, route: "memory" } as const;
  await withAutoIo([file], async (io, [fd]) => {
    assert.equal(fileRoute(fd), "memory");
    const buffer = stableBuffer(2 * INLINE_MAX_BYTES);
    for (const length of [INLINE_MAX_BYTES, 2 * INLINE_MAX_BYTES]) {
      const iov = new IovecList(1);
      iov.push(addressOf(buffer), length);
      assert.equal(await submitted(io, { kind: "readv", fd, iov, offset: 0 }), length);
    }
    assert.ok(buffer.every((b) => b === 5));
    assert.deepEqual(io.counts, { inline: 1, ring: 1 });
  });
});

Deno.test("block io (auto): a follow-up submitted from a ring completion is flushed by the loop", async () => {
  const shm = { dir: "/dev/shm", size: 4096, fill: 3, route: "memory" } as const;
  const disk = { size: 4096, fill: 4, route: "nowait" } as const;
  await withAutoIo([shm, disk], async (io, [shmFd, diskFd]) => {
    const buffer = stableBuffer(4096);
    const iov = new IovecList(1);
    iov.push(addressOf(buffer), buffer.length);
    // fdatasync goes to the ring; its completion (run by the ring's eventfd
    // handler, not by a flush of ours) submits an inline read.
    const result = await new Promise<number>((resolve) => {
      io.submit({ kind: "fdatasync", fd: diskFd }, (synced) => {
        assert.equal(synced, 0);
        io.submit({ kind: "readv", fd: shmFd, iov, offset: 0 }, resolve);
      });
      io.flush();
    });
    assert.equal(result, 4096);
    assert.ok(buffer.every((b) => b === 3));
  });
});

Deno.test("block io (io-uring): many operations in flight complete, beyond the ring's size", async () => {
  await withEngine("io-uring", async (io, _run, fd) => {
    const count = 1500;
    const buffers = Array.from({ length: count }, () => stableBuffer(512));
    let done = 0;
    const all = new Promise<void>((resolve) => {
      buffers.forEach((buffer, i) => {
        const iov = new IovecList(1);
        iov.push(addressOf(buffer), 512);
        io.submit({ kind: "readv", fd, iov, offset: (i % 2048) * 512 }, (result) => {
          assert.equal(result, 512);
          if (++done === count) resolve();
        });
      });
      io.flush();
    });
    await all;
    assert.ok(buffers.every((b) => b[0] === 0x55));
    assert.equal(io.inFlight, 0);
  });
});

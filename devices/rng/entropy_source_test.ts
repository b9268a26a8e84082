import assert from "node:assert/strict";
import { EventLoop } from "../../core/event_loop.ts";
import { Logger } from "../../core/log.ts";
import { type GuestSlice, MemoryRegion } from "../../core/memory/guest_memory.ts";
import { close, createMemfd, mapShared } from "../../ffi/mod.ts";
import { IOV_MAX } from "../../ffi/mod.ts";
import { FileEntropySource, READ_AHEAD_BYTES } from "./entropy_source.ts";

const log = new Logger("test", { level: "off" });

/** A real shared mapping, as guest RAM is, so readv writes into it. */
function mappedRegion(size: number): MemoryRegion {
  const fd = createMemfd("rng-test", size);
  try {
    return new MemoryRegion(
      { guestPhysAddr: 0, memorySize: size, userspaceAddr: 0, mmapOffset: 0 },
      mapShared(fd, { length: size, offset: 0 }),
    );
  } finally {
    close(fd);
  }
}

async function withSource(
  contents: Uint8Array,
  fn: (source: FileEntropySource, region: MemoryRegion) => void,
): Promise<void> {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, contents);
  const loop = new EventLoop(log);
  const source = FileEntropySource.open(path, { loop });
  const region = mappedRegion(0x10000);
  region.retain();
  try {
    fn(source, region);
  } finally {
    source.close();
    loop.close();
    region.release();
    await Deno.remove(path);
  }
}

Deno.test("file source: readv fills guest slices in order, stopping at the length asked", async () => {
  const contents = Uint8Array.from({ length: 256 }, (_, i) => i);
  await withSource(contents, (source, region) => {
    const slices: GuestSlice[] = [
      { region, offset: 0x100, length: 4 },
      { region, offset: 0x0, length: 0 },
      { region, offset: 0x200, length: 8 },
    ];
    assert.equal(source.read(slices, 10), 10);
    assert.deepEqual([...region.bytes.subarray(0x100, 0x104)], [0, 1, 2, 3]);
    assert.deepEqual([...region.bytes.subarray(0x200, 0x208)], [4, 5, 6, 7, 8, 9, 0, 0]);
    // The shared file offset moves on: each byte is handed out once.
    assert.equal(source.read(slices, 1), 1);
    assert.equal(region.bytes[0x100], 10);
    assert.equal(source.read(slices, 0), 0);
  });
});

Deno.test("file source: small requests come from the read-ahead, each byte once and in order", async () => {
  const size = 2 * READ_AHEAD_BYTES + 100;
  const contents = Uint8Array.from({ length: size }, (_, i) => i % 251);
  await withSource(contents, (source, region) => {
    const got: number[] = [];
    const slices = [{ region, offset: 0, length: 64 }];
    // 64-byte requests, as Linux's driver sends them, across read-ahead boundaries.
    for (let n; (n = source.read(slices, 64)) !== 0;) {
      assert.ok(n !== null && n > 0);
      got.push(...region.bytes.subarray(0, n));
    }
    assert.deepEqual(got, [...contents]);
  });
});

Deno.test("file source: a large request takes what was read ahead, then reads into guest memory", async () => {
  const size = 3 * READ_AHEAD_BYTES;
  const contents = Uint8Array.from({ length: size }, (_, i) => i % 253);
  await withSource(contents, (source, region) => {
    const large = 2 * READ_AHEAD_BYTES;
    const slices = [{ region, offset: 0, length: 8 }, { region, offset: 0x100, length: large }];
    assert.equal(source.read(slices, 10), 10);
    // The rest of the read-ahead first, so the bytes stay in file order.
    assert.equal(source.read(slices, large), large);
    assert.deepEqual(
      [...region.bytes.subarray(0, 8), ...region.bytes.subarray(0x100, 0x100 + large - 8)],
      [...contents.subarray(10, 10 + large)],
    );
    assert.equal(source.read(slices, 64), 64);
    assert.equal(region.bytes[0], contents[10 + large]);
  });
});

Deno.test("file source: end of file reads 0", async () => {
  await withSource(new Uint8Array([7]), (source, region) => {
    const slices = [{ region, offset: 0, length: 16 }];
    assert.equal(source.read(slices, 16), 1);
    assert.equal(source.read(slices, 16), 0);
  });
});

Deno.test("file source: at most IOV_MAX iovecs go to one readv", async () => {
  await withSource(new Uint8Array(4096).fill(0xaa), (source, region) => {
    const slices = Array.from({ length: IOV_MAX + 10 }, (_, i) => ({
      region,
      offset: i * 2,
      length: 2,
    }));
    assert.equal(source.read(slices, 4096), 2 * IOV_MAX);
  });
});

Deno.test("file source: /dev/urandom gives bytes straight into a mapping", () => {
  const loop = new EventLoop(log);
  const source = FileEntropySource.open("/dev/urandom", { loop });
  const region = mappedRegion(0x10000);
  region.retain();
  try {
    assert.equal(source.read([{ region, offset: 0, length: 0x10000 }], 0x10000), 0x10000);
    const distinct = new Set(region.bytes).size;
    assert.equal(distinct, 256);
  } finally {
    source.close();
    loop.close();
    region.release();
  }
});

Deno.test("file source: a FIFO with nothing to read returns null and wakes its waiters", async () => {
  const dir = await Deno.makeTempDir();
  const fifo = `${dir}/fifo`;
  const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assert.ok(mk.success);
  const loop = new EventLoop(log);
  const source = FileEntropySource.open(fifo, { loop });
  const writer = await Deno.open(fifo, { write: true });
  const region = mappedRegion(0x1000);
  region.retain();
  try {
    const slices = [{ region, offset: 0, length: 4 }];
    assert.equal(source.read(slices, 4), null);
    const woken: string[] = [];
    source.whenReadable(() => woken.push("a"));
    const cancelB = source.whenReadable(() => woken.push("b"));
    source.whenReadable(() => woken.push("c"));
    cancelB();
    await writer.write(new Uint8Array([9, 8, 7, 6]));
    const running = loop.run();
    const deadline = performance.now() + 2000;
    while (woken.length < 2 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    loop.stop();
    await running;
    assert.deepEqual(woken, ["a", "c"]);
    assert.equal(source.read(slices, 4), 4);
    assert.deepEqual([...region.bytes.subarray(0, 4)], [9, 8, 7, 6]);
    // A request the read-ahead cannot fill gets what the source has now.
    await writer.write(new Uint8Array(70).fill(5));
    const wide = [{ region, offset: 0, length: 64 }];
    assert.equal(source.read(wide, 64), 64);
    assert.equal(source.read(wide, 64), 6);
    assert.equal(source.read(wide, 64), null);
  } finally {
    writer.close();
    source.close();
    loop.close();
    region.release();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file source: a missing file, a directory, an unreadable file fail in one line", async () => {
  const loop = new EventLoop(log);
  const dir = await Deno.makeTempDir();
  try {
    assert.throws(
      () => FileEntropySource.open(`${dir}/missing`, { loop }),
      /^Error: cannot read the rng source .*missing: no such file$/,
    );
    assert.throws(
      () => FileEntropySource.open(dir, { loop }),
      /cannot read the rng source .*: is a directory$/,
    );
    if (Deno.uid() !== 0) {
      await Deno.writeFile(`${dir}/secret`, new Uint8Array(1), { mode: 0o000 });
      assert.throws(() => FileEntropySource.open(`${dir}/secret`, { loop }), /EACCES/);
    }
  } finally {
    loop.close();
    await Deno.remove(dir, { recursive: true });
  }
});

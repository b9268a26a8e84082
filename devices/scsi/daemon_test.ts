// The daemon process: command-line failures, a read-only image, hole
// punching, 4096-byte blocks, task management around requests in flight,
// and a storm of random requests it must answer without dying.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeResponse,
  GUEST_FEATURES,
  ScsiSession,
  startScsiDaemon,
  type TestResponse,
} from "./testing.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const MiB = 1 << 20;

async function runMain(args: string[]): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

function be32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function check(r: TestResponse, key: number, asc: number, ascq = 0): void {
  assert.equal(r.response, 0);
  assert.equal(r.status, 2);
  assert.deepEqual(r.senseCode, [key, asc, ascq]);
}

function good(r: TestResponse): void {
  assert.equal(r.response, 0);
  assert.equal(r.status, 0, `sense ${r.senseCode}`);
}

Deno.test("scsi main: bad images and flags are one line and a non-zero exit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/ragged.img`, new Uint8Array(1000));
    const cases: [string[], number, RegExp][] = [
      [["-s", `${dir}/s`, `${dir}/missing.img`], 1, /image .*missing\.img: no such file/],
      [["-s", `${dir}/s`, `${dir}/ragged.img`], 1, /1000 bytes is not a whole/],
      [["-s", `${dir}/s`], 2, /no image given/],
      [["-s", `${dir}/s`, "--block-size", "520", `${dir}/ragged.img`], 2, /--block-size/],
    ];
    for (const [args, code, message] of cases) {
      const result = await runMain(args);
      assert.equal(result.code, code, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, /^vhost-device-scsi: error: /);
    }
    const caps = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "--print-capabilities"],
    }).output();
    assert.equal(new TextDecoder().decode(caps.stdout).trim(), '{"type":"scsi"}');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scsi daemon: --read-only refuses every write with DATA PROTECT and keeps the image", async () => {
  const path = await Deno.makeTempFile();
  const content = Uint8Array.from({ length: MiB }, (_, i) => i % 251);
  await Deno.writeFile(path, content);
  await using daemon = await startScsiDaemon(["--read-only", path]);
  const s = await ScsiSession.connect(daemon.socket);
  try {
    const fd = [...Deno.readDirSync(`/proc/${daemon.pid}/fd`)].map((e) => e.name).find((n) => {
      try {
        return Deno.readLinkSync(`/proc/${daemon.pid}/fd/${n}`) === Deno.realPathSync(path);
      } catch {
        return false;
      }
    });
    const flags = Deno.readTextFileSync(`/proc/${daemon.pid}/fdinfo/${fd}`);
    assert.equal(Number.parseInt(/flags:\s+(\d+)/.exec(flags)![1], 8) & 3, 0, "opened O_RDONLY");
    const r = s.run({ cdb: [0x1a, 0, 0x3f, 0, 255, 0], dataIn: 255 });
    assert.equal(r.data[2] & 0x80, 0x80, "WP");
    const block = new Uint8Array(512).fill(1);
    check(s.run({ cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: block }), 7, 0x27);
    check(s.run({ cdb: [0x0a, 0, 0, 0, 1, 0], dataOut: block }), 7, 0x27);
    check(
      s.run({ cdb: [0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: new Uint8Array(512) }),
      7,
      0x27,
    );
    const unmap = new Uint8Array(24);
    unmap.set([0, 22, 0, 16], 0);
    unmap.set([...be32(0), ...be32(0), ...be32(8)], 8);
    check(s.run({ cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], dataOut: unmap }), 7, 0x27);
    good(s.run({ cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] }));
    good(s.run({ cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataIn: 512 }));
    assert.deepEqual(await Deno.readFile(path), content);
  } finally {
    s.close();
    await daemon.stop();
    await Deno.remove(path);
  }
});

Deno.test("scsi daemon: UNMAP and WRITE SAME punch holes; 4096-byte blocks", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, new Uint8Array(8 * MiB).fill(0xaa));
  await using daemon = await startScsiDaemon(["--block-size", "4096", path]);
  const s = await ScsiSession.connect(daemon.socket);
  try {
    let r = s.run({ cdb: [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 8 });
    assert.deepEqual([...r.data], [...be32(2047), ...be32(4096)]);
    const allocated = async () => ((await Deno.stat(path)).blocks ?? 0) * 512;
    const before = await allocated();
    // UNMAP blocks 0..255 (1 MiB) and 512..767.
    const list = new Uint8Array(8 + 32);
    list.set([0, 38, 0, 32]);
    list.set([0, 0, 0, 0, ...be32(0), ...be32(256), 0, 0, 0, 0], 8);
    list.set([0, 0, 0, 0, ...be32(512), ...be32(256), 0, 0, 0, 0], 24);
    good(s.run({ cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], dataOut: list }));
    assert.ok(before - (await allocated()) >= 2 * MiB, "2 MiB deallocated");
    // WRITE SAME(16) with UNMAP and a zero block: a hole too; NDOB the same.
    good(
      s.run({
        cdb: [0x93, 0x08, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0],
        dataOut: new Uint8Array(4096),
      }),
    );
    good(s.run({ cdb: [0x93, 0x09, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0] }));
    // WRITE SAME(10) of a pattern writes it.
    const pattern = new Uint8Array(4096).fill(0x3c);
    good(s.run({ cdb: [0x41, 0, 0, 0, 0x06, 0, 0, 0, 3, 0], dataOut: pattern }));
    const image = await Deno.readFile(path);
    assert.ok(image.subarray(0, MiB).every((b) => b === 0));
    assert.ok(image.subarray(1024 * 4096, 1041 * 4096).every((b) => b === 0), "blocks 1024..1040");
    assert.ok(image.subarray(1536 * 4096, 1539 * 4096).every((b) => b === 0x3c));
    assert.ok(image.subarray(MiB, 2 * MiB).every((b) => b === 0xaa), "untouched");
    r = s.run({ cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataIn: 4096 });
    assert.ok(r.data.every((b) => b === 0));
    // Parameter list errors.
    check(s.run({ cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0], dataOut: list.subarray(0, 4) }), 5, 0x1a);
    const far = list.slice(0, 24);
    far.set(be32(3000), 12);
    check(s.run({ cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], dataOut: far }), 5, 0x21);
    check(s.run({ cdb: [0x41, 0x10, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: pattern }), 5, 0x24);
    assert.equal(
      s.run({ cdb: [0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: pattern.subarray(0, 512) }).response,
      1,
    );
  } finally {
    s.close();
    await daemon.stop();
    await Deno.remove(path);
  }
});

Deno.test("scsi daemon: VERIFY with BYTCHK compares with the image; WRITE SAME over its limit points at its count", async () => {
  const path = await Deno.makeTempFile();
  // Sparse 2 GiB: room for a WRITE SAME(16) longer than its 1 GiB limit.
  await Deno.truncate(path, 2048 * MiB);
  const file = await Deno.open(path, { write: true });
  const stored = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff);
  await file.write(stored);
  file.close();
  await using daemon = await startScsiDaemon([path]);
  const s = await ScsiSession.connect(daemon.socket);
  const verify10 = (byteCheck: number, lba: number, blocks: number) => [
    0x2f,
    byteCheck << 1,
    ...be32(lba),
    0,
    blocks >> 8,
    blocks & 0xff,
    0,
  ];
  try {
    // BYTCHK=1: the same bytes compare equal; one byte off is a MISCOMPARE at its offset.
    good(s.run({ cdb: verify10(1, 0, 8), dataOut: stored }));
    const changed = stored.slice();
    changed[1234] ^= 0xff;
    let r = s.run({ cdb: verify10(1, 0, 8), dataOut: changed });
    check(r, 0x0e, 0x1d);
    assert.equal(r.sense[0], 0xf0, "VALID");
    assert.deepEqual([...r.sense.subarray(3, 7)], be32(1234), "INFORMATION: the byte offset");
    // VERIFY(16), BYTCHK=3: one block compared with each block of the range (zeros here).
    good(
      s.run({
        cdb: [0x8f, 0x06, 0, 0, 0, 0, ...be32(16), ...be32(4), 0, 0],
        dataOut: new Uint8Array(512),
      }),
    );
    r = s.run({
      cdb: [0x8f, 0x06, 0, 0, 0, 0, ...be32(6), ...be32(4), 0, 0],
      dataOut: stored.subarray(0, 512),
    });
    check(r, 0x0e, 0x1d);
    // Blocks 6 and 7 hold block 0's bytes; block 8 is zeros: its byte 1 is the first to differ.
    assert.deepEqual([...r.sense.subarray(3, 7)], be32(2 * 512 + 1));
    // Too little data-out for the range: OVERRUN; beyond the image: LBA OUT OF RANGE.
    assert.equal(s.run({ cdb: verify10(1, 0, 8), dataOut: stored.subarray(0, 512) }).response, 1);
    check(s.run({ cdb: verify10(3, 4194303, 2), dataOut: new Uint8Array(512) }), 5, 0x21);
    // BYTCHK=0 checks the range only.
    good(s.run({ cdb: verify10(0, 0, 8) }));
    // WRITE SAME(16) of 2^21 + 1 blocks (over 1 GiB): INVALID FIELD at byte 10, the count.
    r = s.run({
      cdb: [0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(0x200001), 0, 0],
      dataOut: new Uint8Array(512),
    });
    check(r, 5, 0x24);
    assert.deepEqual([...r.sense.subarray(15, 18)], [0xc0, 0, 10]);
  } finally {
    s.close();
    await daemon.stop();
    await Deno.remove(path);
  }
});

Deno.test("scsi daemon: unit attention after power on and resets; MODE SELECT turns the write cache off", async () => {
  const dir = await Deno.makeTempDir();
  const paths = [`${dir}/a.img`, `${dir}/b.img`];
  for (const path of paths) await Deno.writeFile(path, new Uint8Array(MiB));
  await using daemon = await startScsiDaemon(paths);
  const tur = (lun: number) => s.run({ cdb: [0x00, 0, 0, 0, 0, 0], lun });
  const wce = (): number => s.run({ cdb: [0x1a, 0x08, 0x08, 0, 255, 0], dataIn: 255 }).data[6];
  const reset = (subtype: number, lun: number) => {
    const req = new Uint8Array(24);
    new DataView(req.buffer).setUint32(4, subtype, true);
    req.set([1, 0, 0, lun], 8);
    s.queues[0].add({ readable: [req], writable: [1] });
    s.kick(0);
    assert.deepEqual(s.collect(0, 1).map((u) => u.data[0]), [0], "FUNCTION COMPLETE");
  };
  let s = await ScsiSession.connect(daemon.socket, { keepUnitAttention: true });
  try {
    // INQUIRY and REPORT LUNS do not report it; the first other command does, once.
    good(s.run({ cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 }));
    good(s.run({ cdb: [0xa0, 0, 0, 0, 0, 0, ...be32(64), 0, 0], dataIn: 64 }));
    check(tur(0), 0x6, 0x29);
    good(tur(0));
    // REQUEST SENSE returns it as its data, and clears it.
    const r = s.run({ cdb: [0x03, 0, 0, 0, 18, 0], dataIn: 18, lun: 1 });
    good(r);
    assert.deepEqual([r.data[2], r.data[12], r.data[13]], [0x6, 0x29, 0]);
    good(tur(1));

    // MODE SELECT(6): the caching page with WCE=0; MODE SENSE then reports it.
    assert.equal(wce(), 0x04);
    const caching = [0x08, 0x12, 0, ...new Array(17).fill(0)];
    const list = Uint8Array.from([0, 0, 0, 0, ...caching]);
    good(s.run({ cdb: [0x15, 0x10, 0, 0, list.length, 0], dataOut: list }));
    assert.equal(wce(), 0);
    // An unchangeable field: INVALID FIELD IN PARAMETER LIST, pointing at its byte.
    const control = Uint8Array.from([0, 0, 0, 0, 0x0a, 0x0a, 0, 0, ...new Array(8).fill(0)]);
    const refused = s.run({ cdb: [0x15, 0x10, 0, 0, control.length, 0], dataOut: control });
    check(refused, 0x5, 0x26);
    assert.deepEqual([...refused.sense.subarray(15, 18)], [0x80, 0, 7]);
    // Write-through: a plain WRITE is in the image when it completes.
    good(s.run({ cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: new Uint8Array(512).fill(9) }));
    assert.equal((await Deno.readFile(paths[0]))[0], 9);

    // LOGICAL UNIT RESET: that unit's next command reports it; the other's does not.
    reset(5, 1);
    good(tur(0));
    check(tur(1), 0x6, 0x29);
    // I_T NEXUS RESET: every unit.
    reset(4, 0);
    check(tur(0), 0x6, 0x29);
    check(tur(1), 0x6, 0x29);

    // A new front-end is a power on: the write cache is back on, and a unit attention.
    s.close();
    s = await ScsiSession.connect(daemon.socket, { keepUnitAttention: true });
    check(tur(0), 0x6, 0x29);
    assert.equal(wce(), 0x04);
  } finally {
    s.close();
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scsi daemon: TMFs wait for the requests they cover; random requests never end the daemon", async () => {
  const path = await Deno.makeTempFile();
  await Deno.truncate(path, 16 * MiB);
  await using daemon = await startScsiDaemon(["--num-queues", "2", path]);
  const s = await ScsiSession.connect(daemon.socket, { requestQueues: 2, memoryMiB: 128 });
  try {
    // Eight 1 MiB reads in flight on queue 2, then LOGICAL UNIT RESET and ABORT TASK.
    for (let i = 0; i < 8; i++) {
      s.add({ cdb: [0x28, 0, ...be32(i * 2048), 0, 0x08, 0, 0], dataIn: MiB, id: BigInt(i) });
    }
    s.kick(2);
    const tmf = (subtype: number, id: bigint) => {
      const req = new Uint8Array(24);
      new DataView(req.buffer).setUint32(4, subtype, true);
      req.set([1, 0, 0, 0], 8);
      new DataView(req.buffer).setBigUint64(16, id, true);
      s.queues[0].add({ readable: [req], writable: [1] });
    };
    tmf(5, 0n);
    tmf(0, 3n);
    s.kick(0);
    const reads = s.collect(2, 8).map(decodeResponse);
    assert.ok(reads.every((r) => r.status === 0 && r.data.length === MiB));
    const answers = s.collect(0, 2).map((u) => u.data[0]);
    assert.deepEqual(answers, [0, 0], "FUNCTION COMPLETE after the reads");

    // Random CDBs, LUN fields and buffer sizes on both queues.
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.constantFrom(0, 1, 2),
        fc.nat(9000),
        fc.nat(9000),
        fc.boolean(),
        (cdb, lunCase, inSize, outSize, second) => {
          const lunField = [[1, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0x40, 7, 0, 0, 0, 0], [
            9,
            9,
            9,
            9,
            9,
            9,
            9,
            9,
          ]][lunCase];
          const q = second ? 3 : 2;
          // Keep writes away from nothing: any LBA may be hit, the image is scratch.
          s.add({
            cdb: [...cdb],
            lunField,
            dataIn: inSize,
            dataOut: outSize ? new Uint8Array(outSize) : undefined,
            queue: q,
          });
          s.kick(q);
          const r = decodeResponse(s.collect(q, 1)[0]);
          return r.length >= 108 && [0, 1, 3].includes(r.response);
        },
      ),
      { numRuns: 400 },
    );
    good(s.run({ cdb: [0, 0, 0, 0, 0, 0] }));
    assert.ok(daemon.running);
  } finally {
    s.close();
    await daemon.stop();
    await Deno.remove(path);
  }
});

Deno.test("scsi daemon: GET_VRING_BASE returns only after the requests in flight are answered", async () => {
  // On the disk's file system, not tmpfs: the flushes must take time.
  const path = await Deno.makeTempFile({ dir: "/var/tmp" });
  await Deno.writeFile(path, new Uint8Array(32 * MiB).fill(7));
  await using daemon = await startScsiDaemon([path]);
  const s = await ScsiSession.connect(daemon.socket, { memoryMiB: 128 });
  try {
    for (let round = 0; round < 3; round++) {
      // FUA writes: each waits for the disk (RWF_DSYNC on ext4 or the like).
      for (let i = 0; i < 16; i++) {
        s.add({
          cdb: [0x2a, 0x08, ...be32(i * 2048), 0, 0x08, 0, 0],
          dataOut: new Uint8Array(MiB).fill(round + 1),
        });
      }
      s.kick(2);
      // Stop at once: the writes are on io_uring's workers now.
      const [, , base] = s.frontend.stop();
      // Two commands before: REPORT LUNS and the TEST UNIT READY that took the unit attention.
      assert.equal(base, 2 + (round + 1) * 16);
      const used = s.queues[2].takeUsed().map(decodeResponse);
      assert.equal(used.length, 16, "every request taken was answered");
      assert.ok(used.every((r) => r.status === 0));
      const image = await Deno.readFile(path);
      assert.ok(image.subarray(0, 16 * MiB).every((b) => b === round + 1));
      s.frontend.start({ memory: s.memory, queues: s.queues, features: GUEST_FEATURES });
    }
  } finally {
    s.close();
    await daemon.stop();
    await Deno.remove(path);
  }
});

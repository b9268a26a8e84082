// The real vhost-device-scsi process driven through the TypeScript
// front-end (frontend/): real socket, memfd guest RAM, eventfds, and
// real image files, with each I/O engine (auto: LUN 0 on tmpfs, LUN 1 on
// the disk file system of /tmp, so both of its routes serve).
import assert from "node:assert/strict";
import { decodeResponse, ScsiSession, startScsiDaemon, type TestResponse } from "./testing.ts";

const MiB = 1 << 20;

async function image(
  size: number,
  fill?: (bytes: Uint8Array) => void,
  dir?: string,
): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "scsi-image-", dir });
  const bytes = new Uint8Array(size);
  fill?.(bytes);
  await Deno.writeFile(path, bytes);
  return path;
}

function be32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function be16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

const read10 = (
  lba: number,
  blocks: number,
  flags = 0,
) => [0x28, flags, ...be32(lba), 0, ...be16(blocks), 0];
const write10 = (
  lba: number,
  blocks: number,
  flags = 0,
) => [0x2a, flags, ...be32(lba), 0, ...be16(blocks), 0];
const read16 = (
  lba: number,
  blocks: number,
) => [0x88, 0, 0, 0, 0, 0, ...be32(lba), ...be32(blocks), 0, 0];
const write16 = (
  lba: number,
  blocks: number,
) => [0x8a, 0, 0, 0, 0, 0, ...be32(lba), ...be32(blocks), 0, 0];

function good(r: TestResponse): void {
  assert.equal(r.response, 0, `response ${r.response}`);
  assert.equal(r.status, 0, `status ${r.status}, sense ${r.senseCode}`);
}

function check(r: TestResponse, key: number, asc: number, ascq = 0): void {
  assert.equal(r.response, 0);
  assert.equal(r.status, 2, "CHECK CONDITION");
  assert.deepEqual(r.senseCode, [key, asc, ascq]);
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7 + (i >> 9)) & 0xff);
}

for (const io of ["auto", "io-uring", "sync"]) {
  Deno.test(`scsi daemon (${io}): identity, capacity, data path, errors, TMF, reconnect`, async () => {
    const disk0 = await image(4 * MiB, undefined, io === "auto" ? "/dev/shm" : undefined);
    const disk1 = await image(2 * MiB, (b) => b.set(pattern(4096, 9), 8192));
    await using daemon = await startScsiDaemon(["--io", io, "--num-queues", "2", disk0, disk1]);
    const s = await ScsiSession.connect(daemon.socket, { requestQueues: 2 });
    try {
      // TEST UNIT READY, INQUIRY (standard and VPD), READ CAPACITY.
      good(s.run({ cdb: [0x00, 0, 0, 0, 0, 0] }));
      let r = s.run({ cdb: [0x12, 0, 0, 0, 96, 0], dataIn: 96 });
      good(r);
      assert.equal(r.data.length, 36);
      assert.equal(r.residual, 60);
      assert.equal(new TextDecoder().decode(r.data.subarray(8, 16)), "rust-vmm");
      r = s.run({ cdb: [0x12, 1, 0x00, 0, 255, 0], dataIn: 255 });
      good(r);
      assert.deepEqual([...r.data.subarray(4)], [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
      r = s.run({ cdb: [0x12, 1, 0x80, 0, 255, 0], dataIn: 255 });
      good(r);
      assert.match(new TextDecoder().decode(r.data.subarray(4)), /^[0-9a-f]{16}$/);
      r = s.run({ cdb: [0x12, 1, 0xb0, 0, 255, 0], dataIn: 255 });
      good(r);
      assert.equal(r.data[4] & 1, 1, "WSNZ");
      r = s.run({ cdb: [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 8 });
      good(r);
      assert.deepEqual([...r.data], [...be32(8191), ...be32(512)]);
      r = s.run({ cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(32), 0, 0], dataIn: 32 });
      good(r);
      assert.equal(r.data[14] & 0xc0, 0xc0, "LBPME | LBPRZ");
      r = s.run({ cdb: [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 8, lun: 1 });
      assert.deepEqual([...r.data], [...be32(4095), ...be32(512)]);

      // REPORT LUNS, a missing LUN, a missing target, a malformed LUN field.
      r = s.run({ cdb: [0xa0, 0, 0, 0, 0, 0, ...be32(64), 0, 0], dataIn: 64 });
      good(r);
      assert.deepEqual([...r.data], [
        0,
        0,
        0,
        16,
        0,
        0,
        0,
        0,
        ...new Array(8).fill(0),
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
      ]);
      r = s.run({ cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36, lun: 5 });
      good(r);
      assert.equal(r.data[0], 0x7f, "peripheral qualifier 011b");
      check(s.run({ cdb: [0x00, 0, 0, 0, 0, 0], lun: 5 }), 0x5, 0x25);
      check(s.run({ cdb: read10(0, 1), lun: 300, dataIn: 512 }), 0x5, 0x25);
      assert.equal(s.run({ cdb: [0x00, 0, 0, 0, 0, 0], target: 1 }).response, 3, "BAD_TARGET");
      assert.equal(
        s.run({ cdb: [0x00, 0, 0, 0, 0, 0], lunField: [2, 0, 0, 0, 0, 0, 0, 0] }).response,
        3,
      );

      // Data: write then read back, READ(16)/WRITE(16), FUA, across queues.
      const data = pattern(8192, 1);
      good(s.run({ cdb: write10(100, 16), dataOut: data }));
      r = s.run({ cdb: read10(100, 16), dataIn: 8192 });
      good(r);
      assert.deepEqual(r.data, data);
      good(s.run({ cdb: write16(200, 8), dataOut: data.subarray(0, 4096), queue: 3 }));
      good(s.run({ cdb: write10(300, 1, 0x08), dataOut: data.subarray(0, 512) }));
      r = s.run({ cdb: read16(200, 8), dataIn: 4096, queue: 3 });
      assert.deepEqual(r.data, data.subarray(0, 4096));
      const onDisk = await Deno.readFile(disk0);
      assert.deepEqual(onDisk.subarray(100 * 512, 116 * 512), data);
      assert.deepEqual(onDisk.subarray(300 * 512, 301 * 512), data.subarray(0, 512));
      r = s.run({ cdb: read10(16, 8), dataIn: 4096, lun: 1 });
      assert.deepEqual(r.data, pattern(4096, 9));
      good(s.run({ cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] }));

      // Many requests in flight at once, completed (possibly out of order).
      const heads = new Map<number, number>();
      for (let i = 0; i < 64; i++) heads.set(s.add({ cdb: read10(i * 8, 8), dataIn: 4096 }), i);
      s.kick();
      const used = s.collect(2, 64);
      assert.equal(used.length, 64);
      for (const u of used) good(decodeResponse(u));

      // Errors: range, invalid opcode, invalid field, buffers too small or the wrong way.
      check(s.run({ cdb: read10(8191, 2), dataIn: 1024 }), 0x5, 0x21);
      check(s.run({ cdb: read16(0xffffffff, 1), dataIn: 512 }), 0x5, 0x21);
      check(
        s.run({
          cdb: [0x8a, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0],
          dataOut: new Uint8Array(512),
        }),
        0x5,
        0x21,
      );
      check(s.run({ cdb: [0xff, 0, 0, 0, 0, 0] }), 0x5, 0x20);
      check(s.run({ cdb: [0xc0, 0, 0, 0, 0, 0] }), 0x5, 0x20);
      r = s.run({ cdb: [0x12, 1, 0x99, 0, 255, 0], dataIn: 255 });
      check(r, 0x5, 0x24);
      assert.equal(r.sense[15] & 0xc0, 0xc0, "SKSV, C/D");
      check(s.run({ cdb: [0x12, 0, 0, 0, 36, 0x04], dataIn: 36 }), 0x5, 0x24); // NACA
      check(s.run({ cdb: read10(0, 1, 0x20), dataIn: 512 }), 0x5, 0x24); // RDPROTECT
      assert.equal(s.run({ cdb: read10(0, 16), dataIn: 4096 }).response, 1, "OVERRUN: too small");
      assert.equal(s.run({ cdb: write10(0, 8), dataOut: new Uint8Array(1024) }).response, 1);
      assert.equal(
        s.run({ cdb: read10(0, 1), dataIn: 512, dataOut: new Uint8Array(512) }).response,
        1,
        "OVERRUN: data-out for a read",
      );
      good(s.run({ cdb: read10(0, 0), dataIn: 512 }));

      // A chain too short for the headers: returned with length 0, and serving goes on.
      s.queues[2].add({ readable: [new Uint8Array(10)], writable: [8] });
      s.kick();
      assert.equal(s.collect(2, 1)[0].length, 0);
      good(s.run({ cdb: [0x00, 0, 0, 0, 0, 0] }));
      await daemon.waitForLog("rejected request");

      // Control queue: TMFs and AN.
      const tmf = (subtype: number, lun: number, id = 0n) => {
        const req = new Uint8Array(24);
        const v = new DataView(req.buffer);
        v.setUint32(0, 0, true);
        v.setUint32(4, subtype, true);
        req.set([1, 0, 0, lun], 8);
        v.setBigUint64(16, id, true);
        s.queues[0].add({ readable: [req], writable: [1] });
        s.kick(0);
        return s.collect(0, 1)[0].data[0];
      };
      assert.equal(tmf(0, 0, 77n), 0, "ABORT TASK of nothing: FUNCTION COMPLETE");
      assert.equal(tmf(5, 0), 0, "LOGICAL UNIT RESET: FUNCTION COMPLETE");
      assert.equal(tmf(6, 0, 77n), 0, "QUERY TASK: not in flight");
      assert.equal(tmf(2, 0), 11, "CLEAR ACA: FUNCTION REJECTED");
      assert.equal(tmf(5, 9), 12, "INCORRECT LUN");
      const an = new Uint8Array(16);
      new DataView(an.buffer).setUint32(0, 2, true);
      an.set([1, 0, 0, 0], 4);
      new DataView(an.buffer).setUint32(12, 0xff, true);
      s.queues[0].add({ readable: [an], writable: [5] });
      s.kick(0);
      assert.deepEqual([...s.collect(0, 1)[0].data], [0, 0, 0, 0, 0], "AN: no events, OK");
      s.close();
      await daemon.waitForLog("waiting for a front-end");

      // A new front-end finds the daemon serving the same data.
      const again = await ScsiSession.connect(daemon.socket, { requestQueues: 1 });
      r = again.run({ cdb: read10(100, 16), dataIn: 8192 });
      assert.deepEqual(r.data, data);
      again.close();
    } finally {
      s.frontend.close();
      await daemon.stop();
      await Deno.remove(disk0);
      await Deno.remove(disk1);
    }
  });
}

// A guest that keeps submitting: while the loop polls, the daemon polls the
// ring and the driver may skip kicks (VIRTIO 1.2 §2.7.10); with --poll-us 0
// every burst is kicked; completions may be held while the driver submits
// (--coalesce-us, on by default) or notified at once (0). Every request is
// answered with its data.
for (const args of [[], ["--poll-us", "0"], ["--coalesce-us", "0"]]) {
  Deno.test(`scsi daemon ${args.join(" ") || "(default)"}: depth-8 reads without lost kicks`, async () => {
    const disk = await image(4 * MiB, (b) => b.set(pattern(4 * MiB, 3)), "/dev/shm");
    const expected = await Deno.readFile(disk);
    await using daemon = await startScsiDaemon([...args, "--num-queues", "1", disk]);
    const s = await ScsiSession.connect(daemon.socket);
    try {
      const total = 4000;
      const lbaOf = (i: number) => (i * 37) % 8184;
      // Which request (by index) each descriptor head carries.
      const byHead = new Map<number, number>();
      let sent = 0;
      let answered = 0;
      const queue = s.queues[2];
      const submit = (): void => {
        byHead.set(s.add({ cdb: read10(lbaOf(sent), 8), dataIn: 4096 }), sent);
        sent++;
      };
      for (let i = 0; i < 8; i++) submit();
      while (answered < total) {
        queue.publish();
        // Kick only when the device asks for it, as Linux does.
        if (queue.needsKick()) s.frontend.kick(2);
        const used = s.collect(2, 1);
        for (const buffer of used) {
          const r = decodeResponse(buffer);
          good(r);
          const at = lbaOf(byHead.get(buffer.head)!) * 512;
          assert.deepEqual(r.data, expected.subarray(at, at + 4096));
          answered++;
        }
        for (let i = 0; i < used.length && sent < total; i++) submit();
      }
    } finally {
      s.close();
      await daemon.stop();
      await Deno.remove(disk);
    }
  });
}

// Completion coalescing holds a notification only while the driver keeps
// submitting (VIRTIO 1.2 §2.7.10: suppressed, never lost): a burst that
// stops, then requests sent one at a time (each waited for, as at depth 1),
// all come back, with the longest hold, polling on and off.
for (const poll of ["1000", "0"]) {
  Deno.test(`scsi daemon --coalesce-us 1000 --poll-us ${poll}: held notifications arrive`, async () => {
    const disk = await image(1 * MiB, (b) => b.set(pattern(1 * MiB, 5)), "/dev/shm");
    const expected = await Deno.readFile(disk);
    await using daemon = await startScsiDaemon([
      "--coalesce-us",
      "1000",
      "--poll-us",
      poll,
      "--num-queues",
      "1",
      disk,
    ]);
    const s = await ScsiSession.connect(daemon.socket);
    try {
      const lbaOf = (i: number) => (i * 13) % 2040;
      for (let round = 0; round < 20; round++) {
        // A burst of 32, submitted one by one as Linux does, then a wait.
        const byHead = new Map<number, number>();
        for (let i = 0; i < 32; i++) {
          byHead.set(s.add({ cdb: read10(lbaOf(round * 32 + i), 8), dataIn: 4096 }), i);
          s.kick();
        }
        const used = s.collect(2, 32);
        assert.equal(used.length, 32);
        for (const buffer of used) {
          const r = decodeResponse(buffer);
          good(r);
          const at = lbaOf(round * 32 + byHead.get(buffer.head)!) * 512;
          assert.deepEqual(r.data, expected.subarray(at, at + 4096));
        }
        // Then one at a time: each notification must come without a next request.
        for (let i = 0; i < 10; i++) {
          const r = s.run({ cdb: read10(lbaOf(i), 8), dataIn: 4096 });
          good(r);
          assert.deepEqual(r.data, expected.subarray(lbaOf(i) * 512, lbaOf(i) * 512 + 4096));
        }
      }
      // A task management request is answered at once, during holds too.
      s.add({ cdb: read10(0, 8), dataIn: 4096 });
      s.kick();
      const control = s.queues[0];
      control.add({
        // CLEAR TASK SET (subtype 3) on LUN 0.
        readable: [Uint8Array.of(0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, ...new Array(12).fill(0))],
        writable: [1],
      });
      s.kick(0);
      assert.equal(s.collect(0, 1)[0].data[0], 0, "FUNCTION COMPLETE");
      good(decodeResponse(s.collect(2, 1)[0]));
    } finally {
      s.close();
      await daemon.stop();
      await Deno.remove(disk);
    }
  });
}

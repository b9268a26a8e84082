import assert from "node:assert/strict";
import fc from "fast-check";
import { Logger } from "../log.ts";
import { GuestMemory, MemoryRegion } from "../memory/guest_memory.ts";
import { readSlices } from "./descriptor_chain.ts";
import {
  VIRTQ_DESC_F_INDIRECT as INDIRECT,
  VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WRITE,
} from "./features.ts";
import { serveAvailable, SplitQueue } from "./split_queue.ts";

const MEMORY = 0x10000;
const DESC = 0x0000;
const AVAIL = 0x4000;
const USED = 0x5000;

/** A ring in plain memory where guest-physical address = offset, driven by hand. */
function rig(
  options: {
    size?: number;
    eventIdx?: boolean;
    indirect?: boolean;
    nextAvail?: number;
    deferArming?: () => boolean;
  } = {},
) {
  const size = options.size ?? 8;
  const bytes = new Uint8Array(new ArrayBuffer(MEMORY));
  const view = new DataView(bytes.buffer);
  const region = new MemoryRegion({
    guestPhysAddr: 0,
    memorySize: MEMORY,
    userspaceAddr: 0,
    mmapOffset: 0,
  }, {
    bytes,
  });
  const memory = new GuestMemory([region]);
  const lines: string[] = [];
  const counts = { notified: 0, failed: 0 };
  const start = options.nextAvail ?? 0;
  view.setUint16(AVAIL + 2, start, true);
  view.setUint16(USED + 2, start, true);
  const queue = new SplitQueue({
    index: 0,
    size,
    desc: bytes.subarray(DESC, DESC + 16 * size),
    avail: bytes.subarray(AVAIL, AVAIL + 6 + 2 * size),
    used: bytes.subarray(USED, USED + 6 + 8 * size),
    memory,
    nextAvail: start,
    eventIdx: options.eventIdx ?? false,
    indirect: options.indirect ?? true,
    notify: () => counts.notified++,
    fail: () => counts.failed++,
    log: new Logger("test", { level: "trace", sink: (l) => lines.push(l) }),
    deferArming: options.deferArming,
  });
  const desc = (
    table: number,
    i: number,
    d: { addr: number; len: number; flags?: number; next?: number },
  ) => {
    view.setBigUint64(table + 16 * i, BigInt(d.addr), true);
    view.setUint32(table + 16 * i + 8, d.len, true);
    view.setUint16(table + 16 * i + 12, d.flags ?? 0, true);
    view.setUint16(table + 16 * i + 14, d.next ?? 0, true);
  };
  const offer = (...heads: number[]) => {
    let idx = view.getUint16(AVAIL + 2, true);
    for (const head of heads) {
      view.setUint16(AVAIL + 4 + 2 * (idx % size), head, true);
      idx = (idx + 1) & 0xffff;
    }
    view.setUint16(AVAIL + 2, idx, true);
  };
  const used = (slot: number) => ({
    id: view.getUint32(USED + 4 + 8 * slot, true),
    len: view.getUint32(USED + 8 + 8 * slot, true),
  });
  return { queue, bytes, view, desc, offer, used, counts, lines, size, memory };
}

Deno.test("a readable+writable chain parses into slices of guest memory", () => {
  const r = rig();
  r.bytes.set([1, 2, 3, 4], 0x8000);
  r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: NEXT, next: 3 });
  r.desc(DESC, 3, { addr: 0x9000, len: 16, flags: WRITE });
  r.offer(0);
  const chain = r.queue.next()!;
  assert.equal(chain.head, 0);
  assert.equal(chain.readableLength, 4);
  assert.equal(chain.writableLength, 16);
  assert.deepEqual([...readSlices(chain.readable, { length: 4 })], [1, 2, 3, 4]);
  assert.equal(r.queue.next(), null);
  r.queue.addUsed(chain.head, 4);
  assert.equal(r.view.getUint16(USED + 2, true), 0, "used.idx is published only by notify()");
  r.queue.notify();
  assert.equal(r.view.getUint16(USED + 2, true), 1);
  assert.deepEqual(r.used(0), { id: 0, len: 4 });
  assert.equal(r.counts.notified, 1);
  r.queue.notify();
  assert.equal(r.counts.notified, 1, "nothing new: no second notification");
});

Deno.test("an indirect table is followed and may follow direct descriptors", () => {
  const r = rig();
  r.desc(DESC, 1, { addr: 0x8000, len: 8, flags: NEXT, next: 2 });
  r.desc(DESC, 2, { addr: 0xa000, len: 32, flags: INDIRECT });
  r.desc(0xa000, 0, { addr: 0x8100, len: 8, flags: NEXT, next: 1 });
  r.desc(0xa000, 1, { addr: 0x9000, len: 100, flags: WRITE });
  r.offer(1);
  const chain = r.queue.next()!;
  assert.equal(chain.readable.length, 2);
  assert.equal(chain.writableLength, 100);
});

Deno.test("malformed chains are rejected, returned with length 0, and serving goes on", () => {
  const cases: [string, (r: ReturnType<typeof rig>) => void][] = [
    ["a loop", (r) => {
      r.desc(DESC, 0, { addr: 0x8000, len: 1, flags: NEXT, next: 1 });
      r.desc(DESC, 1, { addr: 0x8000, len: 1, flags: NEXT, next: 0 });
    }],
    ["outside a table", (r) => r.desc(DESC, 0, { addr: 0x8000, len: 1, flags: NEXT, next: 99 })],
    ["outside guest memory", (r) => r.desc(DESC, 0, { addr: MEMORY - 2, len: 4 })],
    ["out of range", (r) => r.desc(DESC, 0, { addr: 2 ** 60, len: 4 })],
    ["after a device-writable", (r) => {
      r.desc(DESC, 0, { addr: 0x8000, len: 1, flags: WRITE | NEXT, next: 1 });
      r.desc(DESC, 1, { addr: 0x8000, len: 1 });
    }],
    ["not a whole number", (r) => r.desc(DESC, 0, { addr: 0xa000, len: 24, flags: INDIRECT })],
    ["inside an indirect table", (r) => {
      r.desc(DESC, 0, { addr: 0xa000, len: 16, flags: INDIRECT });
      r.desc(0xa000, 0, { addr: 0xb000, len: 16, flags: INDIRECT });
    }],
    [
      "with NEXT set",
      (r) => r.desc(DESC, 0, { addr: 0xa000, len: 16, flags: INDIRECT | NEXT, next: 1 }),
    ],
    ["indirect table [", (r) => r.desc(DESC, 0, { addr: MEMORY - 8, len: 16, flags: INDIRECT })],
    ["after a device-writable", (r) => {
      // A zero-length writable descriptor still ends the readable part.
      r.desc(DESC, 0, { addr: 0x8000, len: 0, flags: WRITE | NEXT, next: 1 });
      r.desc(DESC, 1, { addr: 0x8000, len: 1 });
    }],
  ];
  for (const [reason, setup] of cases) {
    const r = rig();
    setup(r);
    r.desc(DESC, 5, { addr: 0x8000, len: 4, flags: WRITE });
    r.offer(0, 5);
    const chain = r.queue.next();
    assert.equal(chain?.head, 5, reason);
    assert.match(
      r.lines.join("\n"),
      new RegExp(`rejected descriptor chain at head 0: .*${reason.replace("[", "\\[")}`),
    );
    r.queue.notify();
    assert.deepEqual(r.used(0), { id: 0, len: 0 }, reason);
  }
});

Deno.test("indirect descriptors without the feature are rejected", () => {
  const r = rig({ indirect: false });
  r.desc(DESC, 0, { addr: 0xa000, len: 16, flags: INDIRECT });
  r.offer(0);
  assert.equal(r.queue.next(), null);
  assert.match(r.lines[0], /without VIRTIO_F_INDIRECT_DESC/);
});

Deno.test("a head index outside the ring is skipped without a used entry", () => {
  const r = rig();
  r.offer(200);
  assert.equal(r.queue.next(), null);
  r.queue.notify();
  assert.equal(r.view.getUint16(USED + 2, true), 0);
});

Deno.test("an available index too far ahead breaks the ring and reports it once", () => {
  const r = rig();
  r.view.setUint16(AVAIL + 2, 9, true);
  assert.equal(r.queue.next(), null);
  assert.ok(r.queue.broken);
  assert.equal(r.counts.failed, 1);
  assert.equal(r.queue.next(), null);
  assert.equal(r.counts.failed, 1);
});

Deno.test("16-bit indices wrap", () => {
  const r = rig({ nextAvail: 0xfffe });
  r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: WRITE });
  r.offer(0, 0, 0);
  const { served } = serveAvailable(r.queue, () => 4);
  assert.equal(served, 3);
  assert.equal(r.queue.nextAvail, 1);
  assert.equal(r.view.getUint16(USED + 2, true), 1);
});

Deno.test("without EVENT_IDX, NO_INTERRUPT suppresses calls and NO_NOTIFY is managed", () => {
  const r = rig();
  r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: WRITE });
  r.view.setUint16(AVAIL, 1, true);
  r.offer(0);
  serveAvailable(r.queue, () => 0);
  assert.equal(r.counts.notified, 0);
  assert.equal(r.view.getUint16(USED, true), 0, "notifications re-enabled after draining");
  r.queue.disableNotification();
  assert.equal(r.view.getUint16(USED, true), 1);
});

Deno.test("with EVENT_IDX, the driver's used_event decides and avail_event is published", () => {
  const r = rig({ eventIdx: true });
  r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: WRITE });
  r.offer(0);
  serveAvailable(r.queue, () => 0);
  assert.equal(r.counts.notified, 1, "the first completion always notifies");
  assert.equal(
    r.view.getUint16(USED + 4 + 8 * r.size, true),
    1,
    "avail_event = next available index",
  );
  // The driver wants a call only once used.idx passes 3.
  r.view.setUint16(AVAIL + 4 + 2 * r.size, 3, true);
  r.offer(0);
  serveAvailable(r.queue, () => 0); // used 1 -> 2
  assert.equal(r.counts.notified, 1);
  r.offer(0, 0);
  serveAvailable(r.queue, () => 0); // used 2 -> 4 crosses 3
  assert.equal(r.counts.notified, 2);
});

Deno.test("enableNotification reports chains that raced in", () => {
  const r = rig({ eventIdx: true });
  r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: WRITE });
  assert.equal(r.queue.enableNotification(), false);
  r.offer(0);
  assert.equal(r.queue.enableNotification(), true);
});

for (const eventIdx of [true, false]) {
  Deno.test(`while its owner polls, a ring keeps kicks off until armed (EVENT_IDX ${eventIdx})`, () => {
    let polling = true;
    const r = rig({ eventIdx, deferArming: () => polling });
    const availEvent = () => r.view.getUint16(USED + 4 + 8 * r.size, true);
    const usedFlags = () => r.view.getUint16(USED, true);
    r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: WRITE });
    r.offer(0);
    assert.deepEqual(serveAvailable(r.queue, () => 4), { served: 1, more: false });
    assert.ok(r.queue.unarmed, "the pass left notifications to the poller");
    assert.equal(availEvent(), 0, "avail_event not advanced: the driver's next add sends no kick");
    assert.equal(usedFlags(), eventIdx ? 0 : 1, "NO_NOTIFY stays set without EVENT_IDX");
    assert.equal(r.queue.pollAvailable(), false, "nothing new");
    r.offer(0);
    assert.equal(r.queue.pollAvailable(), true, "the kick the driver did not send");
    assert.equal(r.queue.pollAvailable(), false, "reported once");
    r.offer(0);
    // With EVENT_IDX the driver kicks once per avail_event the device set; without it, each time.
    assert.equal(
      r.queue.pollAvailable(),
      !eventIdx,
      "a second addition before the device asks again",
    );
    assert.equal(serveAvailable(r.queue, () => 4).served, 2);
    // A chain that comes while the owner arms is reported, as a kick would be.
    polling = false;
    r.offer(0);
    assert.equal(r.queue.armNotification(), true);
    assert.equal(r.queue.unarmed, false);
    assert.equal(r.queue.pollAvailable(), false, "an armed ring is not polled");
    assert.equal(serveAvailable(r.queue, () => 4).served, 1);
    assert.equal(r.queue.unarmed, false, "not polling: the pass armed for real");
    if (eventIdx) assert.equal(availEvent(), 4);
    else assert.equal(usedFlags(), 0);
    // The loop's arm before it sleeps: what the device's last enable asked for, and what came since.
    polling = true;
    assert.equal(serveAvailable(r.queue, () => 4).served, 0);
    assert.ok(r.queue.unarmed);
    r.offer(0);
    assert.equal(
      r.queue.armPolled(),
      true,
      "a chain came while the ring was polled: a kick is due",
    );
    assert.equal(r.queue.unarmed, false);
    if (eventIdx) assert.equal(availEvent(), 4);
    else assert.equal(usedFlags(), 0);
    assert.equal(r.queue.armPolled(), false, "armed once");
  });
}

Deno.test("a buffer spanning two adjacent regions resolves to two slices", () => {
  const a = new Uint8Array(new ArrayBuffer(0x1000));
  const b = new Uint8Array(new ArrayBuffer(0x1000));
  const memory = new GuestMemory([
    new MemoryRegion(
      { guestPhysAddr: 0x1000, memorySize: 0x1000, userspaceAddr: 0, mmapOffset: 0 },
      { bytes: b },
    ),
    new MemoryRegion({ guestPhysAddr: 0, memorySize: 0x1000, userspaceAddr: 0, mmapOffset: 0 }, {
      bytes: a,
    }),
  ]);
  const out: { length: number }[] = [];
  assert.ok(memory.resolve(0xff0, 0x20, out as never));
  assert.deepEqual(out.map((s) => s.length), [0x10, 0x10]);
});

Deno.test("property: any descriptor table yields only chains inside guest memory, never an exception", () => {
  const descriptor = fc.record({
    addr: fc.oneof(fc.integer({ min: 0, max: MEMORY + 64 }), fc.constant(2 ** 52)),
    len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffff_ffff })),
    flags: fc.integer({ min: 0, max: 7 }),
    next: fc.integer({ min: 0, max: 20 }),
  });
  fc.assert(
    fc.property(
      fc.array(descriptor, { minLength: 16, maxLength: 16 }),
      fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 16 }),
      fc.boolean(),
      (table, heads, eventIdx) => {
        const r = rig({ size: 16, eventIdx });
        table.forEach((d, i) => r.desc(DESC, i, d));
        // A few indirect tables' worth of descriptors in the buffer area too.
        table.forEach((d, i) => r.desc(0x8000, i, d));
        r.offer(...heads);
        let chains = 0;
        for (let chain = r.queue.next(); chain; chain = r.queue.next()) {
          chains++;
          for (const slice of [...chain.readable, ...chain.writable]) {
            assert.ok(slice.offset + slice.length <= MEMORY);
          }
          r.queue.addUsed(chain.head, 0);
        }
        r.queue.notify();
        assert.ok(chains <= heads.length);
        assert.equal(r.queue.nextAvail, heads.length);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("a budget splits serving into passes, leaving notifications off in between", () => {
  const r = rig({ eventIdx: false });
  r.desc(DESC, 0, { addr: 0x8000, len: 4, flags: WRITE });
  r.offer(0, 0, 0, 0, 0);
  assert.deepEqual(serveAvailable(r.queue, () => 1, { budget: 2 }), { served: 2, more: true });
  assert.equal(r.view.getUint16(USED + 2, true), 2, "what was served is published");
  assert.equal(r.view.getUint16(USED, true), 1, "kicks stay suppressed until the ring is empty");
  assert.deepEqual(serveAvailable(r.queue, () => 1, { budget: 2 }), { served: 2, more: true });
  assert.deepEqual(serveAvailable(r.queue, () => 1, { budget: 2 }), { served: 1, more: false });
  assert.equal(r.view.getUint16(USED, true), 0);
});

Deno.test("a chain whose aliased descriptors add up past 4 GiB is refused", () => {
  // 2 MiB of RAM; an indirect table of 4100 descriptors each covering 1 MiB of it.
  const bytes = new Uint8Array(new ArrayBuffer(2 << 20));
  const view = new DataView(bytes.buffer);
  const memory = new GuestMemory([
    new MemoryRegion({
      guestPhysAddr: 0,
      memorySize: bytes.length,
      userspaceAddr: 0,
      mmapOffset: 0,
    }, {
      bytes,
    }),
  ]);
  const table = 0x100000;
  const entries = 4100;
  for (let i = 0; i < entries; i++) {
    view.setUint32(table + 16 * i, 0, true);
    view.setUint32(table + 16 * i + 8, 1 << 20, true);
    view.setUint16(table + 16 * i + 12, i + 1 < entries ? NEXT : 0, true);
    view.setUint16(table + 16 * i + 14, i + 1, true);
  }
  view.setUint32(0, table, true);
  view.setUint32(8, 16 * entries, true);
  view.setUint16(12, INDIRECT, true);
  view.setUint16(AVAIL + 4, 0, true);
  view.setUint16(AVAIL + 2, 1, true);
  const lines: string[] = [];
  const queue = new SplitQueue({
    index: 0,
    size: 8,
    desc: bytes.subarray(0, 128),
    avail: bytes.subarray(AVAIL, AVAIL + 22),
    used: bytes.subarray(USED, USED + 70),
    memory,
    nextAvail: 0,
    eventIdx: false,
    indirect: true,
    notify: () => {},
    fail: () => {},
    log: new Logger("test", { level: "warn", sink: (l) => lines.push(l) }),
  });
  assert.equal(queue.next(), null);
  assert.match(lines[0], /chain of more than 4294967295 bytes/);
});

Deno.test("chainAt parses a held head again without touching the available ring", () => {
  const r = rig();
  r.desc(DESC, 2, { addr: 0x8000, len: 2, flags: NEXT, next: 3 });
  r.desc(DESC, 3, { addr: 0x8100, len: 1, flags: WRITE });
  r.offer(2);
  const taken = r.queue.next();
  assert.equal(taken?.head, 2);
  const again = r.queue.chainAt(2);
  assert.deepEqual(
    [again?.head, again?.readableLength, again?.writableLength],
    [2, 2, 1],
  );
  assert.equal(r.queue.nextAvail, 1, "the available ring is untouched");
  assert.equal(r.queue.chainAt(8), null, "a head past the table");
  r.desc(DESC, 4, { addr: 0xfff0_0000, len: 4 });
  assert.equal(r.queue.chainAt(4), null, "a chain outside memory");
  assert.ok(r.lines.some((l) => l.includes("held chain at head 4 no longer parses")));
});

import assert from "node:assert/strict";
import type { DeviceContext } from "../../core/device.ts";
import { EventLoop } from "../../core/event_loop.ts";
import { Logger } from "../../core/log.ts";
import { GuestMemory, type GuestSlice, MemoryRegion } from "../../core/memory/guest_memory.ts";
import { writeSlices } from "../../core/virtio/descriptor_chain.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTQ_DESC_F_INDIRECT as INDIRECT,
  VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WRITE,
} from "../../core/virtio/features.ts";
import { SplitQueue } from "../../core/virtio/split_queue.ts";
import { REQUESTQ, RngDevice } from "./device.ts";
import type { EntropySource } from "./entropy_source.ts";
import { RateLimiter } from "./rate_limiter.ts";

const SIZE = 16;
const DESC = 0x0000;
const AVAIL = 0x1000;
const USED = 0x2000;
const DATA = 0x4000;

/** Hands out 1, 2, 3… byte values; `blocked` makes it report nothing to read. */
class FakeSource implements EntropySource {
  next = 1;
  blocked = false;
  reads: number[] = [];
  #wake: (() => void) | null = null;

  read(slices: readonly GuestSlice[], length: number): number | null {
    if (this.blocked) return null;
    this.reads.push(length);
    const bytes = Uint8Array.from({ length }, () => this.next++ & 0xff);
    return writeSlices(slices, bytes);
  }

  whenReadable(callback: () => void): () => void {
    this.#wake = callback;
    return () => (this.#wake = null);
  }

  unblock(): void {
    this.blocked = false;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** A device over a ring in plain memory (guest-physical address = offset). */
function rig(options: { maxBytes?: number | null; periodMs?: number } = {}) {
  const bytes = new Uint8Array(new ArrayBuffer(0x10000));
  const view = new DataView(bytes.buffer);
  const region = new MemoryRegion(
    { guestPhysAddr: 0, memorySize: bytes.length, userspaceAddr: 0, mmapOffset: 0 },
    { bytes },
  );
  const lines: string[] = [];
  const log = new Logger("rng", { level: "debug", sink: (line) => lines.push(line) });
  const counts = { notified: 0 };
  const queue = new SplitQueue({
    index: REQUESTQ,
    size: SIZE,
    desc: bytes.subarray(DESC, DESC + 16 * SIZE),
    avail: bytes.subarray(AVAIL, AVAIL + 6 + 2 * SIZE),
    used: bytes.subarray(USED, USED + 6 + 8 * SIZE),
    memory: new GuestMemory([region]),
    nextAvail: 0,
    eventIdx: false,
    indirect: true,
    notify: () => counts.notified++,
    fail: () => {},
    log,
  });
  const loop = new EventLoop(log);
  const source = new FakeSource();
  const limiter = new RateLimiter({
    periodMs: options.periodMs ?? 1000,
    maxBytes: options.maxBytes ?? null,
  });
  const device = new RngDevice({ source, limiter });
  let live: SplitQueue | null = queue;
  const context: DeviceContext = {
    log,
    loop,
    queue: (index) => (index === REQUESTQ ? live : null),
    memory: () => null,
    configChanged: () => {},
  };
  device.activate(context);
  const desc = (i: number, d: { addr: number; len: number; flags: number; next?: number }) => {
    view.setBigUint64(DESC + 16 * i, BigInt(d.addr), true);
    view.setUint32(DESC + 16 * i + 8, d.len, true);
    view.setUint16(DESC + 16 * i + 12, d.flags, true);
    view.setUint16(DESC + 16 * i + 14, d.next ?? 0, true);
  };
  let availIdx = 0;
  const offer = (...heads: number[]) => {
    for (const head of heads) view.setUint16(AVAIL + 4 + 2 * (availIdx++ % SIZE), head, true);
    view.setUint16(AVAIL + 2, availIdx, true);
  };
  /** One writable buffer of `len` bytes per head i, at DATA + 0x100 * i. */
  const simple = (...lens: number[]) => {
    lens.forEach((len, i) => desc(i, { addr: DATA + 0x100 * i, len, flags: WRITE }));
    offer(...lens.map((_, i) => i));
  };
  const usedIdx = () => view.getUint16(USED + 2, true);
  const used = (slot: number) => ({
    id: view.getUint32(USED + 4 + 8 * slot, true),
    len: view.getUint32(USED + 8 + 8 * slot, true),
  });
  const close = () => {
    device.reset();
    loop.close();
  };
  return {
    device,
    source,
    bytes,
    desc,
    offer,
    simple,
    usedIdx,
    used,
    counts,
    lines,
    loop,
    close,
    stopQueue: () => (live = null),
    restartQueue: () => (live = queue),
  };
}

/** Runs the loop until `done()` or `timeoutMs`. */
async function runUntil(loop: EventLoop, done: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const running = loop.run();
  while (!done() && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  loop.stop();
  await running;
}

Deno.test("rng device: offers upstream's virtio features and one queue of 1024", () => {
  const r = rig();
  assert.equal(
    r.device.features,
    (1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_F_NOTIFY_ON_EMPTY)) |
      (1n << BigInt(VIRTIO_RING_F_INDIRECT_DESC)) | (1n << BigInt(VIRTIO_RING_F_EVENT_IDX)),
  );
  assert.equal(r.device.numQueues, 1);
  assert.equal(r.device.maxQueueSize, 1024);
  r.close();
});

Deno.test("rng device: fills each writable buffer from the source and notifies once", () => {
  const r = rig();
  r.simple(64, 32, 1);
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 3);
  assert.deepEqual([0, 1, 2].map(r.used), [
    { id: 0, len: 64 },
    { id: 1, len: 32 },
    { id: 2, len: 1 },
  ]);
  assert.deepEqual([...r.bytes.subarray(DATA, DATA + 3)], [1, 2, 3]);
  assert.equal(r.bytes[DATA + 0x100], 65);
  assert.equal(r.counts.notified, 1);
  r.close();
});

Deno.test("rng device: more lenient than upstream — several writable descriptors, indirect tables", () => {
  const r = rig();
  r.desc(0, { addr: DATA, len: 4, flags: WRITE | NEXT, next: 1 });
  r.desc(1, { addr: DATA + 0x100, len: 4, flags: WRITE });
  // An indirect table at 0x3000 with two writable descriptors.
  r.desc(2, { addr: 0x3000, len: 32, flags: INDIRECT });
  const table = new DataView(r.bytes.buffer, 0x3000, 32);
  table.setBigUint64(0, BigInt(DATA + 0x200), true);
  table.setUint32(8, 2, true);
  table.setUint16(12, WRITE | NEXT, true);
  table.setUint16(14, 1, true);
  table.setBigUint64(16, BigInt(DATA + 0x300), true);
  table.setUint32(24, 2, true);
  table.setUint16(28, WRITE, true);
  r.offer(0, 2);
  r.device.onKick(REQUESTQ);
  assert.deepEqual([0, 1].map(r.used), [{ id: 0, len: 8 }, { id: 2, len: 4 }]);
  assert.deepEqual([...r.bytes.subarray(DATA + 0x100, DATA + 0x104)], [5, 6, 7, 8]);
  assert.deepEqual([...r.bytes.subarray(DATA + 0x300, DATA + 0x302)], [11, 12]);
  r.close();
});

Deno.test("rng device: a chain with a readable buffer is returned empty, logged, and serving goes on", () => {
  const r = rig();
  r.desc(0, { addr: DATA, len: 8, flags: NEXT, next: 1 });
  r.desc(1, { addr: DATA + 0x100, len: 8, flags: WRITE });
  r.desc(2, { addr: DATA + 0x200, len: 0, flags: WRITE });
  r.desc(3, { addr: DATA + 0x300, len: 8, flags: WRITE });
  r.offer(0, 2, 3);
  r.device.onKick(REQUESTQ);
  assert.deepEqual([0, 1, 2].map(r.used), [
    { id: 0, len: 0 },
    { id: 2, len: 0 },
    { id: 3, len: 8 },
  ]);
  assert.deepEqual(r.source.reads, [8], "the source was read only for the good chain");
  assert.equal(r.lines.filter((l) => l.includes("WARN") && l.includes("rejected")).length, 2);
  r.close();
});

Deno.test("rng device: a source error returns the request empty with one error line", () => {
  const r = rig();
  r.source.read = () => {
    throw new Error("readv(fd 9) failed: EIO (5)");
  };
  r.simple(8);
  r.device.onKick(REQUESTQ);
  assert.deepEqual(r.used(0), { id: 0, len: 0 });
  assert.equal(r.lines.filter((l) => l.includes("ERROR") && l.includes("EIO")).length, 1);
  r.close();
});

Deno.test("rng device: at end of file requests come back empty, logged once", () => {
  const r = rig();
  r.source.read = () => 0;
  r.simple(8, 8);
  r.device.onKick(REQUESTQ);
  assert.deepEqual([0, 1].map(r.used), [{ id: 0, len: 0 }, { id: 1, len: 0 }]);
  assert.equal(r.lines.filter((l) => l.includes("reached its end")).length, 1);
  r.close();
});

Deno.test("rng device: an exhausted quota leaves chains in the ring and a timer resumes them", async () => {
  const r = rig({ maxBytes: 100, periodMs: 60 });
  r.simple(64, 64, 64);
  const kicked = performance.now();
  r.device.onKick(REQUESTQ);
  assert.ok(performance.now() - kicked < 20, "the kick returns at once: no sleeping");
  assert.deepEqual([0, 1].map(r.used), [{ id: 0, len: 64 }, { id: 1, len: 36 }]);
  assert.equal(r.usedIdx(), 2, "the third chain waits in the available ring");
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 2, "a kick during the wait serves nothing");
  await runUntil(r.loop, () => r.usedIdx() === 3);
  const waited = performance.now() - kicked;
  assert.equal(r.usedIdx(), 3);
  assert.deepEqual(r.used(2), { id: 2, len: 64 });
  assert.ok(waited >= 55, `served after ${waited} ms, before the period ended`);
  r.close();
});

Deno.test("rng device: a kick on an empty ring does not start the quota's period", async () => {
  const r = rig({ maxBytes: 64, periodMs: 80 });
  r.device.onKick(REQUESTQ);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const first = performance.now();
  r.simple(64, 64);
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 1, "the first request opens the period and spends its quota");
  await runUntil(r.loop, () => r.usedIdx() === 2);
  const waited = performance.now() - first;
  assert.ok(
    waited >= 75,
    `the second request came ${waited} ms after the first, within its period`,
  );
  r.close();
});

Deno.test("rng device: no timer when the quota runs out with nothing waiting", async () => {
  const r = rig({ maxBytes: 64, periodMs: 30 });
  r.simple(64);
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 1);
  assert.ok(!r.lines.some((l) => l.includes("quota exhausted")));
  // Later chains are served after the period without any timer.
  await new Promise((resolve) => setTimeout(resolve, 40));
  r.simple(64, 64);
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 2);
  r.close();
});

Deno.test("rng device: a source with nothing to read holds the chain until it is readable", () => {
  const r = rig();
  r.source.blocked = true;
  r.simple(8, 8);
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 0);
  r.source.unblock();
  assert.equal(r.usedIdx(), 2);
  assert.deepEqual([0, 1].map(r.used), [{ id: 0, len: 8 }, { id: 1, len: 8 }]);
  r.close();
});

Deno.test("rng device: a stopped queue cancels the wait for quota", async () => {
  const r = rig({ maxBytes: 8, periodMs: 30 });
  r.simple(8, 8);
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 1);
  r.stopQueue();
  r.device.queueStopped();
  r.restartQueue();
  await runUntil(r.loop, () => false, 80);
  assert.equal(r.usedIdx(), 1, "no timer fired: it was cancelled with the queue");
  r.close();
});

Deno.test("rng device: kicks before activation or on other queues are ignored", () => {
  const r = rig();
  r.simple(8);
  r.device.onKick(1);
  assert.equal(r.usedIdx(), 0);
  r.device.reset();
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 0);
  r.loop.close();
});

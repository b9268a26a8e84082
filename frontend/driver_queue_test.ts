import assert from "node:assert/strict";
import { PAGE_SIZE } from "../ffi/mod.ts";
import { DriverMemory } from "./driver_memory.ts";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../core/virtio/features.ts";
import { vringNeedEvent } from "../core/virtio/split_queue.ts";
import { type Descriptor, DriverQueue, splitRingLayout } from "./driver_queue.ts";

/**
 * A minimal device side working on guest RAM by GPA (VIRTIO 1.2 §2.7.13 from
 * the device's view): echoes each chain's readable bytes into its writable
 * buffers. `order` lets it complete chains out of order.
 */
class EchoDevice {
  lastAvail = 0;
  usedIdx = 0;
  constructor(readonly memory: DriverMemory, readonly queue: DriverQueue) {}

  #ring(offset: number, length: number): DataView {
    return this.memory.dataView(offset, length);
  }

  /** Pops the available heads. */
  pop(): number[] {
    const q = this.queue;
    const avail = this.#ring(q.availGpa, 6 + 2 * q.size);
    const idx = avail.getUint16(2, true);
    const heads: number[] = [];
    while (this.lastAvail !== idx) {
      heads.push(avail.getUint16(4 + 2 * (this.lastAvail % q.size), true));
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
    }
    return heads;
  }

  /** Walks a chain (direct or indirect) into its descriptors. */
  walk(head: number): Descriptor[] {
    const q = this.queue;
    let table = this.#ring(q.descGpa, 16 * q.size);
    let i = head;
    const out: Descriptor[] = [];
    for (let guard = 0; guard <= q.size; guard++) {
      const d = readDesc(table, i);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        table = this.memory.dataView(d.addr, d.len);
        i = 0;
        continue;
      }
      out.push(d);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return out;
      i = d.next;
    }
    throw new Error("chain loops");
  }

  /** Echoes `head` and writes its used element and used.idx. */
  complete(head: number): void {
    const descs = this.walk(head);
    const input: number[] = [];
    for (const d of descs.filter((d) => !(d.flags & VIRTQ_DESC_F_WRITE))) {
      input.push(...this.memory.read(d.addr, d.len));
    }
    let written = 0;
    for (const d of descs.filter((d) => d.flags & VIRTQ_DESC_F_WRITE)) {
      const take = Math.min(d.len, input.length - written);
      this.memory.write(d.addr, new Uint8Array(input.slice(written, written + take)));
      written += take;
    }
    const q = this.queue;
    const used = this.#ring(q.usedGpa, 6 + 8 * q.size);
    const slot = this.usedIdx % q.size;
    used.setUint32(4 + 8 * slot, head, true);
    used.setUint32(8 + 8 * slot, written, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    used.setUint16(2, this.usedIdx, true);
  }

  /** Writes avail_event (EVENT_IDX). */
  setAvailEvent(value: number): void {
    const q = this.queue;
    this.#ring(q.usedGpa, 6 + 8 * q.size).setUint16(4 + 8 * q.size, value, true);
  }

  /** Writes used.flags. */
  setUsedFlags(value: number): void {
    this.#ring(this.queue.usedGpa, 2).setUint16(0, value, true);
  }
}

function readDesc(table: DataView, i: number): Descriptor {
  return {
    addr: Number(table.getBigUint64(16 * i, true)),
    len: table.getUint32(16 * i + 8, true),
    flags: table.getUint16(16 * i + 12, true),
    next: table.getUint16(16 * i + 14, true),
  };
}

function setup(
  options: { size: number; eventIdx?: boolean; usedAlign?: number; split?: boolean },
): { memory: DriverMemory; queue: DriverQueue; device: EchoDevice } {
  const memory = new DriverMemory({
    size: 256 * PAGE_SIZE,
    split: options.split ? { at: 64 * PAGE_SIZE } : undefined,
  });
  const queue = new DriverQueue(memory, options);
  return { memory, queue, device: new EchoDevice(memory, queue) };
}

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);

Deno.test("ring layout matches Linux vring_init and the spec's alignments", () => {
  // The classic legacy size: 256 entries, 4096 alignment = 10246 bytes.
  assert.deepEqual(splitRingLayout(256, 4096), {
    descOffset: 0,
    availOffset: 4096,
    usedOffset: 8192,
    totalSize: 10246,
  });
  // 1024 entries, align 4: avail ends at 16384 + 6 + 2048 = 18438, used at 18440.
  assert.deepEqual(splitRingLayout(1024), {
    descOffset: 0,
    availOffset: 16384,
    usedOffset: 18440,
    totalSize: 18440 + 6 + 8192,
  });
  assert.equal(splitRingLayout(1, 4).usedOffset, 24);
  assert.throws(() => splitRingLayout(100), RangeError);
  assert.throws(() => splitRingLayout(65536), RangeError);
  assert.throws(() => splitRingLayout(8, 2), RangeError);
});

Deno.test("queue parts are aligned and addressed in front-end virtual addresses", () => {
  const { memory, queue } = setup({ size: 64, split: true });
  try {
    assert.equal(queue.descGpa % 16, 0);
    assert.equal(queue.availGpa % 2, 0);
    assert.equal(queue.usedGpa % 4, 0);
    assert.equal(queue.availGpa - queue.descGpa, 16 * 64);
    const a = queue.addresses();
    assert.equal(a.descUser, memory.hostAddress + memory.offsetOf(queue.descGpa));
    assert.equal(a.availUser - a.descUser, queue.availGpa - queue.descGpa);
    assert.equal(a.usedUser - a.descUser, queue.usedGpa - queue.descGpa);
    assert.equal(queue.numFree, 64);
    assert.equal(queue.lastAvailIndex, 0);
  } finally {
    memory.close();
  }
});

Deno.test("a queue placed in the second region gets GPAs above the gap", () => {
  const memory = new DriverMemory({ size: 64 * PAGE_SIZE, split: { at: 16 * PAGE_SIZE } });
  try {
    const queue = new DriverQueue(memory, { size: 16, region: 1 });
    const high = memory.regions()[1].descriptor;
    assert.ok(queue.descGpa >= high.guestPhysAddr);
    assert.equal(
      queue.addresses().descUser,
      high.userspaceAddr + (queue.descGpa - high.guestPhysAddr),
    );
    const head = queue.add({ readable: [bytes(1)], writable: [] });
    assert.ok(queue.readDescriptor(head).addr >= high.guestPhysAddr);
  } finally {
    memory.close();
  }
});

Deno.test("add links descriptors and fills the ring; publish writes avail.idx", () => {
  const { memory, queue, device } = setup({ size: 8 });
  try {
    const head = queue.add({ readable: [bytes(1, 2, 3), bytes(4)], writable: [2, 5] });
    assert.equal(head, 0);
    const descs = [0, 1, 2, 3].map((i) => queue.readDescriptor(i));
    assert.deepEqual(descs.map((d) => d.flags), [
      VIRTQ_DESC_F_NEXT,
      VIRTQ_DESC_F_NEXT,
      VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
      VIRTQ_DESC_F_WRITE,
    ]);
    assert.deepEqual(descs.map((d) => d.len), [3, 1, 2, 5]);
    assert.deepEqual(descs.slice(0, 3).map((d) => d.next), [1, 2, 3]);
    assert.deepEqual([...memory.read(descs[0].addr, 3)], [1, 2, 3]);
    assert.equal(queue.numFree, 4);
    // Not visible before publish.
    assert.equal(queue.readAvailIdx(), 0);
    assert.equal(queue.availIndex, 1);
    assert.deepEqual(device.pop(), []);
    queue.publish();
    assert.equal(queue.readAvailIdx(), 1);
    assert.deepEqual(device.pop(), [0]);
    device.complete(0);
    const used = queue.takeUsed();
    assert.equal(used.length, 1);
    assert.equal(used[0].head, 0);
    assert.equal(used[0].length, 4);
    assert.deepEqual([...used[0].data], [1, 2, 3, 4]);
    assert.equal(queue.numFree, 8);
    assert.equal(queue.inFlight, 0);
    assert.deepEqual(queue.takeUsed(), []);
  } finally {
    memory.close();
  }
});

Deno.test("batched adds are published with one avail.idx store", () => {
  const { memory, queue, device } = setup({ size: 16 });
  try {
    for (let i = 0; i < 5; i++) queue.add({ readable: [bytes(i)], writable: [1] });
    queue.publish();
    assert.equal(queue.readAvailIdx(), 5);
    const heads = device.pop();
    assert.deepEqual(heads, [0, 2, 4, 6, 8]);
    heads.forEach((h) => device.complete(h));
    const used = queue.takeUsed();
    assert.deepEqual(used.map((u) => [...u.data]), [[0], [1], [2], [3], [4]]);
  } finally {
    memory.close();
  }
});

Deno.test("free list: a full table refuses more, and out-of-order completions are reused", () => {
  const { memory, queue, device } = setup({ size: 4 });
  try {
    const heads = [0, 1, 2, 3].map((i) => queue.add({ readable: [bytes(i)], writable: [] }));
    assert.deepEqual(heads, [0, 1, 2, 3]);
    assert.equal(queue.numFree, 0);
    assert.throws(() => queue.add({ readable: [bytes(9)], writable: [] }), /queue full/);
    queue.publish();
    device.pop();
    device.complete(2);
    device.complete(0);
    assert.deepEqual(queue.takeUsed().map((u) => u.head), [2, 0]);
    assert.equal(queue.numFree, 2);
    // detach_buf_split pushes freed chains on the front: 0 was freed last.
    assert.equal(queue.add({ readable: [bytes(1)], writable: [] }), 0);
    assert.equal(queue.add({ readable: [bytes(1)], writable: [] }), 2);
    assert.throws(() => queue.add({ readable: [], writable: [] }), RangeError);
    // A two-descriptor chain does not fit in zero free descriptors.
    assert.throws(() => queue.add({ readable: [bytes(1)], writable: [1] }), /queue full/);
  } finally {
    memory.close();
  }
});

Deno.test("16-bit indices wrap: 70,000 round trips through a queue of 2", () => {
  const { memory, queue, device } = setup({ size: 2, eventIdx: true });
  try {
    for (let i = 0; i < 70_000; i++) {
      queue.add({ readable: [bytes(i & 0xff)], writable: [1] });
      queue.publish();
      const [head] = device.pop();
      device.complete(head);
      const [used] = queue.takeUsed();
      assert.equal(used.data[0], i & 0xff);
    }
    assert.equal(queue.readAvailIdx(), 70_000 & 0xffff);
    assert.equal(queue.readUsedIdx(), 70_000 & 0xffff);
    assert.equal(queue.lastUsedIndex, 70_000 & 0xffff);
    assert.equal(queue.readUsedEvent(), 70_000 & 0xffff);
    assert.equal(queue.numFree, 2);
  } finally {
    memory.close();
  }
});

Deno.test("vring_need_event in 16-bit arithmetic", () => {
  assert.equal(vringNeedEvent(0, { newIdx: 1, oldIdx: 0 }), true);
  assert.equal(vringNeedEvent(5, { newIdx: 5, oldIdx: 4 }), false); // event 5 not yet passed: new must be 6
  assert.equal(vringNeedEvent(5, { newIdx: 6, oldIdx: 5 }), true);
  assert.equal(vringNeedEvent(5, { newIdx: 10, oldIdx: 6 }), false); // already past it before this batch
  assert.equal(vringNeedEvent(5, { newIdx: 10, oldIdx: 5 }), true);
  assert.equal(vringNeedEvent(0xffff, { newIdx: 0, oldIdx: 0xffff }), true); // crossing the wrap
  assert.equal(vringNeedEvent(0xffff, { newIdx: 2, oldIdx: 0xfffe }), true);
  assert.equal(vringNeedEvent(0, { newIdx: 1, oldIdx: 1 }), false); // nothing new
  assert.equal(vringNeedEvent(3, { newIdx: 0x10002, oldIdx: 0xfffe }), false); // new wraps, event ahead
});

Deno.test("needsKick honours avail_event with EVENT_IDX", () => {
  const { memory, queue, device } = setup({ size: 16, eventIdx: true });
  try {
    // avail_event 0: the device wants a kick when avail.idx goes 0 → 1.
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish();
    assert.equal(queue.needsKick(), true);
    // The device asks to be kicked only once avail.idx passes 3.
    device.setAvailEvent(3);
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish(); // idx 1 → 3
    assert.equal(queue.needsKick(), false);
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish(); // 3 → 4 crosses 3
    assert.equal(queue.needsKick(), true);
    // Nothing published since the last check.
    assert.equal(queue.needsKick(), false);
    // used.flags is ignored with EVENT_IDX.
    device.setAvailEvent(4);
    device.setUsedFlags(VIRTQ_USED_F_NO_NOTIFY);
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish();
    assert.equal(queue.needsKick(), true);
  } finally {
    memory.close();
  }
});

Deno.test("needsKick honours used.flags NO_NOTIFY without EVENT_IDX", () => {
  const { memory, queue, device } = setup({ size: 16 });
  try {
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish();
    assert.equal(queue.needsKick(), true);
    device.setUsedFlags(VIRTQ_USED_F_NO_NOTIFY);
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish();
    assert.equal(queue.needsKick(), false);
  } finally {
    memory.close();
  }
});

Deno.test("used_event follows takeUsed; NO_INTERRUPT sets avail.flags", () => {
  const { memory, queue, device } = setup({ size: 8, eventIdx: true });
  try {
    for (let i = 0; i < 3; i++) queue.add({ readable: [bytes(i)], writable: [] });
    queue.publish();
    device.pop().forEach((h) => device.complete(h));
    queue.takeUsed();
    assert.equal(queue.readUsedEvent(), 3);
    queue.setUsedEvent(10);
    assert.equal(queue.readUsedEvent(), 10);
    queue.setNoInterrupt(true);
    assert.equal(memory.dataView(queue.availGpa, 2).getUint16(0, true), VIRTQ_AVAIL_F_NO_INTERRUPT);
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish();
    device.pop().forEach((h) => device.complete(h));
    queue.takeUsed();
    // With interrupts off the driver leaves used_event alone, as Linux does.
    assert.equal(queue.readUsedEvent(), 10);
    queue.setNoInterrupt(false);
    assert.equal(memory.dataView(queue.availGpa, 2).getUint16(0, true), 0);
  } finally {
    memory.close();
  }
});

Deno.test("an indirect chain uses one ring descriptor pointing at a table", () => {
  const { memory, queue, device } = setup({ size: 4 });
  try {
    const head = queue.add({
      readable: [bytes(1, 2), bytes(3)],
      writable: [1, 8],
      indirect: true,
    });
    assert.equal(queue.numFree, 3);
    const ring = queue.readDescriptor(head);
    assert.equal(ring.flags, VIRTQ_DESC_F_INDIRECT);
    assert.equal(ring.len, 4 * 16);
    assert.equal(ring.addr % 16, 0);
    const table = memory.dataView(ring.addr, ring.len);
    const entries = [0, 1, 2, 3].map((i) => readDesc(table, i));
    assert.deepEqual(entries.map((d) => d.flags), [
      VIRTQ_DESC_F_NEXT,
      VIRTQ_DESC_F_NEXT,
      VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
      VIRTQ_DESC_F_WRITE,
    ]);
    assert.deepEqual(entries.map((d) => d.next), [1, 2, 3, 0]);
    assert.deepEqual(entries.map((d) => d.len), [2, 1, 1, 8]);
    queue.publish();
    device.pop();
    device.complete(head);
    const [used] = queue.takeUsed();
    assert.equal(used.length, 3);
    assert.deepEqual([...used.data], [1, 2, 3]);
    assert.equal(queue.numFree, 4);
  } finally {
    memory.close();
  }
});

Deno.test("buffers are recycled, so long runs do not exhaust guest RAM", () => {
  const { memory, queue, device } = setup({ size: 4 });
  try {
    const payload = new Uint8Array(3000).fill(7);
    for (let i = 0; i < 2000; i++) {
      queue.add({ readable: [payload], writable: [3000], indirect: i % 2 === 0 });
      queue.publish();
      device.pop().forEach((h) => device.complete(h));
      assert.equal(queue.takeUsed()[0].length, 3000);
    }
    assert.ok(memory.free(0) > 200 * PAGE_SIZE);
  } finally {
    memory.close();
  }
});

Deno.test("takeUsed rejects an unknown head and a used.idx too far ahead", () => {
  const { memory, queue, device } = setup({ size: 4 });
  try {
    queue.add({ readable: [bytes(1)], writable: [] });
    queue.publish();
    device.pop();
    device.complete(3); // never offered
    assert.throws(() => queue.takeUsed(), /head 3/);
  } finally {
    memory.close();
  }
  const second = setup({ size: 4 });
  try {
    const used = second.memory.dataView(second.queue.usedGpa, 4);
    used.setUint16(2, 9, true);
    assert.throws(() => second.queue.takeUsed(), /used\.idx/);
  } finally {
    second.memory.close();
  }
});

Deno.test("raw access builds a hand-made chain and reads the raw used element", () => {
  const { memory, queue, device } = setup({ size: 8 });
  try {
    const data = memory.alloc(16, 16);
    memory.write(data, bytes(5, 6));
    const out = memory.alloc(16, 16);
    queue.writeDescriptor(6, { addr: data, len: 2, flags: VIRTQ_DESC_F_NEXT, next: 7 });
    queue.writeDescriptor(7, { addr: out, len: 2, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    assert.deepEqual(queue.readDescriptor(6), {
      addr: data,
      len: 2,
      flags: VIRTQ_DESC_F_NEXT,
      next: 7,
    });
    queue.rawPushAvail(6);
    queue.publish();
    assert.deepEqual(device.pop(), [6]);
    device.complete(6);
    assert.deepEqual(queue.takeUsedRaw(), [{ id: 6, length: 2 }]);
    assert.deepEqual([...memory.read(out, 2)], [5, 6]);
    queue.writeAvailEntry(1, 0x1234);
    queue.writeAvailIdx(0xffff);
    assert.equal(queue.readAvailIdx(), 0xffff);
    assert.equal(memory.dataView(queue.availGpa, 8).getUint16(6, true), 0x1234);
  } finally {
    memory.close();
  }
});

Deno.test("reset zeroes the ring and frees every descriptor", () => {
  const { memory, queue } = setup({ size: 8, eventIdx: true });
  try {
    queue.add({ readable: [bytes(1)], writable: [4] });
    queue.publish();
    queue.lastAvailIndex = 1;
    queue.reset();
    assert.equal(queue.readAvailIdx(), 0);
    assert.equal(queue.numFree, 8);
    assert.equal(queue.inFlight, 0);
    assert.equal(queue.lastAvailIndex, 0);
    assert.deepEqual(queue.readDescriptor(0), { addr: 0, len: 0, flags: 0, next: 0 });
  } finally {
    memory.close();
  }
});

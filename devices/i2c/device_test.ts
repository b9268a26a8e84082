// I2cDevice in-process over a split ring in plain memory, with adapters
// that record what they are asked: how groups become transfers, how host
// transfers share the loop, and what the daemon tests cannot reach (two host
// adapters, a group completed by a later kick).
import assert from "node:assert/strict";
import type { DeviceContext } from "../../core/device.ts";
import { EventLoop } from "../../core/event_loop.ts";
import { Logger } from "../../core/log.ts";
import { GuestMemory, MemoryRegion } from "../../core/memory/guest_memory.ts";
import {
  VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WRITE,
} from "../../core/virtio/features.ts";
import { SplitQueue } from "../../core/virtio/split_queue.ts";
import { type I2cAdapter, I2cBus, type I2cMessage, type TransferResult } from "./adapter.ts";
import { I2cDevice, REQUESTQ } from "./device.ts";
import {
  VIRTIO_I2C_F_ZERO_LENGTH_REQUEST,
  VIRTIO_I2C_FLAGS_FAIL_NEXT as FAIL_NEXT,
  VIRTIO_I2C_FLAGS_M_RD as M_RD,
  VIRTIO_I2C_MSG_ERR as ERR,
  VIRTIO_I2C_MSG_OK as OK,
} from "./request.ts";

const SIZE = 64;
const DESC = 0x0000;
const AVAIL = 0x1000;
const USED = 0x2000;
const DATA = 0x4000;

/** Answers every message, filling reads with 0xa5, and records each transfer. */
class RecordingAdapter implements I2cAdapter {
  readonly transfers: string[][] = [];
  constructor(
    readonly name: string,
    readonly addresses: number[],
    readonly blocking: boolean,
  ) {}
  transfer(messages: readonly I2cMessage[]): TransferResult {
    this.transfers.push(
      messages.map((m) => `${m.read ? "r" : "w"}${m.data.length}@${m.address.toString(16)}`),
    );
    for (const m of messages) if (m.read) m.data.fill(0xa5);
    return { completed: messages.length };
  }
  close(): void {}
}

function rig(adapters: I2cAdapter[], options: { features?: bigint } = {}) {
  const bytes = new Uint8Array(new ArrayBuffer(0x10000));
  const view = new DataView(bytes.buffer);
  const region = new MemoryRegion(
    { guestPhysAddr: 0, memorySize: bytes.length, userspaceAddr: 0, mmapOffset: 0 },
    { bytes },
  );
  const lines: string[] = [];
  const log = new Logger("i2c", { level: "debug", sink: (line) => lines.push(line) });
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
    notify: () => {},
    fail: () => {},
    log,
  });
  const loop = new EventLoop(log);
  const device = new I2cDevice({ bus: new I2cBus(adapters) });
  const context: DeviceContext = {
    log,
    loop,
    queue: (index) => (index === REQUESTQ ? queue : null),
    memory: () => null,
    configChanged: () => {},
  };
  device.acknowledgeFeatures(options.features ?? 1n << BigInt(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST));
  device.activate(context);
  let nextDesc = 0;
  let availIdx = 0;
  const desc = (addr: number, len: number, flags: number): number => {
    const i = nextDesc++;
    view.setBigUint64(DESC + 16 * i, BigInt(addr), true);
    view.setUint32(DESC + 16 * i + 8, len, true);
    view.setUint16(DESC + 16 * i + 12, flags, true);
    view.setUint16(DESC + 16 * i + 14, (i + 1) % SIZE, true);
    return i;
  };
  /** Offers one request (three or two descriptors); returns its head. */
  const request = (
    address: number,
    flags: number,
    options: { write?: number[]; read?: number },
  ) => {
    const base = DATA + 0x100 * nextDesc;
    view.setUint16(base, address << 1, true);
    view.setUint32(base + 4, flags, true);
    const head = desc(base, 8, NEXT);
    if (options.write?.length) {
      bytes.set(options.write, base + 8);
      desc(base + 8, options.write.length, NEXT);
    }
    if (options.read) desc(base + 8, options.read, WRITE | NEXT);
    desc(base + 0xff, 1, WRITE);
    view.setUint16(AVAIL + 4 + 2 * (availIdx++ % SIZE), head, true);
    view.setUint16(AVAIL + 2, availIdx, true);
    return head;
  };
  const usedIdx = () => view.getUint16(USED + 2, true);
  /** Status bytes of the used chains, in used order. */
  const statuses = () =>
    Array.from({ length: usedIdx() }, (_, slot) => {
      const head = view.getUint32(USED + 4 + 8 * slot, true);
      return bytes[DATA + 0x100 * head + 0xff];
    });
  return {
    device,
    request,
    usedIdx,
    statuses,
    lines,
    loop,
    close: () => {
      device.reset();
      loop.close();
    },
  };
}

/** Runs the loop until `done()` or `timeoutMs`. */
async function runUntil(loop: EventLoop, done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const running = loop.run();
  while (!done() && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  loop.stop();
  await running;
}

Deno.test("i2c device: a host adapter's transfers run one per loop pass; simulated ones in a batch", async () => {
  const host = new RecordingAdapter("/dev/i2c-1", [0x50], true);
  const sim = new RecordingAdapter("simulated", [0x20], false);
  const r = rig([host, sim]);
  for (let i = 0; i < 3; i++) r.request(0x50, 0, { write: [i] });
  r.device.onKick(REQUESTQ);
  assert.equal(host.transfers.length, 1, "one blocking transfer, the rest deferred");
  assert.equal(r.usedIdx(), 1);
  await runUntil(r.loop, () => r.usedIdx() === 3);
  assert.equal(host.transfers.length, 3);
  for (let i = 0; i < 5; i++) r.request(0x20, 0, { write: [i] });
  r.device.onKick(REQUESTQ);
  assert.equal(sim.transfers.length, 5, "in-process transfers need no turn-taking");
  assert.deepEqual(r.statuses(), Array(8).fill(OK));
  r.close();
});

Deno.test("i2c device: a group spanning two host adapters fails, logged, nothing sent", () => {
  const a = new RecordingAdapter("/dev/i2c-1", [0x50], true);
  const b = new RecordingAdapter("/dev/i2c-2", [0x51], true);
  const r = rig([a, b]);
  r.request(0x50, FAIL_NEXT, { write: [1] });
  r.request(0x51, M_RD, { read: 1 });
  r.device.onKick(REQUESTQ);
  assert.deepEqual(r.statuses(), [ERR, ERR]);
  assert.equal(a.transfers.length + b.transfers.length, 0);
  assert.ok(r.lines.some((l) => l.includes("spanning two host adapters")), r.lines.join("\n"));
  r.close();
});

Deno.test("i2c device: a group completed by a later kick is one transfer; an unconfigured address ends it", () => {
  const host = new RecordingAdapter("/dev/i2c-1", [0x50], true);
  const r = rig([host]);
  r.request(0x50, FAIL_NEXT, { write: [0x10] });
  r.device.onKick(REQUESTQ);
  assert.equal(r.usedIdx(), 0, "the group waits for its end");
  r.request(0x50, M_RD, { read: 2 });
  r.device.onKick(REQUESTQ);
  assert.deepEqual(host.transfers, [["w1@50", "r2@50"]]);
  assert.deepEqual(r.statuses(), [OK, OK]);
  // Write to 0x50, then a read from an address no one configured: the write runs alone, as
  // a NACK would end the transfer on the wire; the rest of the group fails.
  r.request(0x50, FAIL_NEXT, { write: [0x11] });
  r.request(0x33, FAIL_NEXT | M_RD, { read: 1 });
  r.request(0x50, M_RD, { read: 1 });
  r.device.onKick(REQUESTQ);
  assert.deepEqual(host.transfers[1], ["w1@50"]);
  assert.deepEqual(r.statuses().slice(2), [OK, ERR, ERR]);
  r.close();
});

Deno.test("i2c device: a driver without ZERO_LENGTH_REQUEST is named in the log (§5.18.3)", () => {
  const quiet = rig([]);
  assert.ok(!quiet.lines.some((l) => l.includes("ZERO_LENGTH_REQUEST")));
  quiet.close();
  const r = rig([], { features: 0n });
  assert.ok(r.lines.some((l) => /WARN.*did not accept VIRTIO_I2C_F_ZERO_LENGTH_REQUEST/.test(l)));
  r.close();
});

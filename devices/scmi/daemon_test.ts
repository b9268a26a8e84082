// The real vhost-device-scmi process driven by the TypeScript vhost-user
// front-end (tests/frontend): real socket, memfd guest RAM and eventfds, the
// cmdq and eventq laid out as Linux's virtio SCMI transport does.
import assert from "node:assert/strict";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import { VHOST_USER_F_PROTOCOL_FEATURES } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import {
  type Chain,
  DriverMemory,
  DriverQueue,
  type UsedBuffer,
  VhostUserFrontend,
} from "../../tests/frontend/mod.ts";
import { CMDQ, EVENTQ, VIRTIO_SCMI_F_P2A_CHANNELS } from "./device.ts";
import {
  decodeHeader,
  encodeHeader,
  MessageType,
  MessageWriter,
  SCMI_PROTOCOL_BASE,
  SCMI_PROTOCOL_SENSOR,
  ScmiStatus,
} from "./message.ts";
import { startScmiDaemon, writeIioDevice } from "./testing.ts";

const FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_NOTIFY_ON_EMPTY) |
  bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) |
  bit(VIRTIO_SCMI_F_P2A_CHANNELS);
/** Linux's response buffer: VIRTIO_SCMI_MAX_PDU_SIZE = 128 + header + status. */
const PDU = 136;

async function session(socket: string) {
  const frontend = await VhostUserFrontend.connect(socket);
  const memory = new DriverMemory({ size: 4 << 20 });
  const cmdq = new DriverQueue(memory, { size: 64, eventIdx: true });
  const eventq = new DriverQueue(memory, { size: 64, eventIdx: true });
  const init = frontend.init();
  frontend.start({ memory, queues: [cmdq, eventq], features: FEATURES });
  let token = 0;
  const submit = (queue: DriverQueue, index: number, ...chains: Chain[]): void => {
    for (const chain of chains) queue.add(chain);
    queue.publish();
    if (queue.needsKick()) frontend.kick(index);
  };
  const collect = (queue: DriverQueue, index: number, count: number, timeoutMs = 5000) => {
    const out: UsedBuffer[] = [];
    const deadline = performance.now() + timeoutMs;
    while (out.length < count) {
      out.push(...queue.takeUsed());
      if (out.length >= count) break;
      const left = deadline - performance.now();
      if (left <= 0 || !frontend.waitForCall(index, left)) break;
    }
    return out;
  };
  /** Sends one command and returns its response. */
  const command = (protocolId: number, messageId: number, parameters: number[] = []) => {
    const header = encodeHeader({ messageId, messageType: 0, protocolId, token: ++token });
    const writer = new MessageWriter().u32(header);
    for (const p of parameters) writer.u32(p);
    submit(cmdq, CMDQ, { readable: [writer.finish()], writable: [PDU] });
    const [used] = collect(cmdq, CMDQ, 1);
    assert.ok(used, "a response");
    const view = new DataView(used.data.buffer, used.data.byteOffset, used.length);
    assert.equal(view.getUint32(0, true), header);
    return {
      status: view.getInt32(4, true),
      length: used.length,
      u32: (i: number) => view.getUint32(8 + 4 * i, true),
      i64: (offset: number) => view.getBigInt64(8 + offset, true),
      text: (offset: number) =>
        new TextDecoder().decode(used.data.subarray(8 + offset, 8 + offset + 16)).replace(
          /\0.*$/s,
          "",
        ),
    };
  };
  return {
    frontend,
    init,
    cmdq,
    eventq,
    submit,
    collect,
    command,
    close(): void {
      frontend.close();
      memory.close();
    },
  };
}

Deno.test("scmi daemon: both protocols over the cmdq, notifications on the eventq, hostile chains, reconnects", async () => {
  await using daemon = await startScmiDaemon([
    "-d",
    "fake,name=acc0",
    "-d",
    "iio,path={dir}/iio0,channel=in_temp,name=board",
  ], {
    prepare: (dir) => writeIioDevice(`${dir}/iio0`, { in_temp_raw: "2512", in_temp_scale: "10" }),
  });
  try {
    const s = await session(daemon.socket);
    assert.equal(s.init.features, FEATURES | bit(VHOST_USER_F_PROTOCOL_FEATURES));
    assert.equal(
      s.init.protocolFeatures,
      bit(P.MQ) | bit(P.REPLY_ACK) | bit(P.CONFIGURE_MEM_SLOTS),
    );
    assert.equal(s.init.queueNum, 2);

    // What Linux's SCMI core sends at probe, in its order.
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 0).u32(0), 0x20000);
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 1).u32(0), 0x0101);
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 3).text(0), "rust-vmm");
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 4).text(0), "deno");
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 5).u32(0), 0x100);
    let r = s.command(SCMI_PROTOCOL_BASE, 6, [0]);
    assert.deepEqual([r.status, r.u32(0), r.u32(1)], [0, 1, SCMI_PROTOCOL_SENSOR]);
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 7, [0]).text(4), "platform");
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 0).u32(0), 0x30000);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 1).u32(0), 2);
    r = s.command(SCMI_PROTOCOL_SENSOR, 3, [0]);
    assert.deepEqual([r.status, r.u32(0), r.text(16), r.text(44)], [0, 2, "acc0", "board"]);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 7, [0, 0]).text(16), "acc_X");
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 8, [1, 0]).u32(0), 3 | (1 << 12));
    // Readings: the fake changes, the iio channel follows its file.
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 6, [0, 0]).i64(0), 1n);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 6, [0, 0]).i64(0), 2n);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 6, [1, 0]).i64(0), 2512n);
    Deno.writeTextFileSync(`${daemon.dir}/iio0/in_temp_raw`, "2600\n");
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 6, [1, 0]).i64(0), 2600n);
    Deno.removeSync(`${daemon.dir}/iio0/in_temp_raw`);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 6, [1, 0]).status, ScmiStatus.HARDWARE_ERROR);
    await daemon.waitForLog("cannot read");

    // Notifications: the driver fills the eventq; enabling the sensor and its
    // updates at 10 ms (1 × 10^-2 s) starts SENSOR_UPDATE messages.
    s.submit(
      s.eventq,
      EVENTQ,
      ...Array.from({ length: 4 }, () => ({ readable: [], writable: [128] })),
    );
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 0xb, [0, 1]).status, 0);
    assert.equal(
      s.command(SCMI_PROTOCOL_SENSOR, 0xa, [0, (1 << 16) | ((-2 & 0x1f) << 11) | 1]).status,
      0,
    );
    const events = s.collect(s.eventq, EVENTQ, 3);
    assert.equal(events.length, 3);
    for (const event of events) {
      const view = new DataView(event.data.buffer, event.data.byteOffset, event.length);
      assert.equal(event.length, 12 + 3 * 16);
      assert.deepEqual(decodeHeader(view.getUint32(0, true)), {
        messageId: 1,
        messageType: MessageType.NOTIFICATION,
        protocolId: SCMI_PROTOCOL_SENSOR,
        token: 0,
      });
      assert.deepEqual([view.getUint32(4, true), view.getUint32(8, true)], [1, 0]);
    }
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 0xb, [0, 0]).status, 0);

    // Hostile chains: too short for a header, no response buffer, a response
    // buffer too small for a status, a wrong payload, an eventq buffer the
    // device may read. Each is answered or returned, and serving goes on.
    s.submit(s.cmdq, CMDQ, { readable: [new Uint8Array(2)], writable: [PDU] });
    s.submit(s.cmdq, CMDQ, { readable: [new MessageWriter().u32(0x4000).finish()], writable: [] });
    s.submit(s.cmdq, CMDQ, { readable: [new MessageWriter().u32(0x4000).finish()], writable: [4] });
    const returned = s.collect(s.cmdq, CMDQ, 3);
    assert.deepEqual(returned.map((u) => u.length), [0, 0, 0]);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 6, [0]).status, ScmiStatus.INVALID_PARAMETERS);
    assert.equal(s.command(0x99, 0).status, ScmiStatus.NOT_SUPPORTED);
    await daemon.waitForLog("has no header");
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 0).u32(0), 0x20000);
    // The eventq: the buffer left from before, one the device may read, one too
    // small, then a good one.
    s.submit(
      s.eventq,
      EVENTQ,
      { readable: [new Uint8Array(8)], writable: [128] },
      { readable: [], writable: [8] },
      { readable: [], writable: [128] },
    );
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 0xb, [0, 1]).status, 0);
    const delivered = s.collect(s.eventq, EVENTQ, 4);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 0xb, [0, 0]).status, 0);
    assert.deepEqual(delivered.map((u) => u.length), [60, 0, 0, 60]);
    await daemon.waitForLog("eventq buffer at head");
    s.close();
    await daemon.waitForLog("waiting for a front-end");

    // Reconnects: fresh state each time (sensors disabled), no fd growth.
    const fds: number[] = [];
    for (let i = 0; i < 4; i++) {
      const again = await session(daemon.socket);
      assert.equal(again.command(SCMI_PROTOCOL_SENSOR, 9, [0]).u32(0) & 1, 0);
      assert.equal(again.command(SCMI_PROTOCOL_SENSOR, 6, [0, 0]).status, 0);
      again.close();
      await daemon.waitForLog("waiting for a front-end", { count: 2 + i });
      fds.push(daemon.fdCount());
    }
    assert.equal(new Set(fds.slice(1)).size, 1, `fd counts ${fds}`);
    assert.ok(daemon.running);
  } catch (error) {
    console.error(daemon.log);
    throw error;
  }
});

Deno.test("scmi daemon: a reading that blocks on the host does not block other commands", async () => {
  await using daemon = await startScmiDaemon([
    "-d",
    "iio,path={dir}/iio0,channel=in_voltage0",
  ], {
    prepare: async (dir) => {
      writeIioDevice(`${dir}/iio0`, { in_voltage_scale: "1" });
      // A FIFO: reading it waits until the test writes, as a slow conversion would.
      const made = await new Deno.Command("mkfifo", { args: [`${dir}/iio0/in_voltage0_raw`] })
        .output();
      assert.ok(made.success);
    },
  });
  const s = await session(daemon.socket);
  try {
    const read = new MessageWriter().u32(encodeHeader({
      messageId: 6,
      messageType: 0,
      protocolId: SCMI_PROTOCOL_SENSOR,
      token: 77,
    })).u32(0).u32(0).finish();
    s.submit(s.cmdq, CMDQ, { readable: [read], writable: [PDU] });
    // Served while the reading waits.
    assert.equal(s.command(SCMI_PROTOCOL_BASE, 0).u32(0), 0x20000);
    assert.equal(s.command(SCMI_PROTOCOL_SENSOR, 1).u32(0), 1);
    const fifo = await Deno.open(`${daemon.dir}/iio0/in_voltage0_raw`, { write: true });
    await fifo.write(new TextEncoder().encode("1500\n"));
    fifo.close();
    const [used] = s.collect(s.cmdq, CMDQ, 1);
    assert.ok(used, "the reading's answer comes when the host has it");
    const view = new DataView(used.data.buffer, used.data.byteOffset, used.length);
    assert.equal(decodeHeader(view.getUint32(0, true)).token, 77);
    // 1500 mV = 1500 × 10^-3 V.
    assert.deepEqual([view.getInt32(4, true), view.getBigInt64(8, true)], [0, 1500n]);
  } finally {
    s.close();
  }
});

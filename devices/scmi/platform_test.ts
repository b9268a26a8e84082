// Every message of the base and sensor protocols through the platform
// dispatcher, as Linux sends them (drivers/firmware/arm_scmi/base.c,
// sensors.c), plus hostile messages: wrong types, lengths, ids, ranges.
import assert from "node:assert/strict";
import fc from "fast-check";
import { Logger } from "../../core/log.ts";
import { BaseProtocol } from "./base_protocol.ts";
import { FakeSensor } from "./fake_sensor.ts";
import {
  decodeHeader,
  encodeHeader,
  MessageType,
  MessageWriter,
  SCMI_PROTOCOL_BASE,
  SCMI_PROTOCOL_SENSOR,
  ScmiStatus,
} from "./message.ts";
import { ScmiPlatform } from "./platform.ts";
import { type Sensor, SensorError, SensorType } from "./sensor.ts";
import { type Scheduler, SensorProtocol } from "./sensor_protocol.ts";

/** Linux's response buffer: header + status + 128 bytes (VIRTIO_SCMI_MAX_MSG_SIZE). */
const LINUX_ROOM = 136;

class ManualClock implements Scheduler {
  timers: { at: number; callback: () => void; cancelled: boolean }[] = [];
  now = 0;
  setTimer(delayMs: number, callback: () => void): { cancel(): void } {
    const timer = { at: this.now + delayMs, callback, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = this.timers.filter((t) => !t.cancelled && t.at <= end)
        .sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.cancelled = true;
      this.now = due.at;
      due.callback();
    }
    this.now = end;
  }
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }
}

class ScalarSensor implements Sensor {
  readonly axes = [];
  value = 25120n;
  broken = false;
  constructor(readonly name: string, readonly type: number, readonly exponent: number) {}
  read(): readonly bigint[] {
    if (this.broken) throw new SensorError(`sensor '${this.name}': cannot read in_temp_raw`);
    return [this.value];
  }
}

function setup(sensors: Sensor[] = [new FakeSensor("acc0"), new ScalarSensor("board", 2, -3)]) {
  const lines: string[] = [];
  const log = new Logger("scmi", { level: "debug", sink: (line) => lines.push(line) });
  const clock = new ManualClock();
  const notifications: Uint8Array[] = [];
  let accepting = true;
  const sensorProtocol = new SensorProtocol({
    sensors,
    log,
    scheduler: clock,
    notify: (message) => {
      if (accepting) notifications.push(message);
      return accepting;
    },
  });
  const base = new BaseProtocol({
    protocols: [SCMI_PROTOCOL_SENSOR],
    implementationVersion: 0x100,
  });
  const platform = new ScmiPlatform([base, sensorProtocol], { log });
  let token = 0;
  const call = (
    protocolId: number,
    messageId: number,
    parameters: number[] = [],
    options: { room?: number; type?: number } = {},
  ) => {
    const headerWord = encodeHeader({
      messageId,
      messageType: options.type ?? MessageType.COMMAND,
      protocolId,
      token: ++token & 0x3ff,
    });
    const writer = new MessageWriter().u32(headerWord);
    for (const p of parameters) writer.u32(p);
    const bytes = writer.finish();
    const response = platform.handle(bytes, options.room ?? LINUX_ROOM);
    assert.ok(response && !(response instanceof Promise), "a response, at once");
    const view = new DataView(response.buffer, response.byteOffset, response.byteLength);
    assert.equal(view.getUint32(0, true), headerWord, "the header is echoed");
    return {
      status: view.getInt32(4, true),
      length: response.length - 8,
      u32: (i: number) => view.getUint32(8 + 4 * i, true),
      i64: (offset: number) => view.getBigInt64(8 + offset, true),
      text: (offset: number) => {
        const bytes = response.subarray(8 + offset, 8 + offset + 16);
        return new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
      },
    };
  };
  return {
    call,
    platform,
    lines,
    clock,
    notifications,
    sensorProtocol,
    setAccepting: (on: boolean) => void (accepting = on),
  };
}

const B = SCMI_PROTOCOL_BASE;
const S = SCMI_PROTOCOL_SENSOR;

Deno.test("base protocol: every message Linux sends at probe, and DISCOVER_AGENT", () => {
  const { call } = setup();
  let r = call(B, 0x0);
  assert.deepEqual([r.status, r.length, r.u32(0)], [0, 4, 0x20000]);
  r = call(B, 0x1);
  // One agent besides the platform, one protocol besides base.
  assert.deepEqual([r.status, r.u32(0)], [0, 0x0101]);
  r = call(B, 0x3);
  assert.deepEqual([r.status, r.length, r.text(0)], [0, 16, "rust-vmm"]);
  r = call(B, 0x4);
  assert.deepEqual([r.status, r.length, r.text(0)], [0, 16, "deno"]);
  r = call(B, 0x5);
  assert.deepEqual([r.status, r.u32(0)], [0, 0x100]);
  // The list is padded to whole words: Linux compares the size.
  r = call(B, 0x6, [0]);
  assert.deepEqual([r.status, r.length, r.u32(0), r.u32(1)], [0, 8, 1, 0x15]);
  r = call(B, 0x6, [1]);
  assert.deepEqual([r.status, r.length, r.u32(0)], [0, 4, 0]);
  r = call(B, 0x6, [2]);
  assert.equal(r.status, ScmiStatus.INVALID_PARAMETERS);
  r = call(B, 0x7, [0]);
  assert.deepEqual([r.status, r.length, r.u32(0), r.text(4)], [0, 20, 0, "platform"]);
  r = call(B, 0x7, [0xffffffff]);
  assert.deepEqual([r.status, r.u32(0), r.text(4)], [0, 1, "OSPM"]);
  r = call(B, 0x7, [7]);
  assert.equal(r.status, ScmiStatus.NOT_FOUND);
  for (const id of [0, 1, 2, 3, 4, 5, 6, 7]) assert.equal(call(B, 0x2, [id]).status, 0);
  for (const id of [8, 0xb, 0x10, 0x100]) {
    assert.equal(call(B, 0x2, [id]).status, ScmiStatus.NOT_FOUND);
  }
  // Unimplemented messages (BASE_NOTIFY_ERRORS, RESET_AGENT_CONFIGURATION).
  assert.equal(call(B, 0x8, [1]).status, ScmiStatus.NOT_SUPPORTED);
  assert.equal(call(B, 0xb, [0]).status, ScmiStatus.NOT_SUPPORTED);
});

Deno.test("sensor protocol: attributes, descriptors, axes, intervals as Linux parses them", () => {
  const { call } = setup();
  let r = call(S, 0x0);
  assert.deepEqual([r.status, r.u32(0)], [0, 0x30000]);
  r = call(S, 0x1);
  assert.deepEqual([r.status, r.length, r.u32(0), r.u32(1), r.u32(2), r.u32(3)], [
    0,
    16,
    2,
    0,
    0,
    0,
  ]);
  for (const id of [0, 1, 2, 3, 6, 7, 8, 9, 0xa, 0xb]) assert.equal(call(S, 0x2, [id]).status, 0);
  for (const id of [4, 5, 0xc, 0xd]) assert.equal(call(S, 0x2, [id]).status, ScmiStatus.NOT_FOUND);

  r = call(S, 0x3, [0]);
  assert.equal(r.status, 0);
  assert.equal(r.length, 4 + 2 * 28);
  assert.equal(r.u32(0), 2, "2 returned, 0 remaining");
  // Sensor 0: continuous updates (bit 30), 3 axes, multi-axis (bit 8), type NONE.
  assert.deepEqual([r.u32(1), r.u32(2), r.u32(3), r.text(16)], [
    0,
    1 << 30,
    (3 << 16) | (1 << 8),
    "acc0",
  ]);
  // Sensor 1: scalar °C with multiplier 10^-3 (5-bit two's complement in [15:11]).
  assert.deepEqual([r.u32(8), r.u32(9), r.u32(10), r.text(44)], [
    1,
    1 << 30,
    ((-3 & 0x1f) << 11) | SensorType.DEGREES_C,
    "board",
  ]);
  r = call(S, 0x3, [1]);
  assert.deepEqual([r.status, r.u32(0), r.u32(1)], [0, 1, 1]);
  // A buffer with room for one descriptor pages them.
  r = call(S, 0x3, [0], { room: 8 + 4 + 28 });
  assert.deepEqual([r.status, r.u32(0)], [0, 1 | (1 << 16)]);
  assert.equal(call(S, 0x3, [2]).status, ScmiStatus.INVALID_PARAMETERS);

  r = call(S, 0x7, [0, 0]);
  assert.equal(r.status, 0);
  assert.equal(r.u32(0), 3, "3 returned, 0 remaining");
  for (let axis = 0; axis < 3; axis++) {
    const at = 1 + 7 * axis;
    assert.deepEqual([r.u32(at), r.u32(at + 1), r.u32(at + 2), r.text(4 * (at + 3))], [
      axis,
      0,
      ((-3 & 0x1f) << 11) | SensorType.METERS_SEC_SQUARED,
      `acc_${"XYZ"[axis]}`,
    ]);
  }
  r = call(S, 0x7, [0, 2]);
  assert.deepEqual([r.status, r.u32(0), r.u32(1)], [0, 1, 2]);
  r = call(S, 0x7, [0, 0], { room: 8 + 4 + 28 });
  assert.deepEqual([r.status, r.u32(0)], [0, 1 | (2 << 26)], "1 returned, 2 remaining");
  assert.equal(call(S, 0x7, [0, 3]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(call(S, 0x7, [1, 0]).status, ScmiStatus.NOT_SUPPORTED, "scalar sensor");
  assert.equal(call(S, 0x7, [9, 0]).status, ScmiStatus.NOT_FOUND);

  // One segmented triplet: 10 ms, 10 s, 10 ms (seconds [20:5], exponent [4:0]).
  r = call(S, 0x8, [0, 0]);
  assert.deepEqual([r.status, r.u32(0), r.u32(1), r.u32(2), r.u32(3)], [
    0,
    3 | (1 << 12),
    (1 << 5) | (-2 & 0x1f),
    10 << 5,
    (1 << 5) | (-2 & 0x1f),
  ]);
  assert.equal(call(S, 0x8, [0, 1]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(call(S, 0x8, [5, 0]).status, ScmiStatus.NOT_FOUND);
});

Deno.test("sensor protocol: readings, config, and a sensor whose host side fails", () => {
  const board = new ScalarSensor("board", 2, -3);
  const { call, lines } = setup([new FakeSensor("acc0"), board]);
  // Readings work whether or not the sensor is enabled (scmi-hwmon never enables).
  let r = call(S, 0x6, [0, 0]);
  assert.equal(r.status, 0);
  assert.equal(r.length, 3 * 16, "value + timestamp per axis");
  assert.deepEqual([r.i64(0), r.i64(16), r.i64(32)], [1n, 1001n, 2001n]);
  assert.deepEqual([r.u32(2), r.u32(3)], [0, 0], "no timestamps");
  r = call(S, 0x6, [0, 0]);
  assert.equal(r.i64(0), 2n, "the fake changes on every read");
  board.value = -42n;
  r = call(S, 0x6, [1, 0]);
  assert.deepEqual([r.status, r.length, r.i64(0)], [0, 16, -42n]);
  assert.equal(call(S, 0x6, [1, 1]).status, ScmiStatus.NOT_SUPPORTED, "asynchronous");
  assert.equal(call(S, 0x6, [1, 2]).status, ScmiStatus.INVALID_PARAMETERS, "reserved flags");
  assert.equal(call(S, 0x6, [2, 0]).status, ScmiStatus.NOT_FOUND);
  board.broken = true;
  assert.equal(call(S, 0x6, [1, 0]).status, ScmiStatus.HARDWARE_ERROR);
  assert.equal(call(S, 0x6, [1, 0]).status, ScmiStatus.HARDWARE_ERROR);
  assert.equal(lines.filter((l) => l.includes("cannot read in_temp_raw")).length, 1, "logged once");
  board.broken = false;
  assert.equal(call(S, 0x6, [1, 0]).status, 0);

  // Default config: disabled, 100 ms (1 × 10^-1 s).
  r = call(S, 0x9, [0]);
  assert.deepEqual([r.status, r.u32(0)], [0, (1 << 16) | ((-1 & 0x1f) << 11)]);
  assert.equal(call(S, 0xa, [0, 1]).status, 0);
  assert.equal(call(S, 0x9, [0]).u32(0), (1 << 16) | ((-1 & 0x1f) << 11) | 1);
  // 5 × 10^-1 s, enabled.
  assert.equal(call(S, 0xa, [0, (5 << 16) | ((-1 & 0x1f) << 11) | 1]).status, 0);
  assert.equal(call(S, 0x9, [0]).u32(0), (5 << 16) | ((-1 & 0x1f) << 11) | 1);
  // 1 ms is below the offered range; 100 s above it.
  assert.equal(
    call(S, 0xa, [0, (1 << 16) | ((-3 & 0x1f) << 11) | 1]).status,
    ScmiStatus.OUT_OF_RANGE,
  );
  assert.equal(call(S, 0xa, [0, (100 << 16) | 1]).status, ScmiStatus.OUT_OF_RANGE);
  assert.equal(call(S, 0xa, [0, 1 << 4]).status, ScmiStatus.INVALID_PARAMETERS, "reserved bit");
  assert.equal(call(S, 0xa, [0, 2]).status, ScmiStatus.NOT_SUPPORTED, "timestamps");
  assert.equal(call(S, 0xa, [7, 1]).status, ScmiStatus.NOT_FOUND);
  assert.equal(call(S, 0x9, [7]).status, ScmiStatus.NOT_FOUND);
  assert.equal(call(S, 0xa, [0, 0]).status, 0);
  assert.equal(call(S, 0x9, [0]).u32(0) & 1, 0);
  // Trip points are not implemented.
  assert.equal(call(S, 0x4, [0, 1]).status, ScmiStatus.NOT_SUPPORTED);
  assert.equal(call(S, 0x5, [0, 1, 0, 0]).status, ScmiStatus.NOT_SUPPORTED);
});

Deno.test("sensor protocol: SENSOR_UPDATE notifications while enabled and notifying, at the interval", () => {
  const { call, clock, notifications, sensorProtocol, setAccepting } = setup();
  // Linux's scmi_iio turns notifications on at probe: nothing flows while disabled.
  assert.equal(call(S, 0xb, [0, 1]).status, 0);
  clock.advance(1000);
  assert.equal(notifications.length, 0);
  assert.equal(call(S, 0xa, [0, 1]).status, 0);
  clock.advance(99);
  assert.equal(notifications.length, 0);
  clock.advance(1);
  assert.equal(notifications.length, 1);
  clock.advance(300);
  assert.equal(notifications.length, 4, "one every 100 ms");
  const message = notifications[0];
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  assert.deepEqual(decodeHeader(view.getUint32(0, true)), {
    messageId: 0x1,
    messageType: MessageType.NOTIFICATION,
    protocolId: S,
    token: 0,
  });
  assert.equal(message.length, 12 + 3 * 16, "header, agent, sensor, 3 readings");
  assert.deepEqual([view.getUint32(4, true), view.getUint32(8, true)], [1, 0]);
  assert.equal(view.getBigInt64(12, true), 1n);
  // A full eventq drops notifications without stopping them.
  setAccepting(false);
  clock.advance(200);
  assert.deepEqual(sensorProtocol.notificationCounts, { sent: 4, dropped: 2 });
  setAccepting(true);
  assert.equal(call(S, 0xb, [0, 0]).status, 0);
  clock.advance(1000);
  assert.equal(notifications.length, 4);
  assert.equal(clock.pending, 0);
  assert.equal(call(S, 0xb, [0, 2]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(call(S, 0xb, [3, 1]).status, ScmiStatus.NOT_FOUND);
  call(S, 0xb, [1, 1]);
  call(S, 0xa, [1, 1]);
  assert.equal(clock.pending, 1);
  sensorProtocol.close();
  assert.equal(clock.pending, 0, "close stops the timers");
});

Deno.test("platform: hostile messages get a status and a log line, never a throw", () => {
  const { call, lines } = setup();
  // Wrong parameter sizes: short, long, not whole words.
  assert.equal(call(S, 0x6, [0]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(call(S, 0x6, [0, 0, 0]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(call(B, 0x0, [1]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(lines.filter((l) => l.includes("parameter bytes")).length, 3);
  // Unknown protocol, unknown message, delayed response / notification types.
  assert.equal(call(0x14, 0x0).status, ScmiStatus.NOT_SUPPORTED);
  assert.equal(call(S, 0xee).status, ScmiStatus.NOT_SUPPORTED);
  assert.equal(
    call(B, 0x0, [], { type: MessageType.NOTIFICATION }).status,
    ScmiStatus.NOT_SUPPORTED,
  );
  assert.equal(
    call(B, 0x0, [], { type: MessageType.DELAYED_RESPONSE }).status,
    ScmiStatus.NOT_SUPPORTED,
  );
  // Huge ids and indexes.
  assert.equal(call(S, 0x6, [0xffffffff, 0]).status, ScmiStatus.NOT_FOUND);
  assert.equal(call(S, 0x3, [0xffffffff]).status, ScmiStatus.INVALID_PARAMETERS);
  assert.equal(call(S, 0x7, [0, 0xffffffff]).status, ScmiStatus.INVALID_PARAMETERS);
  // A response that does not fit the buffer becomes COMMS_ERROR.
  assert.equal(call(B, 0x3, [], { room: 12 }).status, ScmiStatus.COMMS_ERROR);
  assert.ok(lines.some((l) => l.includes("WARN")));
});

Deno.test("platform: no header or no room for a status gives no response", () => {
  const { lines } = setup();
  const log = new Logger("scmi", { level: "warn", sink: (line) => lines.push(line) });
  const platform = new ScmiPlatform(
    [new BaseProtocol({ protocols: [], implementationVersion: 0 })],
    {
      log,
    },
  );
  assert.equal(platform.handle(new Uint8Array(3), 64), null);
  // A payload that is not whole words: INVALID_PARAMETERS, header echoed.
  const odd = new Uint8Array(7);
  new DataView(odd.buffer).setUint32(0, B << 10, true);
  const oddResponse = platform.handle(odd, 64) as Uint8Array;
  assert.deepEqual([...oddResponse.subarray(0, 4)], [0, 0x40, 0, 0]);
  assert.equal(new DataView(oddResponse.buffer).getInt32(4, true), ScmiStatus.INVALID_PARAMETERS);
  const request = new MessageWriter().u32(encodeHeader({
    messageId: 0,
    messageType: 0,
    protocolId: B,
    token: 5,
  })).finish();
  assert.equal(platform.handle(request, 7), null);
  assert.ok(platform.handle(request, 12));
  assert.ok(lines.some((l) => l.includes("has no header")));
  assert.ok(lines.some((l) => l.includes("cannot hold a status")));
});

class SlowSensor implements Sensor {
  readonly name = "slow";
  readonly type = SensorType.VOLTS;
  readonly exponent = -3;
  readonly axes = [];
  pending: { resolve: (v: readonly bigint[]) => void; reject: (e: Error) => void }[] = [];
  read(): Promise<readonly bigint[]> {
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }
}

Deno.test("sensor protocol: a reading that waits for host I/O answers later; failures too; updates wait for it", async () => {
  const slow = new SlowSensor();
  const { platform, clock, notifications, lines, sensorProtocol } = setup([slow]);
  const request = (messageId: number, parameters: number[]): Uint8Array => {
    const writer = new MessageWriter().u32(encodeHeader({
      messageId,
      messageType: 0,
      protocolId: S,
      token: 9,
    }));
    for (const p of parameters) writer.u32(p);
    return writer.finish();
  };
  const answer = platform.handle(request(0x6, [0, 0]), LINUX_ROOM);
  assert.ok(answer instanceof Promise);
  slow.pending.shift()!.resolve([1234n]);
  const bytes = (await answer)!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.deepEqual([view.getInt32(4, true), view.getBigInt64(8, true)], [0, 1234n]);
  const failing = platform.handle(request(0x6, [0, 0]), LINUX_ROOM) as Promise<Uint8Array>;
  slow.pending.shift()!.reject(new SensorError("sensor 'slow': cannot read in_voltage0_raw"));
  assert.equal(new DataView((await failing).buffer).getInt32(4, true), ScmiStatus.HARDWARE_ERROR);
  assert.ok(lines.some((l) => l.includes("cannot read in_voltage0_raw")));

  // Updates: the next timer starts only once the reading in flight is done.
  assert.ok(platform.handle(request(0xb, [0, 1]), LINUX_ROOM));
  assert.ok(platform.handle(request(0xa, [0, 1]), LINUX_ROOM));
  clock.advance(1000);
  assert.equal(slow.pending.length, 1, "one reading in flight, no pile-up");
  slow.pending.shift()!.resolve([5n]);
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(notifications.length, 1);
  assert.equal(clock.pending, 1, "the next update is scheduled");
  // A reading that settles after the connection closed sends nothing.
  clock.advance(100);
  sensorProtocol.close();
  slow.pending.shift()!.resolve([6n]);
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(notifications.length, 1);
  assert.equal(clock.pending, 0);
});

Deno.test("platform: random messages never throw, always fit the buffer, echo the header", () => {
  const { platform } = setup();
  fc.assert(
    fc.property(
      fc.constantFrom(SCMI_PROTOCOL_BASE, SCMI_PROTOCOL_SENSOR, 0x11, 0xff),
      fc.integer({ min: 0, max: 0x10 }),
      fc.integer({ min: 0, max: 3 }),
      fc.array(fc.constantFrom(0, 1, 2, 3, 0xffffffff, 0x7fff_ffff, 0x10001), { maxLength: 5 }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 200 }),
      (protocolId, messageId, messageType, parameters, extra, room) => {
        const headerWord = encodeHeader({ messageId, messageType, protocolId, token: 3 });
        const writer = new MessageWriter().u32(headerWord);
        for (const p of parameters) writer.u32(p);
        const bytes = new Uint8Array([...writer.finish(), ...new Uint8Array(extra)]);
        const response = platform.handle(bytes, room);
        assert.ok(!(response instanceof Promise), "sync sensors answer at once");
        if (room < 8) return assert.equal(response, null);
        assert.ok(response && response.length <= room);
        assert.equal(new DataView(response.buffer).getUint32(0, true), headerWord);
      },
    ),
    { numRuns: 3000 },
  );
});

/**
 * The SCMI sensor management protocol (DEN0056 §4.7, protocol 0x15,
 * version 3.0) over the host {@link Sensor}s, with continuous-update
 * notifications (SENSOR_UPDATE) while a sensor is enabled and its
 * notifications are on. Layouts follow the spec and what Linux parses
 * (drivers/firmware/arm_scmi/sensors.c): 28-byte descriptors without
 * extended attributes, readings as value + timestamp pairs, update
 * intervals as one segmented triplet.
 *
 * @module
 */

import type { Timer } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import {
  encodeHeader,
  MessageType,
  MessageWriter,
  PROTOCOL_ATTRIBUTES,
  PROTOCOL_MESSAGE_ATTRIBUTES,
  PROTOCOL_VERSION,
  SCMI_PROTOCOL_SENSOR,
  ScmiStatus,
} from "./message.ts";
import { andThen, type Eventually, type ProtocolReply, type ScmiProtocol } from "./protocol.ts";
import type { Sensor } from "./sensor.ts";

/** DEN0056 §4.7, SENSOR_DESCRIPTION_GET. */
export const SENSOR_DESCRIPTION_GET = 0x3;
/** DEN0056 §4.7, SENSOR_READING_GET. */
export const SENSOR_READING_GET = 0x6;
/** DEN0056 §4.7, SENSOR_AXIS_DESCRIPTION_GET. */
export const SENSOR_AXIS_DESCRIPTION_GET = 0x7;
/** DEN0056 §4.7, SENSOR_LIST_UPDATE_INTERVALS. */
export const SENSOR_LIST_UPDATE_INTERVALS = 0x8;
/** DEN0056 §4.7, SENSOR_CONFIG_GET. */
export const SENSOR_CONFIG_GET = 0x9;
/** DEN0056 §4.7, SENSOR_CONFIG_SET. */
export const SENSOR_CONFIG_SET = 0xa;
/** DEN0056 §4.7, SENSOR_CONTINUOUS_UPDATE_NOTIFY. */
export const SENSOR_CONTINUOUS_UPDATE_NOTIFY = 0xb;
/** Notification message id (DEN0056 §4.7, SENSOR_UPDATE). */
export const SENSOR_UPDATE = 0x1;

/** Sensor protocol version 3.0, as upstream. */
export const SENSOR_VERSION = 0x30000;
/** Bytes of a sensor descriptor without extended attributes (SENSOR_DESCRIPTION_GET). */
export const SENSOR_DESCRIPTOR_SIZE = 28;
/** Bytes of an axis descriptor without extended attributes (SENSOR_AXIS_DESCRIPTION_GET). */
export const AXIS_DESCRIPTOR_SIZE = 28;
/** Agent id notifications name: the guest (see the base protocol's DISCOVER_AGENT). */
export const NOTIFY_AGENT_ID = 1;

/** sensor_attributes_low bit 30: continuous update notifications supported. */
const ATTR_LOW_UPDATE_NOTIFY = 1 << 30;
/** sensor_attributes_high bit 8: multi-axis sensor; bits [21:16]: number of axes. */
const ATTR_HIGH_AXIS_SUPPORT = 1 << 8;
/** sensor_config bit 0: enabled; bit 1: timestamps; [8:2] reserved; [10:9] rounding; [31:11] interval. */
const CONFIG_ENABLED = 1;
const CONFIG_TIMESTAMP = 1 << 1;
const CONFIG_RESERVED = 0x7f << 2;

/** An update interval: seconds × 10^exponent (SENSOR_LIST_UPDATE_INTERVALS). */
export interface UpdateInterval {
  /** 16-bit seconds field. */
  readonly seconds: number;
  /** 5-bit signed power of ten. */
  readonly exponent: number;
}

/** Shortest, longest and step of the update intervals offered (one segmented triplet). */
export const MIN_INTERVAL: UpdateInterval = { seconds: 1, exponent: -2 };
/** See {@link MIN_INTERVAL}. */
export const MAX_INTERVAL: UpdateInterval = { seconds: 10, exponent: 0 };
/** See {@link MIN_INTERVAL}. */
export const STEP_INTERVAL: UpdateInterval = { seconds: 1, exponent: -2 };
/** The interval a sensor starts with: 100 ms (never 0: Linux's scmi_iio divides by it). */
export const DEFAULT_INTERVAL: UpdateInterval = { seconds: 1, exponent: -1 };

function intervalMs(interval: UpdateInterval): number {
  return interval.seconds * 10 ** interval.exponent * 1000;
}

/** SENSOR_LIST_UPDATE_INTERVALS' word: seconds in bits [20:5], exponent in [4:0]. */
function encodeInterval(interval: UpdateInterval): number {
  return ((interval.seconds & 0xffff) << 5) | (interval.exponent & 0x1f);
}

function signed5(bits: number): number {
  return bits & 0x10 ? bits - 32 : bits;
}

/** Runs callbacks later: the event loop, or a test's clock. */
export interface Scheduler {
  /** Calls `callback` after `delayMs`. */
  setTimer(delayMs: number, callback: () => void): Timer;
}

/** Options of {@link SensorProtocol}. */
export interface SensorProtocolOptions {
  /** The sensors, by id. */
  readonly sensors: readonly Sensor[];
  /** Where failures are logged. */
  readonly log: Logger;
  /** Runs the update timers. */
  readonly scheduler: Scheduler;
  /** Sends a notification message (header included) to the guest; false if it was dropped. */
  readonly notify: (message: Uint8Array) => boolean;
}

interface SensorState {
  enabled: boolean;
  interval: UpdateInterval;
  notify: boolean;
  timer: Timer | null;
  /** An update's reading is in flight: the next waits for it. */
  updating: boolean;
  failed: boolean;
}

/** The sensor protocol for one guest connection. */
export class SensorProtocol implements ScmiProtocol {
  readonly protocolId: number = SCMI_PROTOCOL_SENSOR;
  readonly messages: ReadonlyMap<number, number> = new Map([
    [PROTOCOL_VERSION, 0],
    [PROTOCOL_ATTRIBUTES, 0],
    [PROTOCOL_MESSAGE_ATTRIBUTES, 1],
    [SENSOR_DESCRIPTION_GET, 1],
    [SENSOR_READING_GET, 2],
    [SENSOR_AXIS_DESCRIPTION_GET, 2],
    [SENSOR_LIST_UPDATE_INTERVALS, 2],
    [SENSOR_CONFIG_GET, 1],
    [SENSOR_CONFIG_SET, 2],
    [SENSOR_CONTINUOUS_UPDATE_NOTIFY, 2],
  ]);
  readonly #sensors: readonly Sensor[];
  readonly #states: SensorState[];
  readonly #options: SensorProtocolOptions;
  #notificationsSent = 0;
  #notificationsDropped = 0;
  #closed = false;

  /** The protocol over `options.sensors`, all disabled with notifications off. */
  constructor(options: SensorProtocolOptions) {
    this.#options = options;
    this.#sensors = options.sensors;
    this.#states = this.#sensors.map(() => ({
      enabled: false,
      interval: DEFAULT_INTERVAL,
      notify: false,
      timer: null,
      updating: false,
      failed: false,
    }));
  }

  /** Notifications sent and dropped (no eventq buffer) so far. */
  get notificationCounts(): { sent: number; dropped: number } {
    return { sent: this.#notificationsSent, dropped: this.#notificationsDropped };
  }

  handle(
    messageId: number,
    parameters: readonly number[],
    room: number,
  ): Eventually<ProtocolReply> {
    switch (messageId) {
      case PROTOCOL_VERSION:
        return ok(new MessageWriter().u32(SENSOR_VERSION));
      case PROTOCOL_ATTRIBUTES:
        // PROTOCOL_ATTRIBUTES: sensors [15:0], no asynchronous reads [23:16], no shared memory.
        return ok(new MessageWriter().u32(this.#sensors.length & 0xffff).u32(0).u32(0).u32(0));
      case PROTOCOL_MESSAGE_ATTRIBUTES:
        return this.messages.has(parameters[0])
          ? ok(new MessageWriter().u32(0))
          : { status: ScmiStatus.NOT_FOUND };
      case SENSOR_DESCRIPTION_GET:
        return this.#describe(parameters[0], room);
    }
    const id = parameters[0];
    const sensor = this.#sensors[id];
    if (sensor === undefined) {
      // §4.7: a sensor_id that names no sensor is NOT_FOUND.
      return { status: ScmiStatus.NOT_FOUND, reason: `no sensor ${id >>> 0}` };
    }
    const state = this.#states[id];
    switch (messageId) {
      case SENSOR_READING_GET:
        return this.#read(id, parameters[1]);
      case SENSOR_AXIS_DESCRIPTION_GET:
        return this.#describeAxes(id, parameters[1], room);
      case SENSOR_LIST_UPDATE_INTERVALS:
        if (parameters[1] !== 0) {
          return {
            status: ScmiStatus.INVALID_PARAMETERS,
            reason: `LIST_UPDATE_INTERVALS index ${parameters[1] >>> 0} past the one triplet`,
          };
        }
        // One segmented triplet: lowest, highest, step (bit 12 set, 3 returned, 0 remaining).
        return ok(
          new MessageWriter().u32(3 | (1 << 12)).u32(encodeInterval(MIN_INTERVAL))
            .u32(encodeInterval(MAX_INTERVAL)).u32(encodeInterval(STEP_INTERVAL)),
        );
      case SENSOR_CONFIG_GET:
        return ok(new MessageWriter().u32(configWord(state)));
      case SENSOR_CONFIG_SET:
        return this.#configure(id, parameters[1]);
      case SENSOR_CONTINUOUS_UPDATE_NOTIFY: {
        const control = parameters[1];
        if ((control & ~1) !== 0) {
          return {
            status: ScmiStatus.INVALID_PARAMETERS,
            reason: `CONTINUOUS_UPDATE_NOTIFY with reserved bits 0x${(control >>> 0).toString(16)}`,
          };
        }
        state.notify = (control & 1) === 1;
        this.#schedule(id);
        return { status: ScmiStatus.SUCCESS };
      }
      default:
        return { status: ScmiStatus.NOT_SUPPORTED };
    }
  }

  /** Stops every update timer (the connection ended); readings in flight are dropped. */
  close(): void {
    this.#closed = true;
    const { sent, dropped } = this.notificationCounts;
    if (sent + dropped > 0) {
      this.#options.log.info(`notifications: ${sent} sent, ${dropped} dropped (no eventq buffer)`);
    }
    for (const state of this.#states) {
      state.timer?.cancel();
      state.timer = null;
      state.notify = false;
    }
  }

  /** SENSOR_DESCRIPTION_GET: descriptors from `first`, as many as fit. */
  #describe(first: number, room: number): ProtocolReply {
    const count = this.#sensors.length;
    if (first >= count) {
      return {
        status: ScmiStatus.INVALID_PARAMETERS,
        reason: `DESCRIPTION_GET from index ${first >>> 0} of ${count} sensors`,
      };
    }
    const fit = Math.max(1, Math.floor((room - 4) / SENSOR_DESCRIPTOR_SIZE));
    const returned = Math.min(count - first, fit, 0xfff);
    const writer = new MessageWriter().u32(returned | ((count - first - returned) << 16));
    for (let id = first; id < first + returned; id++) {
      const sensor = this.#sensors[id];
      const axes = sensor.axes.length;
      writer.u32(id).u32(ATTR_LOW_UPDATE_NOTIFY);
      writer.u32(
        axes > 0
          ? (axes << 16) | ATTR_HIGH_AXIS_SUPPORT | sensor.type
          : ((sensor.exponent & 0x1f) << 11) | sensor.type,
      );
      writer.name(sensor.name);
    }
    return ok(writer);
  }

  /** SENSOR_AXIS_DESCRIPTION_GET: axis descriptors from `first`, as many as fit. */
  #describeAxes(id: number, first: number, room: number): ProtocolReply {
    const axes = this.#sensors[id].axes;
    if (axes.length === 0) {
      return { status: ScmiStatus.NOT_SUPPORTED, reason: `sensor ${id} has no axes` };
    }
    if (first >= axes.length) {
      return {
        status: ScmiStatus.INVALID_PARAMETERS,
        reason: `AXIS_DESCRIPTION_GET from axis ${first >>> 0} of ${axes.length} (sensor ${id})`,
      };
    }
    const fit = Math.max(1, Math.floor((room - 4) / AXIS_DESCRIPTOR_SIZE));
    const returned = Math.min(axes.length - first, fit);
    const writer = new MessageWriter().u32(returned | ((axes.length - first - returned) << 26));
    for (let axis = first; axis < first + returned; axis++) {
      const { name, type, exponent } = axes[axis];
      writer.u32(axis).u32(0).u32(((exponent & 0x1f) << 11) | type).name(name);
    }
    return ok(writer);
  }

  /** SENSOR_READING_GET: synchronous readings, value then (unsupported, 0) timestamp per axis. */
  #read(id: number, flags: number): Eventually<ProtocolReply> {
    if ((flags & ~1) !== 0) {
      return {
        status: ScmiStatus.INVALID_PARAMETERS,
        reason: `READING_GET of sensor ${id} with reserved flag bits 0x${
          (flags >>> 0).toString(16)
        }`,
      };
    }
    if (flags & 1) {
      return { status: ScmiStatus.NOT_SUPPORTED, reason: `asynchronous read of sensor ${id}` };
    }
    return andThen(
      this.#readSensor(id),
      (values): ProtocolReply =>
        values === null
          ? { status: ScmiStatus.HARDWARE_ERROR }
          : ok(readings(new MessageWriter(), values)),
    );
  }

  /** SENSOR_CONFIG_SET. */
  #configure(id: number, config: number): ProtocolReply {
    const state = this.#states[id];
    if (config & CONFIG_RESERVED) {
      return {
        status: ScmiStatus.INVALID_PARAMETERS,
        reason: `CONFIG_SET of sensor ${id} with reserved bits 0x${(config >>> 0).toString(16)}`,
      };
    }
    if (config & CONFIG_TIMESTAMP) {
      return { status: ScmiStatus.NOT_SUPPORTED, reason: `timestamps asked of sensor ${id}` };
    }
    const seconds = config >>> 16;
    if (seconds !== 0) {
      const interval = { seconds, exponent: signed5((config >>> 11) & 0x1f) };
      const ms = intervalMs(interval);
      if (ms < intervalMs(MIN_INTERVAL) || ms > intervalMs(MAX_INTERVAL)) {
        return {
          status: ScmiStatus.OUT_OF_RANGE,
          reason: `update interval ${ms} ms of sensor ${id} outside the offered range`,
        };
      }
      state.interval = interval;
    }
    state.enabled = (config & CONFIG_ENABLED) !== 0;
    this.#schedule(id);
    return { status: ScmiStatus.SUCCESS };
  }

  /** Sensor `id`'s values, or null (logged) when the host cannot read it. */
  #readSensor(id: number): Eventually<readonly bigint[] | null> {
    const state = this.#states[id];
    const succeeded = (values: readonly bigint[]): readonly bigint[] => {
      state.failed = false;
      return values;
    };
    const failed = (error: unknown): null => {
      // Logged once per failure streak: a vanished file should not flood the log.
      if (!state.failed) {
        this.#options.log.error(error instanceof Error ? error.message : String(error));
      }
      state.failed = true;
      return null;
    };
    try {
      const values = this.#sensors[id].read();
      return values instanceof Promise ? values.then(succeeded, failed) : succeeded(values);
    } catch (error) {
      return failed(error);
    }
  }

  /** Starts or stops sensor `id`'s updates to match its state (SENSOR_UPDATE). */
  #schedule(id: number): void {
    const state = this.#states[id];
    const active = state.enabled && state.notify;
    if (!active) {
      state.timer?.cancel();
      state.timer = null;
      return;
    }
    if (state.timer || state.updating || this.#closed) return;
    state.timer = this.#options.scheduler.setTimer(intervalMs(state.interval), () => {
      state.timer = null;
      state.updating = true;
      andThen(this.#readSensor(id), (values) => {
        state.updating = false;
        if (this.#closed) return;
        if (values !== null && state.enabled && state.notify) this.#sendUpdate(id, values);
        this.#schedule(id);
      });
    });
  }

  #sendUpdate(id: number, values: readonly bigint[]): void {
    const header = encodeHeader({
      messageId: SENSOR_UPDATE,
      messageType: MessageType.NOTIFICATION,
      protocolId: SCMI_PROTOCOL_SENSOR,
      token: 0,
    });
    const writer = new MessageWriter().u32(header).u32(NOTIFY_AGENT_ID).u32(id);
    if (this.#options.notify(readings(writer, values).finish())) {
      this.#notificationsSent++;
      return;
    }
    if (this.#notificationsDropped++ === 0) {
      this.#options.log.warn("the eventq has no free buffer: dropping notifications until it has");
    }
  }
}

function ok(writer: MessageWriter): ProtocolReply {
  return { status: ScmiStatus.SUCCESS, values: writer.finish() };
}

function readings(writer: MessageWriter, values: readonly bigint[]): MessageWriter {
  for (const value of values) writer.i64(value).u32(0).u32(0);
  return writer;
}

function configWord(state: SensorState): number {
  return ((state.interval.seconds << 16) | ((state.interval.exponent & 0x1f) << 11) |
    (state.enabled ? CONFIG_ENABLED : 0)) >>> 0;
}

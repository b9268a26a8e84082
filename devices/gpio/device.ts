/**
 * The virtio GPIO device (VIRTIO 1.2 §5.17, device ID 41; QEMU's
 * vhost-user-gpio-pci supplies the ID) for one front-end connection:
 * requests on `requestq` go to a {@link GpioChip}; `eventq` buffers unmask a
 * line's interrupt and come back when it fires.
 *
 * Interrupts (§5.17.6.6, §5.17.7): an edge seen while the line is masked is
 * latched and delivered when the driver hands a buffer back; a level trigger
 * is emulated from the chip's edges and the line's current value (libgpiod
 * v2 reports edges only): it fires when the asserting edge arrives while
 * unmasked, and again whenever a buffer comes back while the line is still
 * asserted; nothing is latched for it while masked.
 *
 * @module
 */

import { DeferredPass } from "../../core/deferred_pass.ts";
import type { DeviceContext, VirtioDevice } from "../../core/device.ts";
import type { Logger } from "../../core/log.ts";
import { bit, ProtocolFeature as P } from "../../core/protocol/constants.ts";
import {
  type DescriptorChain,
  readSlices,
  writeSlices,
} from "../../core/virtio/descriptor_chain.ts";
import { VIRTIO_DEVICE_FEATURES } from "../../core/virtio/features.ts";
import { serveAvailable, type SplitQueue } from "../../core/virtio/split_queue.ts";
import type { EdgeDetection, EdgeEvent, GpioChip } from "./chip.ts";
import {
  encodeConfig,
  encodeLineNames,
  type GpioRequest,
  IRQ_REQUEST_SIZE,
  IRQ_RESPONSE_SIZE,
  type IrqType,
  isLevelIrq,
  type Level,
  MESSAGE_NAMES,
  parseIrqRequest,
  parseRequest,
  REQUEST_SIZE,
  RESPONSE_SIZE,
  sanitizeLineNames,
  VIRTIO_GPIO_DIRECTION_IN,
  VIRTIO_GPIO_DIRECTION_NONE,
  VIRTIO_GPIO_DIRECTION_OUT,
  VIRTIO_GPIO_F_IRQ,
  VIRTIO_GPIO_IRQ_STATUS_INVALID,
  VIRTIO_GPIO_IRQ_STATUS_VALID,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH,
  VIRTIO_GPIO_IRQ_TYPE_NONE,
  VIRTIO_GPIO_MSG_GET_DIRECTION,
  VIRTIO_GPIO_MSG_GET_LINE_NAMES,
  VIRTIO_GPIO_MSG_GET_VALUE,
  VIRTIO_GPIO_MSG_SET_DIRECTION,
  VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
  VIRTIO_GPIO_MSG_SET_VALUE,
  VIRTIO_GPIO_STATUS_ERR,
  VIRTIO_GPIO_STATUS_OK,
} from "./protocol.ts";

/** §5.17.2: queue 0. */
export const REQUESTQ = 0;
/** §5.17.2: queue 1, present with VIRTIO_GPIO_F_IRQ. */
export const EVENTQ = 1;
/** Largest queue size accepted, as upstream. */
export const MAX_QUEUE_SIZE = 256;
/** Requests served per pass before the loop serves other fds. */
export const BUDGET = 256;

/** Rejections logged at warn level before the rest go to debug. */
const LOUD_REJECTIONS = 10;

/** The edges the chip must report for an interrupt type. */
export function edgesFor(type: IrqType): EdgeDetection {
  switch (type) {
    case VIRTIO_GPIO_IRQ_TYPE_NONE:
      return "none";
    case VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING:
    case VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH:
      return "rising";
    case VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING:
      return "falling";
    default:
      // EDGE_BOTH, and LEVEL_LOW's asserting edge is the falling one.
      return type === VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH ? "both" : "falling";
  }
}

/** An eventq buffer waiting for its line's interrupt (the line is unmasked). */
interface Armed {
  readonly chain: DescriptorChain;
  readonly queue: SplitQueue;
}

/** The device's view of one line; the chip holds direction and value. */
interface LineState {
  irqType: IrqType;
  armed: Armed | null;
  /** An edge arrived while masked (§5.17.6.6: edges are latched, levels are not). */
  latched: boolean;
  /** The last SET_VALUE, used when the line becomes an output (§5.17.6.5). */
  value: Level;
}

/**
 * Where the eventq stood when it stopped, and the buffers held then (line →
 * head). A VM pause stops and restarts the rings without telling the device
 * why; the ring's position tells the same ring resuming from a fresh one.
 */
interface Stopped {
  readonly heads: ReadonlyMap<number, number>;
  readonly size: number;
  readonly nextAvail: number;
  readonly nextUsed: number;
}

/** A request failed: the driver gets VIRTIO_GPIO_STATUS_ERR, the log gets the reason. */
class RequestFailed extends Error {}

/** The GPIO device for one front-end connection, serving one chip. */
export class GpioDevice implements VirtioDevice {
  readonly name = "gpio";
  readonly numQueues = 2;
  readonly maxQueueSize: number = MAX_QUEUE_SIZE;
  /** Upstream's bits: the standard ones and VIRTIO_GPIO_F_IRQ (§5.17.3). */
  readonly features: bigint = VIRTIO_DEVICE_FEATURES | bit(VIRTIO_GPIO_F_IRQ);
  /**
   * Upstream's MQ, CONFIG (QEMU's vhost-user-gpio reads the config space
   * from the back-end) and REPLY_ACK; CONFIGURE_MEM_SLOTS as the other devices.
   */
  readonly protocolFeatures: bigint = bit(P.MQ) | bit(P.CONFIG) | bit(P.REPLY_ACK) |
    bit(P.CONFIGURE_MEM_SLOTS);
  readonly #chip: GpioChip;
  readonly #names: Uint8Array;
  readonly #config: Uint8Array;
  readonly #lines: LineState[];
  #context: DeviceContext | null = null;
  #irq = false;
  #featuresLogged = false;
  readonly #log: Logger | undefined;
  readonly #requestsPass = new DeferredPass(() => this.#serveRequests());
  readonly #eventsPass = new DeferredPass(() => this.#serveEvents());
  #rejected = 0;
  /** The eventq last seen running. */
  #eventq: SplitQueue | null = null;
  #stopped: Stopped | null = null;

  /** A device serving `chip`'s lines. */
  constructor(chip: GpioChip, options: { log?: Logger } = {}) {
    this.#chip = chip;
    this.#log = options.log;
    const { names, changes } = sanitizeLineNames(chip.lineNames());
    for (const change of changes) options.log?.warn(`${chip.label}: ${change}`);
    this.#names = encodeLineNames(names);
    this.#config = encodeConfig({ ngpio: chip.numLines, namesSize: this.#names.length });
    this.#lines = Array.from({ length: chip.numLines }, () => ({
      irqType: VIRTIO_GPIO_IRQ_TYPE_NONE,
      armed: null,
      latched: false,
      value: 0,
    }));
  }

  activate(context: DeviceContext): void {
    this.#context = context;
    this.#chip.setEdgeListener((event) => this.#onEdge(event));
  }

  acknowledgeFeatures(features: bigint): void {
    const irq = (features & bit(VIRTIO_GPIO_F_IRQ)) !== 0n;
    if (irq !== this.#irq || !this.#featuresLogged) {
      // Some front-ends drop the bit (QEMU 7.2): say why a guest has no interrupts.
      this.#log?.info(
        `driver features 0x${features.toString(16)}: interrupts ${
          irq ? "on" : "off (no VIRTIO_GPIO_F_IRQ)"
        }`,
      );
    }
    this.#featuresLogged = true;
    this.#irq = irq;
  }

  readConfig(offset: number, length: number): Uint8Array {
    if (offset + length > this.#config.length) {
      throw new RangeError(
        `config [${offset}, +${length}) is outside its ${this.#config.length} bytes`,
      );
    }
    return this.#config.slice(offset, offset + length);
  }

  onKick(queue: number): void {
    if (queue === REQUESTQ) this.#serveRequests();
    else if (queue === EVENTQ) this.#serveEvents();
  }

  queueStopped(queue: number): void {
    const ring = this.#eventq;
    if (queue !== EVENTQ || !ring) return;
    // The driver still counts the held buffers in flight: remember them for
    // the ring's resumption (VM pause).
    const heads = new Map<number, number>();
    for (const [gpio, line] of this.#lines.entries()) {
      if (!line.armed) continue;
      heads.set(gpio, line.armed.chain.head);
      line.armed = null;
    }
    this.#stopped = { heads, size: ring.size, nextAvail: ring.nextAvail, nextUsed: ring.nextUsed };
    this.#eventq = null;
  }

  reset(): void {
    this.#chip.setEdgeListener(null);
    this.#resetLines();
    this.#eventq = null;
    this.#stopped = null;
    this.#context = null;
  }

  /** A device reset for the lines (§5.17.6): released, no interrupts, nothing held. */
  #resetLines(): void {
    this.#chip.releaseAll();
    for (const line of this.#lines) {
      line.irqType = VIRTIO_GPIO_IRQ_TYPE_NONE;
      line.armed = null;
      line.latched = false;
      line.value = 0;
    }
  }

  #serveRequests(): void {
    const context = this.#context;
    const queue = context?.queue(REQUESTQ);
    if (!context || !queue) return;
    const pass = serveAvailable(queue, (chain) => this.#request(chain, context.log), {
      budget: BUDGET,
    });
    if (pass.more) this.#requestsPass.schedule(context.loop);
  }

  /** Serves one requestq chain; returns the bytes written (§5.17.6). */
  #request(chain: DescriptorChain, log: Logger): number {
    const writable = chain.writableLength;
    if (writable === 0) {
      this.#reject(log, `chain at head ${chain.head} has no room for a response`);
      return 0;
    }
    // §5.17.6: the request is exactly one struct virtio_gpio_request.
    const request = chain.readableLength === REQUEST_SIZE
      ? parseRequest(readSlices(chain.readable, { length: REQUEST_SIZE }), {
        ngpio: this.#chip.numLines,
        irq: this.#irq,
      })
      : { error: `request of ${chain.readableLength} bytes, expected ${REQUEST_SIZE}` };
    if ("error" in request) {
      this.#reject(log, request.error);
      return this.#respondError(chain);
    }
    const expected = request.type === VIRTIO_GPIO_MSG_GET_LINE_NAMES
      ? 1 + this.#names.length
      : RESPONSE_SIZE;
    if (writable < expected) {
      this.#reject(
        log,
        `${
          MESSAGE_NAMES[request.type]
        }: response buffer of ${writable} bytes, expected ${expected}`,
      );
      return this.#respondError(chain);
    }
    try {
      const value = this.#handle(request, log);
      if (log.enabled("debug")) log.debug(`${describe(request)} -> ok`);
      const response = new Uint8Array(expected);
      response[0] = VIRTIO_GPIO_STATUS_OK;
      if (typeof value === "number") response[1] = value;
      else response.set(value, 1);
      return writeSlices(chain.writable, response);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof RequestFailed) this.#reject(log, `${describe(request)}: ${message}`);
      else log.error(`${describe(request)} failed on ${this.#chip.label}: ${message}`);
      return this.#respondError(chain);
    }
  }

  /** §5.17.6: status ERR and a zero value, as much of it as fits. */
  #respondError(chain: DescriptorChain): number {
    return writeSlices(chain.writable, Uint8Array.of(VIRTIO_GPIO_STATUS_ERR, 0));
  }

  /** Performs a request; returns the response value (a byte, or the names block). */
  #handle(request: GpioRequest, log: Logger): number | Uint8Array {
    const chip = this.#chip;
    switch (request.type) {
      case VIRTIO_GPIO_MSG_GET_LINE_NAMES:
        // §5.17.6.1: supported only when gpio_names_size is not zero.
        if (this.#names.length === 0) throw new RequestFailed("the chip's lines have no names");
        return this.#names;
      case VIRTIO_GPIO_MSG_GET_DIRECTION:
        return chip.direction(request.gpio);
      case VIRTIO_GPIO_MSG_GET_VALUE:
        return chip.value(request.gpio);
      case VIRTIO_GPIO_MSG_SET_VALUE: {
        const line = this.#lines[request.gpio];
        line.value = request.value;
        // §5.17.6.5: a line that is not an output keeps it for when it becomes one.
        if (chip.direction(request.gpio) === VIRTIO_GPIO_DIRECTION_OUT) {
          chip.setValue(request.gpio, request.value);
        }
        return 0;
      }
      case VIRTIO_GPIO_MSG_SET_DIRECTION: {
        const { gpio, direction } = request;
        const line = this.#lines[gpio];
        if (direction === VIRTIO_GPIO_DIRECTION_NONE) {
          // §5.17.6 device requirements: NONE discards all the line's state.
          chip.setDirection(gpio, direction, { value: 0 });
          this.#disableIrq(gpio, log);
          line.value = 0;
          return 0;
        }
        if (direction === VIRTIO_GPIO_DIRECTION_OUT && line.irqType !== VIRTIO_GPIO_IRQ_TYPE_NONE) {
          throw new RequestFailed("the line has an interrupt enabled; outputs have none");
        }
        chip.setDirection(gpio, direction, { value: line.value });
        if (line.irqType !== VIRTIO_GPIO_IRQ_TYPE_NONE) {
          chip.setEdgeDetection(gpio, edgesFor(line.irqType));
        }
        return 0;
      }
      case VIRTIO_GPIO_MSG_SET_IRQ_TYPE:
        this.#setIrqType(request.gpio, request.irqType, log);
        return 0;
    }
  }

  /** §5.17.6.6: enables, disables or keeps a line's interrupt. */
  #setIrqType(gpio: number, type: IrqType, log: Logger): void {
    const line = this.#lines[gpio];
    if (type === VIRTIO_GPIO_IRQ_TYPE_NONE) {
      this.#disableIrq(gpio, log);
      return;
    }
    if (line.irqType === type) return;
    if (line.irqType !== VIRTIO_GPIO_IRQ_TYPE_NONE) {
      throw new RequestFailed(
        `type ${line.irqType} is enabled; a change goes through VIRTIO_GPIO_IRQ_TYPE_NONE`,
      );
    }
    const chip = this.#chip;
    const direction = chip.direction(gpio);
    if (direction === VIRTIO_GPIO_DIRECTION_OUT) {
      throw new RequestFailed("the line is an output (§5.17.6.6: no interrupts on outputs)");
    }
    // A kernel consumer may ask for an interrupt on a line it never set to input.
    if (direction === VIRTIO_GPIO_DIRECTION_NONE) {
      chip.setDirection(gpio, VIRTIO_GPIO_DIRECTION_IN, { value: line.value });
    }
    chip.setEdgeDetection(gpio, edgesFor(type));
    line.irqType = type;
    line.latched = false;
    if (isLevelIrq(type)) this.#fireIfAsserted(gpio);
  }

  /** Disables a line's interrupt: latch dropped, a held buffer returned INVALID (§5.17.7). */
  #disableIrq(gpio: number, log: Logger): void {
    const line = this.#lines[gpio];
    const wasEnabled = line.irqType !== VIRTIO_GPIO_IRQ_TYPE_NONE;
    line.irqType = VIRTIO_GPIO_IRQ_TYPE_NONE;
    line.latched = false;
    if (wasEnabled && this.#chip.direction(gpio) !== VIRTIO_GPIO_DIRECTION_NONE) {
      this.#chip.setEdgeDetection(gpio, "none");
    }
    const armed = line.armed;
    line.armed = null;
    if (armed) {
      log.debug(`line ${gpio}: interrupt disabled, its eventq buffer returned invalid`);
      this.#complete(armed, VIRTIO_GPIO_IRQ_STATUS_INVALID);
    }
  }

  #serveEvents(): void {
    const context = this.#context;
    const queue = context?.queue(EVENTQ);
    if (!context || !queue) return;
    if (queue !== this.#eventq) this.#eventqStarted(queue, context.log);
    let served = 0;
    do {
      queue.disableNotification();
      for (let chain = queue.next(); chain !== null; chain = queue.next()) {
        // Buffers are held or returned by #unmask, not by this loop.
        this.#unmask(chain, queue, context.log);
        // A guest that keeps the ring full gets its turn, then the other fds theirs.
        if (++served >= BUDGET && queue.hasAvailable()) {
          queue.notify();
          this.#eventsPass.schedule(context.loop);
          return;
        }
      }
    } while (queue.enableNotification());
    queue.notify();
  }

  /**
   * The eventq runs on a new queue. A live rebuild by the core (new memory
   * table, features) keeps everything: held chains are parsed again when
   * used. After a stop, the ring resuming where it stood (a VM pause) gets
   * the held buffers back, and they fire if due; a ring set up afresh means
   * the driver reset the device: the lines are reset too, and the held
   * buffers, which the new driver never gave, are forgotten.
   */
  #eventqStarted(queue: SplitQueue, log: Logger): void {
    this.#eventq = queue;
    const stopped = this.#stopped;
    this.#stopped = null;
    if (!stopped) return;
    if (
      queue.size !== stopped.size || queue.nextAvail !== stopped.nextAvail ||
      queue.nextUsed !== stopped.nextUsed
    ) {
      log.info(
        `eventq set up afresh: the driver reset the device; lines released, ` +
          `${stopped.heads.size} held buffer(s) forgotten`,
      );
      this.#resetLines();
      return;
    }
    for (const [gpio, head] of stopped.heads) {
      const chain = queue.chainAt(head);
      if (!chain) continue;
      const line = this.#lines[gpio];
      if (line.irqType === VIRTIO_GPIO_IRQ_TYPE_NONE) {
        this.#complete({ chain, queue }, VIRTIO_GPIO_IRQ_STATUS_INVALID, { notify: false });
        continue;
      }
      line.armed = { chain, queue };
      if (line.latched) {
        line.latched = false;
        this.#fire(gpio, { notify: false });
      } else if (isLevelIrq(line.irqType)) this.#fireIfAsserted(gpio, { notify: false });
    }
    if (stopped.heads.size > 0) {
      log.info(`eventq resumed: ${stopped.heads.size} held buffer(s) kept`);
    }
  }

  /** An eventq buffer arrived: the driver unmasks one line's interrupt (§5.17.7). */
  #unmask(chain: DescriptorChain, queue: SplitQueue, log: Logger): void {
    if (chain.writableLength < IRQ_RESPONSE_SIZE) {
      this.#reject(log, `eventq chain at head ${chain.head} has no room for a status`);
      queue.addUsed(chain.head, 0);
      return;
    }
    const request = chain.readableLength === IRQ_REQUEST_SIZE
      ? parseIrqRequest(readSlices(chain.readable, { length: IRQ_REQUEST_SIZE }), {
        ngpio: this.#chip.numLines,
      })
      : { error: `eventq request of ${chain.readableLength} bytes, expected ${IRQ_REQUEST_SIZE}` };
    const armed = { chain, queue };
    if ("error" in request) {
      this.#reject(log, request.error);
      this.#complete(armed, VIRTIO_GPIO_IRQ_STATUS_INVALID, { notify: false });
      return;
    }
    const { gpio } = request;
    const line = this.#lines[gpio];
    if (!this.#irq || line.irqType === VIRTIO_GPIO_IRQ_TYPE_NONE) {
      // §5.17.6.6: unmasked without being enabled: returned at once.
      log.debug(`line ${gpio}: eventq buffer for a disabled interrupt returned invalid`);
      this.#complete(armed, VIRTIO_GPIO_IRQ_STATUS_INVALID, { notify: false });
      return;
    }
    if (line.armed) {
      this.#reject(log, `line ${gpio}: a second eventq buffer while one is held (§5.17.7)`);
      this.#complete(armed, VIRTIO_GPIO_IRQ_STATUS_INVALID, { notify: false });
      return;
    }
    line.armed = armed;
    if (line.latched) {
      line.latched = false;
      this.#fire(gpio, { notify: false });
    } else if (isLevelIrq(line.irqType)) {
      this.#fireIfAsserted(gpio, { notify: false });
    }
  }

  /** An edge from the chip (called from the event loop). */
  #onEdge(event: EdgeEvent): void {
    const line = this.#lines[event.line];
    if (!line || line.irqType === VIRTIO_GPIO_IRQ_TYPE_NONE) return;
    if (isLevelIrq(line.irqType)) {
      this.#fireIfAsserted(event.line);
      return;
    }
    const wanted = line.irqType === VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH ||
      line.irqType ===
        (event.rising ? VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING : VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING);
    if (!wanted) return;
    if (line.armed) this.#fire(event.line);
    else line.latched = true;
  }

  /** A level interrupt fires if the line is unmasked and at its active level now. */
  #fireIfAsserted(gpio: number, options: { notify?: boolean } = {}): void {
    const line = this.#lines[gpio];
    if (!line.armed) return;
    const active: Level = line.irqType === VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH ? 1 : 0;
    let value: Level;
    try {
      value = this.#chip.value(gpio);
    } catch (error) {
      this.#context?.log.error(
        `line ${gpio}: reading its level failed: ${error instanceof Error ? error.message : error}`,
      );
      return;
    }
    if (value === active) this.#fire(gpio, options);
  }

  /** Delivers a line's interrupt: its buffer back with VALID, which masks it (§5.17.7). */
  #fire(gpio: number, options: { notify?: boolean } = {}): void {
    const line = this.#lines[gpio];
    const armed = line.armed;
    if (!armed) return;
    line.armed = null;
    if (this.#complete(armed, VIRTIO_GPIO_IRQ_STATUS_VALID, options)) {
      this.#context?.log.trace(`line ${gpio}: interrupt delivered`);
      return;
    }
    // The ring is disabled right now: keep the buffer, and an edge for later.
    line.armed = armed;
    if (!isLevelIrq(line.irqType)) line.latched = true;
  }

  /**
   * Returns an eventq buffer with `status` (§5.17.7: exactly one byte).
   * False if the eventq is not running (disabled, or set up afresh).
   */
  #complete(armed: Armed, status: number, options: { notify?: boolean } = {}): boolean {
    const target = this.#current(armed);
    if (!target) return false;
    writeSlices(target.chain.writable, Uint8Array.of(status));
    target.queue.addUsed(target.chain.head, IRQ_RESPONSE_SIZE);
    if (options.notify ?? true) target.queue.notify();
    return true;
  }

  /**
   * The held buffer on the eventq as it runs now. The core rebuilds a live
   * ring over a new memory table or feature set without stopping it: the
   * same ring and descriptors, new views, so the chain is parsed again.
   */
  #current(armed: Armed): Armed | null {
    const queue = this.#context?.queue(EVENTQ);
    if (!queue) return null;
    // A rebuilt ring is the ring now: where it stands is what a stop records.
    if (this.#stopped === null) this.#eventq = queue;
    if (queue === armed.queue) return armed;
    if (queue.size !== armed.queue.size) return null;
    const chain = queue.chainAt(armed.chain.head);
    return chain && { chain, queue };
  }

  #reject(log: Logger, reason: string): void {
    this.#rejected++;
    const message = `refused: ${reason}`;
    if (this.#rejected <= LOUD_REJECTIONS) log.warn(message);
    else log.debug(message);
  }
}

/** A request for a log line. */
function describe(request: GpioRequest): string {
  const name = MESSAGE_NAMES[request.type];
  switch (request.type) {
    case VIRTIO_GPIO_MSG_GET_LINE_NAMES:
      return name;
    case VIRTIO_GPIO_MSG_GET_DIRECTION:
    case VIRTIO_GPIO_MSG_GET_VALUE:
      return `${name} line ${request.gpio}`;
    case VIRTIO_GPIO_MSG_SET_DIRECTION:
      return `${name} line ${request.gpio} = ${request.direction}`;
    case VIRTIO_GPIO_MSG_SET_VALUE:
      return `${name} line ${request.gpio} = ${request.value}`;
    case VIRTIO_GPIO_MSG_SET_IRQ_TYPE:
      return `${name} line ${request.gpio} = ${request.irqType}`;
  }
}

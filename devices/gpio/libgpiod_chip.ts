/**
 * A real GPIO chip of the host (`-l N`: `/dev/gpiochipN`) through libgpiod
 * v2. A line the guest sets to input or output is requested (consumer
 * `vhost-device-gpio`) and released when it goes back to NONE. Edge events
 * are read when the request's fd is readable: the fd sits in the daemon's
 * epoll set, so no thread waits on it and nothing polls (upstream runs a
 * thread per line that wakes every second).
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import {
  GPIOD_LINE_EDGE_BOTH,
  GPIOD_LINE_EDGE_FALLING,
  GPIOD_LINE_EDGE_NONE,
  GPIOD_LINE_EDGE_RISING,
  GpiodChip,
  type GpiodLineRequest,
  type GpiodLineSettings,
} from "../../ffi/gpiod.ts";
import type { EdgeDetection, EdgeListener, GpioChip } from "./chip.ts";
import {
  type Direction,
  type Level,
  VIRTIO_GPIO_DIRECTION_IN,
  VIRTIO_GPIO_DIRECTION_NONE,
  VIRTIO_GPIO_DIRECTION_OUT,
} from "./protocol.ts";

/** The consumer name the kernel shows for lines the daemon holds (`gpioinfo`). */
export const CONSUMER = "vhost-device-gpio";

const EDGES: Record<EdgeDetection, number> = {
  none: GPIOD_LINE_EDGE_NONE,
  rising: GPIOD_LINE_EDGE_RISING,
  falling: GPIOD_LINE_EDGE_FALLING,
  both: GPIOD_LINE_EDGE_BOTH,
};

interface Held {
  readonly request: GpiodLineRequest;
  settings: GpiodLineSettings;
}

/** Opens `/dev/gpiochipN` for the daemon; see {@link LibgpiodChip}. */
export function openLibgpiodChip(path: string, options: { loop: EventLoop }): LibgpiodChip {
  return new LibgpiodChip(GpiodChip.open(path), options);
}

/** A host chip served through libgpiod. */
export class LibgpiodChip implements GpioChip {
  readonly label: string;
  readonly numLines: number;
  readonly #chip: GpiodChip;
  readonly #loop: EventLoop;
  readonly #held = new Map<number, Held>();
  #listener: EdgeListener | null = null;

  /** Serves `chip`, watching its requests' fds on `loop`. */
  constructor(chip: GpiodChip, options: { loop: EventLoop }) {
    this.#chip = chip;
    this.#loop = options.loop;
    this.label = chip.path;
    this.numLines = chip.numLines;
  }

  lineNames(): string[] {
    return Array.from({ length: this.numLines }, (_, line) => this.#chip.lineInfo(line).name);
  }

  direction(line: number): Direction {
    const held = this.#held.get(line);
    if (held) {
      return held.settings.direction === "output"
        ? VIRTIO_GPIO_DIRECTION_OUT
        : VIRTIO_GPIO_DIRECTION_IN;
    }
    // A line the guest has not taken: what the kernel says it is.
    const info = this.#chip.lineInfo(line);
    return info.direction === "output" ? VIRTIO_GPIO_DIRECTION_OUT : VIRTIO_GPIO_DIRECTION_IN;
  }

  setDirection(line: number, direction: Direction, options: { value: Level }): void {
    if (direction === VIRTIO_GPIO_DIRECTION_NONE) {
      this.#release(line);
      return;
    }
    const settings: GpiodLineSettings = {
      direction: direction === VIRTIO_GPIO_DIRECTION_OUT ? "output" : "input",
      outputValue: options.value,
      edge: GPIOD_LINE_EDGE_NONE,
    };
    const held = this.#held.get(line);
    if (held) {
      held.request.reconfigure(settings);
      held.settings = settings;
      return;
    }
    const request = this.#chip.requestLine(line, { consumer: CONSUMER, settings });
    this.#held.set(line, { request, settings });
    this.#loop.watch(request.fd, () => this.#readEvents(line));
  }

  value(line: number): Level {
    return this.#requested(line).request.value();
  }

  setValue(line: number, value: Level): void {
    const held = this.#requested(line);
    held.request.setValue(value);
    held.settings = { ...held.settings, outputValue: value };
  }

  setEdgeDetection(line: number, edges: EdgeDetection): void {
    if (!this.#held.has(line)) {
      if (edges === "none") return;
      // Edges are reported for inputs: a line not yet taken is taken as one.
      this.setDirection(line, VIRTIO_GPIO_DIRECTION_IN, { value: 0 });
    }
    const held = this.#requested(line);
    if (held.settings.direction === "output") {
      if (edges === "none") return;
      throw new Error(`${this.label} line ${line} is an output; edges are detected on inputs`);
    }
    const settings = { ...held.settings, edge: EDGES[edges] };
    held.request.reconfigure(settings);
    held.settings = settings;
  }

  setEdgeListener(listener: EdgeListener | null): void {
    this.#listener = listener;
  }

  releaseAll(): void {
    for (const line of [...this.#held.keys()]) this.#release(line);
  }

  close(): void {
    this.releaseAll();
    this.#listener = null;
    this.#chip.close();
  }

  #requested(line: number): Held {
    const held = this.#held.get(line);
    if (!held) {
      throw new Error(`${this.label} line ${line} is not requested (set its direction first)`);
    }
    return held;
  }

  #release(line: number): void {
    const held = this.#held.get(line);
    if (!held) return;
    this.#held.delete(line);
    this.#loop.unwatch(held.request.fd);
    held.request.release();
  }

  #readEvents(line: number): void {
    const held = this.#held.get(line);
    if (!held) return;
    for (const event of held.request.readEdgeEvents()) {
      this.#listener?.({ line: event.offset, rising: event.rising });
    }
  }
}

/**
 * A GPIO chip that exists only in software (`-l sN`): N named lines with a
 * direction, a driven value and an outside level. The outside level is what
 * the world drives an input to: a test or a developer sets it through the
 * control socket (`control.ts`), and the chip reports the edges that follow.
 *
 * @module
 */

import type { EdgeDetection, EdgeListener, GpioChip } from "./chip.ts";
import {
  type Direction,
  type Level,
  VIRTIO_GPIO_DIRECTION_NONE,
  VIRTIO_GPIO_DIRECTION_OUT,
} from "./protocol.ts";

/** Largest simulated chip (the spec's `ngpio` is a le16). */
export const MAX_SIM_LINES = 0xffff;

interface SimLine {
  readonly name: string;
  direction: Direction;
  /** What the device drives when the line is an output. */
  driven: Level;
  /** What the outside world drives: the input level. */
  outside: Level;
  edges: EdgeDetection;
}

/** What the control interface reports of a line. */
export interface SimLineState {
  /** The line's name. */
  readonly name: string;
  /** The device's direction for it. */
  readonly direction: Direction;
  /** The line's level: driven if an output, else the outside level. */
  readonly value: Level;
  /** The outside level (what {@link SimulatedChip.drive} set). */
  readonly outside: Level;
  /** The edges reported to the device. */
  readonly edges: EdgeDetection;
}

/** A simulated chip: lines `line0 … lineN-1`, inputs pulled low until driven. */
export class SimulatedChip implements GpioChip {
  readonly label: string;
  readonly numLines: number;
  readonly #lines: SimLine[];
  #listener: EdgeListener | null = null;
  /** Called after the device changes a line (direction or driven value), for watchers. */
  onChange: ((line: number) => void) | null = null;

  /** A chip of `numLines` lines (1 … {@link MAX_SIM_LINES}). */
  constructor(numLines: number, options: { label: string }) {
    if (!Number.isInteger(numLines) || numLines < 1 || numLines > MAX_SIM_LINES) {
      throw new RangeError(`a simulated chip has 1 to ${MAX_SIM_LINES} lines, not ${numLines}`);
    }
    this.label = options.label;
    this.numLines = numLines;
    this.#lines = Array.from({ length: numLines }, (_, i) => ({
      name: `line${i}`,
      direction: VIRTIO_GPIO_DIRECTION_NONE,
      driven: 0,
      outside: 0,
      edges: "none",
    }));
  }

  lineNames(): string[] {
    return this.#lines.map((line) => line.name);
  }

  direction(line: number): Direction {
    return this.#line(line).direction;
  }

  setDirection(line: number, direction: Direction, options: { value: Level }): void {
    const state = this.#line(line);
    const before = this.#level(state);
    state.direction = direction;
    if (direction === VIRTIO_GPIO_DIRECTION_OUT) {
      state.driven = options.value;
      state.edges = "none";
    }
    if (direction === VIRTIO_GPIO_DIRECTION_NONE) state.edges = "none";
    if (this.#level(state) !== before || direction !== VIRTIO_GPIO_DIRECTION_NONE) {
      this.onChange?.(line);
    }
  }

  value(line: number): Level {
    return this.#level(this.#line(line));
  }

  setValue(line: number, value: Level): void {
    const state = this.#line(line);
    if (state.direction !== VIRTIO_GPIO_DIRECTION_OUT) {
      throw new Error(`${this.label}: line ${line} is not an output`);
    }
    state.driven = value;
    this.onChange?.(line);
  }

  setEdgeDetection(line: number, edges: EdgeDetection): void {
    const state = this.#line(line);
    if (edges !== "none" && state.direction === VIRTIO_GPIO_DIRECTION_OUT) {
      throw new Error(`${this.label}: line ${line} is an output; edges are detected on inputs`);
    }
    state.edges = edges;
  }

  setEdgeListener(listener: EdgeListener | null): void {
    this.#listener = listener;
  }

  releaseAll(): void {
    for (const state of this.#lines) {
      state.direction = VIRTIO_GPIO_DIRECTION_NONE;
      state.edges = "none";
    }
  }

  close(): void {
    this.#listener = null;
    this.onChange = null;
  }

  /**
   * The outside world drives `line` to `level` (a pull-up or pull-down of a
   * real pin). An input line changes with it, and the edge is reported if
   * detected; an output keeps its driven value.
   */
  drive(line: number, level: Level): void {
    const state = this.#line(line);
    const before = this.#level(state);
    state.outside = level;
    const after = this.#level(state);
    if (after === before) return;
    const rising = after === 1;
    if (state.edges === "both" || state.edges === (rising ? "rising" : "falling")) {
      this.#listener?.({ line, rising });
    }
  }

  /** The line as the control interface shows it. */
  state(line: number): SimLineState {
    const state = this.#line(line);
    return {
      name: state.name,
      direction: state.direction,
      value: this.#level(state),
      outside: state.outside,
      edges: state.edges,
    };
  }

  #level(state: SimLine): Level {
    return state.direction === VIRTIO_GPIO_DIRECTION_OUT ? state.driven : state.outside;
  }

  #line(line: number): SimLine {
    const state = this.#lines[line];
    if (state === undefined) {
      throw new RangeError(`${this.label}: no line ${line} (it has ${this.numLines})`);
    }
    return state;
  }
}

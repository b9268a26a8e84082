/**
 * The host side of the GPIO device: one small interface, implemented by a
 * real chip through libgpiod v2 (`libgpiod_chip.ts`) and by a simulated chip
 * (`sim_chip.ts`). The virtio device sees only this.
 *
 * @module
 */

import type { Direction, Level } from "./protocol.ts";

/** Which edges of an input line the chip reports. */
export type EdgeDetection = "none" | "rising" | "falling" | "both";

/** One edge the chip saw on a line. */
export interface EdgeEvent {
  /** The line's offset on the chip. */
  readonly line: number;
  /** `true` for a rising edge, `false` for a falling one. */
  readonly rising: boolean;
}

/** Called with the edges a chip saw, from the daemon's event loop. */
export type EdgeListener = (event: EdgeEvent) => void;

/**
 * A GPIO chip of the host. Lines are numbered `0 … numLines - 1`. Methods
 * throw an `Error` saying what failed; the device answers the guest's request
 * with an error status and logs it.
 */
export interface GpioChip {
  /** What the chip is, for log lines (`/dev/gpiochip0`, `simulated chip 0`). */
  readonly label: string;
  /** Number of lines. */
  readonly numLines: number;
  /** Each line's name, `""` if it has none. */
  lineNames(): string[];
  /** The line's current direction (NONE when the device does not hold it). */
  direction(line: number): Direction;
  /**
   * Takes the line as an input or an output driving `value`, or releases it
   * (NONE). Releasing also ends edge detection.
   */
  setDirection(line: number, direction: Direction, options: { value: Level }): void;
  /** The level the line has now (sensed for an input, driven for an output). */
  value(line: number): Level;
  /** Drives an output line. */
  setValue(line: number, value: Level): void;
  /** Which edges of an input line to report to the listener. */
  setEdgeDetection(line: number, edges: EdgeDetection): void;
  /** Where edges go (one listener; a new one replaces the old, `null` removes it). */
  setEdgeListener(listener: EdgeListener | null): void;
  /** Releases every line (the connection ended): they go back to NONE. */
  releaseAll(): void;
  /** Frees the chip and its fds. */
  close(): void;
}

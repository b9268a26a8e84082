/**
 * What an SCMI protocol implementation offers the platform dispatcher
 * ({@link ./platform.ts}): its id, the messages it implements with their
 * parameter sizes, and a handler that sees only decoded parameters.
 *
 * @module
 */

import type { ScmiStatusCode } from "./message.ts";

/** The outcome of one command: a status, return values, and why it failed (for the log). */
export interface ProtocolReply {
  /** The return status. */
  readonly status: ScmiStatusCode;
  /** Return values after the status (empty unless SUCCESS). */
  readonly values?: Uint8Array;
  /** For a failure the guest caused: what was wrong, logged by the dispatcher. */
  readonly reason?: string;
}

/** A value now, or later when it waits for host I/O. */
export type Eventually<T> = T | Promise<T>;

/** Applies `f` to `value` now, or when it settles. */
export function andThen<T, U>(value: Eventually<T>, f: (value: T) => U): Eventually<U> {
  return value instanceof Promise ? value.then(f) : f(value);
}

/** One SCMI protocol. */
export interface ScmiProtocol {
  /** Protocol id (header bits [17:10]). */
  readonly protocolId: number;
  /**
   * Implemented message ids and the number of 32-bit parameters each takes
   * (what Linux sends; any other payload length is INVALID_PARAMETERS).
   */
  readonly messages: ReadonlyMap<number, number>;
  /**
   * Handles message `messageId` with its decoded `parameters`; `room` is the
   * number of bytes the response may hold after the status, so paged
   * replies return only what fits. A reply that waits for host I/O is a
   * promise (it never rejects).
   */
  handle(
    messageId: number,
    parameters: readonly number[],
    room: number,
  ): Eventually<ProtocolReply>;
}

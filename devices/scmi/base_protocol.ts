/**
 * The SCMI base protocol (DEN0056 §4.2, protocol 0x10, version 2.0): what
 * Linux's SCMI core asks at probe (drivers/firmware/arm_scmi/base.c:
 * messages 0, 1, 3, 4, 5, 6 and 7 for each agent it was told of) and logs as
 * `SCMI Protocol v2.0 'vendor:sub-vendor' Firmware version 0x…`.
 *
 * @module
 */

import {
  MessageWriter,
  PROTOCOL_ATTRIBUTES,
  PROTOCOL_MESSAGE_ATTRIBUTES,
  PROTOCOL_VERSION,
  SCMI_PROTOCOL_BASE,
  ScmiStatus,
} from "./message.ts";
import type { ProtocolReply, ScmiProtocol } from "./protocol.ts";

/** DEN0056 §4.2, BASE_DISCOVER_VENDOR. */
export const BASE_DISCOVER_VENDOR = 0x3;
/** DEN0056 §4.2, BASE_DISCOVER_SUB_VENDOR. */
export const BASE_DISCOVER_SUB_VENDOR = 0x4;
/** DEN0056 §4.2, BASE_DISCOVER_IMPLEMENTATION_VERSION. */
export const BASE_DISCOVER_IMPLEMENTATION_VERSION = 0x5;
/** DEN0056 §4.2, BASE_DISCOVER_LIST_PROTOCOLS. */
export const BASE_DISCOVER_LIST_PROTOCOLS = 0x6;
/** DEN0056 §4.2, BASE_DISCOVER_AGENT. */
export const BASE_DISCOVER_AGENT = 0x7;

/** Base protocol version 2.0, as upstream (major in bits [31:16]). */
export const BASE_VERSION = 0x20000;
/** Vendor string, as upstream. */
export const VENDOR = "rust-vmm";
/** Sub-vendor string: this implementation. */
export const SUB_VENDOR = "deno";
/** Agent id of the platform itself (DEN0056 §4.2, BASE_DISCOVER_AGENT). */
export const PLATFORM_AGENT_ID = 0;
/** Agent id of the guest: the one agent besides the platform. */
export const OSPM_AGENT_ID = 1;
/** DISCOVER_AGENT's id for "the agent that asks" (DEN0056 §4.2, BASE_DISCOVER_AGENT). */
export const CALLING_AGENT = 0xffffffff;

/** Options of {@link BaseProtocol}. */
export interface BaseProtocolOptions {
  /** The other protocols implemented (ids, not counting the base protocol). */
  readonly protocols: readonly number[];
  /** DISCOVER_IMPLEMENTATION_VERSION's value. */
  readonly implementationVersion: number;
}

/** The base protocol. */
export class BaseProtocol implements ScmiProtocol {
  readonly protocolId: number = SCMI_PROTOCOL_BASE;
  readonly messages: ReadonlyMap<number, number> = new Map([
    [PROTOCOL_VERSION, 0],
    [PROTOCOL_ATTRIBUTES, 0],
    [PROTOCOL_MESSAGE_ATTRIBUTES, 1],
    [BASE_DISCOVER_VENDOR, 0],
    [BASE_DISCOVER_SUB_VENDOR, 0],
    [BASE_DISCOVER_IMPLEMENTATION_VERSION, 0],
    [BASE_DISCOVER_LIST_PROTOCOLS, 1],
    [BASE_DISCOVER_AGENT, 1],
  ]);
  readonly #protocols: readonly number[];
  readonly #implementationVersion: number;

  /** The base protocol of a platform implementing `options.protocols`. */
  constructor(options: BaseProtocolOptions) {
    this.#protocols = [...options.protocols].sort((a, b) => a - b);
    this.#implementationVersion = options.implementationVersion;
  }

  handle(messageId: number, parameters: readonly number[], room: number): ProtocolReply {
    const ok = (writer: MessageWriter): ProtocolReply => ({
      status: ScmiStatus.SUCCESS,
      values: writer.finish(),
    });
    switch (messageId) {
      case PROTOCOL_VERSION:
        return ok(new MessageWriter().u32(BASE_VERSION));
      case PROTOCOL_ATTRIBUTES:
        // PROTOCOL_ATTRIBUTES (§4.2): bits [15:8] number of agents, [7:0] number of protocols (base excluded).
        return ok(new MessageWriter().u32((1 << 8) | this.#protocols.length));
      case PROTOCOL_MESSAGE_ATTRIBUTES:
        return this.messages.has(parameters[0])
          ? ok(new MessageWriter().u32(0))
          : { status: ScmiStatus.NOT_FOUND };
      case BASE_DISCOVER_VENDOR:
        return ok(new MessageWriter().name(VENDOR));
      case BASE_DISCOVER_SUB_VENDOR:
        return ok(new MessageWriter().name(SUB_VENDOR));
      case BASE_DISCOVER_IMPLEMENTATION_VERSION:
        return ok(new MessageWriter().u32(this.#implementationVersion));
      case BASE_DISCOVER_LIST_PROTOCOLS:
        return this.#listProtocols(parameters[0], room);
      case BASE_DISCOVER_AGENT:
        return this.#discoverAgent(parameters[0]);
      default:
        return { status: ScmiStatus.NOT_SUPPORTED };
    }
  }

  /**
   * BASE_DISCOVER_LIST_PROTOCOLS: protocols after the first `skip`, one byte each, the array
   * padded to whole words (Linux checks that size).
   */
  #listProtocols(skip: number, room: number): ProtocolReply {
    if (skip > this.#protocols.length) {
      return {
        status: ScmiStatus.INVALID_PARAMETERS,
        reason: `DISCOVER_LIST_PROTOCOLS skips ${skip} of ${this.#protocols.length} protocols`,
      };
    }
    const fit = Math.max(0, Math.floor((room - 4) / 4) * 4);
    const list = this.#protocols.slice(skip, skip + fit);
    const writer = new MessageWriter().u32(list.length);
    const bytes = new Uint8Array(Math.ceil(list.length / 4) * 4);
    bytes.set(list);
    return { status: ScmiStatus.SUCCESS, values: writer.bytes(bytes).finish() };
  }

  /** BASE_DISCOVER_AGENT: the platform (0) and the guest (1, or "the caller"). */
  #discoverAgent(id: number): ProtocolReply {
    const writer = new MessageWriter();
    if (id === PLATFORM_AGENT_ID) writer.u32(PLATFORM_AGENT_ID).name("platform");
    else if (id === OSPM_AGENT_ID || id === CALLING_AGENT) writer.u32(OSPM_AGENT_ID).name("OSPM");
    else return { status: ScmiStatus.NOT_FOUND };
    return { status: ScmiStatus.SUCCESS, values: writer.finish() };
  }
}

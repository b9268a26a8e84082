/**
 * The SCMI platform as the guest's agent sees it: decodes each command at
 * the edge, routes it to its protocol, and encodes the response (DEN0056
 * §4.1). Unknown protocols and messages, and anything but a command, are
 * NOT_SUPPORTED; a payload of the wrong length is INVALID_PARAMETERS; every
 * failure the guest caused is logged. Nothing here touches a virtqueue.
 *
 * @module
 */

import type { Logger } from "../../core/log.ts";
import {
  decodeRequest,
  encodeResponse,
  HEADER_SIZE,
  MessageType,
  ScmiStatus,
  type ScmiStatusCode,
} from "./message.ts";
import { andThen, type Eventually, type ScmiProtocol } from "./protocol.ts";

/** Rejections logged at warn level before the rest go to debug. */
const LOUD_REJECTIONS = 20;

/** Routes commands to protocols. */
export class ScmiPlatform {
  readonly #protocols: ReadonlyMap<number, ScmiProtocol>;
  readonly #log: Logger;
  #rejections = 0;

  /** A platform implementing `protocols`. */
  constructor(protocols: readonly ScmiProtocol[], options: { log: Logger }) {
    this.#protocols = new Map(protocols.map((p) => [p.protocolId, p]));
    this.#log = options.log;
  }

  /**
   * Answers one command. `room` is the size of the guest's response buffer;
   * returns the response bytes, or `null` when there is nothing to answer
   * (no header) or not even a status fits; a promise of them when the
   * answer waits for host I/O (it never rejects).
   */
  handle(bytes: Uint8Array, room: number): Eventually<Uint8Array | null> {
    const request = decodeRequest(bytes);
    if (request === null) {
      this.#reject(`a ${bytes.length}-byte request has no header`);
      return null;
    }
    const { header, headerWord } = request;
    const where = `protocol 0x${header.protocolId.toString(16)} message 0x${
      header.messageId.toString(16)
    }`;
    const answer = (status: ScmiStatusCode, values?: Uint8Array): Uint8Array | null => {
      const response = encodeResponse(headerWord, { status, values: values ?? new Uint8Array() });
      if (response.length <= room) return response;
      if (room < HEADER_SIZE + 4) {
        this.#reject(`${where}: a ${room}-byte response buffer cannot hold a status`);
        return null;
      }
      // §4.1: the reply cannot be delivered whole.
      this.#reject(`${where}: ${response.length}-byte response, ${room}-byte buffer`);
      return encodeResponse(headerWord, {
        status: ScmiStatus.COMMS_ERROR,
        values: new Uint8Array(),
      });
    };
    if (header.messageType !== MessageType.COMMAND) {
      this.#reject(`${where}: message type ${header.messageType} on the command queue`);
      return answer(ScmiStatus.NOT_SUPPORTED);
    }
    const protocol = this.#protocols.get(header.protocolId);
    const words = protocol?.messages.get(header.messageId);
    if (!protocol || words === undefined) {
      this.#log.debug(`${where}: not supported`);
      return answer(ScmiStatus.NOT_SUPPORTED);
    }
    if (request.payloadLength !== words * 4) {
      this.#reject(`${where}: ${request.payloadLength} parameter bytes, expected ${words * 4}`);
      return answer(ScmiStatus.INVALID_PARAMETERS);
    }
    const reply = protocol.handle(
      header.messageId,
      request.parameters,
      Math.max(0, room - HEADER_SIZE - 4),
    );
    return andThen(reply, ({ status, values, reason }) => {
      if (reason) this.#reject(`${where}: ${reason}`);
      return answer(status, status === ScmiStatus.SUCCESS ? values : undefined);
    });
  }

  #reject(message: string): void {
    this.#rejections++;
    if (this.#rejections <= LOUD_REJECTIONS) this.#log.warn(message);
    else this.#log.debug(message);
  }
}

/**
 * RIFF/WAVE files as the `file` back-end reads and writes them: integer PCM
 * in the four sample formats the device carries (8-bit unsigned, 16- and
 * 32-bit signed, and 24 bits in a 32-bit container, which needs
 * WAVE_FORMAT_EXTENSIBLE to say so).
 *
 * @module
 */

import { SAMPLE_FORMATS, type SampleFormat } from "./pcm.ts";

/** WAVE_FORMAT_PCM. */
export const WAVE_FORMAT_PCM = 1;
/** WAVE_FORMAT_EXTENSIBLE. */
export const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
/** Bytes of the header {@link encodeWavHeader} writes. */
export const WAV_HEADER_SIZE = 68;

/** A WAV file's audio format. */
export interface WavFormat {
  /** Channels per frame. */
  readonly channels: number;
  /** Frames per second. */
  readonly rate: number;
  /** The sample format. */
  readonly format: SampleFormat;
}

/**
 * A header for `dataBytes` of audio: WAVE_FORMAT_EXTENSIBLE (its fmt chunk
 * carries the valid bits, which S24 needs), then a `data` chunk. Always
 * {@link WAV_HEADER_SIZE} bytes, so it can be rewritten in place as the file
 * grows.
 */
export function encodeWavHeader(format: WavFormat, dataBytes: number): Uint8Array {
  const out = new Uint8Array(WAV_HEADER_SIZE);
  const view = new DataView(out.buffer);
  const ascii = (at: number, text: string): void => {
    for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  };
  const blockAlign = format.channels * format.format.bytes;
  const data = Math.min(dataBytes, 0xffff_ffff - (WAV_HEADER_SIZE - 8));
  ascii(0, "RIFF");
  view.setUint32(4, WAV_HEADER_SIZE - 8 + data, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 40, true);
  view.setUint16(20, WAVE_FORMAT_EXTENSIBLE, true);
  view.setUint16(22, format.channels, true);
  view.setUint32(24, format.rate, true);
  view.setUint32(28, format.rate * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, format.format.bytes * 8, true);
  view.setUint16(36, 22, true);
  view.setUint16(38, format.format.bits, true);
  view.setUint32(40, 0, true); // channel mask: unspecified
  // KSDATAFORMAT_SUBTYPE_PCM: 00000001-0000-0010-8000-00aa00389b71
  out.set([1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71], 44);
  ascii(60, "data");
  view.setUint32(64, data, true);
  return out;
}

/** Where a WAV file's audio is. */
export interface WavLayout extends WavFormat {
  /** Byte offset of the first frame. */
  readonly dataOffset: number;
  /** Bytes of audio (clamped to the file). */
  readonly dataBytes: number;
}

/** A WAV file this device cannot use. */
export class WavError extends Error {
  /** Describes the problem. */
  constructor(message: string) {
    super(message);
    this.name = "WavError";
  }
}

/**
 * Parses the chunks at the start of a WAV file. `head` holds the file's
 * first bytes (enough for its chunks before `data`); `fileSize` clamps the
 * data length. Throws {@link WavError} naming what is unsupported.
 */
export function parseWav(head: Uint8Array, fileSize: number): WavLayout {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const tag = (at: number): string => String.fromCharCode(...head.subarray(at, at + 4));
  if (head.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new WavError("not a RIFF/WAVE file");
  }
  let at = 12;
  let format: WavFormat | null = null;
  while (at + 8 <= head.length) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      if (size < 16 || body + size > head.length) throw new WavError("truncated fmt chunk");
      format = parseFmt(new DataView(head.buffer, head.byteOffset + body, size));
    } else if (id === "data") {
      if (!format) throw new WavError("data chunk before fmt chunk");
      const dataBytes = Math.max(0, Math.min(size, fileSize - body));
      return { ...format, dataOffset: body, dataBytes };
    }
    at = body + size + (size & 1);
  }
  throw new WavError("no data chunk in the file's first bytes");
}

function parseFmt(view: DataView): WavFormat {
  let code = view.getUint16(0, true);
  const channels = view.getUint16(2, true);
  const rate = view.getUint32(4, true);
  const container = view.getUint16(14, true);
  let bits = container;
  if (code === WAVE_FORMAT_EXTENSIBLE && view.byteLength >= 40) {
    bits = view.getUint16(18, true) || container;
    code = view.getUint16(24, true);
  }
  if (code !== WAVE_FORMAT_PCM) {
    throw new WavError(`format tag 0x${code.toString(16)} is not integer PCM`);
  }
  const format = SAMPLE_FORMATS.find((f) => f.bytes * 8 === container && f.bits === bits);
  if (!format) {
    throw new WavError(
      `${bits}-bit samples in ${container}-bit containers are not supported (U8, S16, S24 in 32, S32 are)`,
    );
  }
  if (channels === 0 || rate === 0) throw new WavError("zero channels or rate");
  return { channels, rate, format };
}

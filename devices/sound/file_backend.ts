/**
 * `--backend file`: playback is recorded into a WAV file (`--output`), and
 * capture plays a WAV file (`--input`), both at the stream's real rate (a
 * timer paces them, as a sound card's clock would).
 *
 * - Output: the file is created (truncated) at start-up; its format is the
 *   first prepared stream's. Later streams in that format, from this guest
 *   or the next one to connect, append to it; a stream in another format
 *   starts the file over in that format (logged). Only the guest's frames
 *   are written: no silence is inserted when the guest underruns, so the
 *   file holds exactly what the guest played. The header is brought up to
 *   date at every stop and release, and at least once a second.
 * - Input: the capture stream offers exactly the file's format, rate and
 *   channel count (a guest that wants another lets its ALSA `plug` convert).
 *   Each time the guest sets the stream's parameters (opens the device),
 *   capture starts again at the beginning of the file; after its end the
 *   guest records silence.
 *
 * @module
 */

import type { AudioBackend, HostEnvironment, HostStream, StreamPort } from "./backend.ts";
import { ClockedStream } from "./clocked_stream.ts";
import {
  DEFAULT_CAPABILITIES,
  PCM_RATES_OFFERED,
  type PcmParams,
  rateIndexOf,
  type StreamCapabilities,
} from "./pcm.ts";
import {
  encodeWavHeader,
  parseWav,
  WAV_HEADER_SIZE,
  type WavFormat,
  type WavLayout,
} from "./wav.ts";

/** Options of {@link FileBackend.open}. */
export interface FileBackendOptions {
  /** WAV file to record playback into; none: playback is discarded. */
  readonly output?: string;
  /** WAV file to capture from; none: capture is silence. */
  readonly input?: string;
}

/** How often, at least, the output header is rewritten while playing. */
const HEADER_INTERVAL_MS = 1000;

/** The WAV output: one file shared by every playback stream of every connection. */
class WavWriter {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  #format: WavFormat | null = null;
  #dataBytes = 0;
  #headerWritten = 0;

  constructor(path: string) {
    this.#path = path;
    this.#file = Deno.openSync(path, { write: true, create: true, truncate: true });
  }

  begin(params: PcmParams, log: HostEnvironment["log"]): void {
    const format = { channels: params.channels, rate: params.rate, format: params.format };
    const same = this.#format !== null && this.#format.channels === format.channels &&
      this.#format.rate === format.rate && this.#format.format === format.format;
    if (same) return;
    if (this.#format !== null) {
      log.warn(
        `${this.#path}: the guest now plays ${describe(format)}, not ${
          describe(this.#format)
        }: the file starts over in the new format`,
      );
    }
    this.#file.truncateSync(0);
    this.#format = format;
    this.#dataBytes = 0;
    this.flush();
  }

  write(bytes: Uint8Array): void {
    this.#file.seekSync(WAV_HEADER_SIZE + this.#dataBytes, Deno.SeekMode.Start);
    let written = 0;
    while (written < bytes.length) written += this.#file.writeSync(bytes.subarray(written));
    this.#dataBytes += bytes.length;
    if (performance.now() - this.#headerWritten >= HEADER_INTERVAL_MS) this.flush();
  }

  /** Rewrites the header for the bytes written so far. */
  flush(): void {
    if (!this.#format) return;
    const header = encodeWavHeader(this.#format, this.#dataBytes);
    this.#file.seekSync(0, Deno.SeekMode.Start);
    let written = 0;
    while (written < header.length) written += this.#file.writeSync(header.subarray(written));
    this.#headerWritten = performance.now();
  }

  close(): void {
    this.flush();
    this.#file.close();
  }
}

/** The WAV input. */
class WavReader {
  readonly #file: Deno.FsFile;
  readonly layout: WavLayout;
  #position = 0;

  constructor(path: string) {
    this.#file = Deno.openSync(path, { read: true });
    try {
      const size = this.#file.statSync().size;
      const head = new Uint8Array(Math.min(size, 64 * 1024));
      let got = 0;
      while (got < head.length) {
        const n = this.#file.readSync(head.subarray(got));
        if (n === null) break;
        got += n;
      }
      this.layout = parseWav(head.subarray(0, got), size);
    } catch (error) {
      this.#file.close();
      throw error;
    }
  }

  rewind(): void {
    this.#position = 0;
  }

  /** Fills `into` with the next frames, then silence after the end. */
  read(into: Uint8Array): void {
    const left = Math.max(0, this.layout.dataBytes - this.#position);
    const take = Math.min(left, into.length);
    let got = 0;
    if (take > 0) {
      this.#file.seekSync(this.layout.dataOffset + this.#position, Deno.SeekMode.Start);
      while (got < take) {
        const n = this.#file.readSync(into.subarray(got, take));
        if (n === null) break;
        got += n;
      }
      this.#position += got;
    }
    // U8 silence is the midpoint; the signed formats' is zero.
    into.fill(this.layout.format.unsigned ? 0x80 : 0, got);
  }

  close(): void {
    this.#file.close();
  }
}

function describe(format: WavFormat): string {
  return `${format.format.name} ${format.rate} Hz ${format.channels} ch`;
}

/** The file back-end. */
export class FileBackend implements AudioBackend {
  readonly name = "file";
  readonly #writer: WavWriter | null;
  readonly #reader: WavReader | null;

  private constructor(writer: WavWriter | null, reader: WavReader | null) {
    this.#writer = writer;
    this.#reader = reader;
  }

  /**
   * Opens the files: the input is parsed now, so an unusable file fails the
   * start with a message naming it. Throws on errors.
   */
  static open(options: FileBackendOptions): FileBackend {
    let reader: WavReader | null = null;
    if (options.input !== undefined) {
      try {
        reader = new WavReader(options.input);
      } catch (error) {
        throw new Error(
          `--input ${options.input}: ${error instanceof Error ? error.message : error}`,
        );
      }
      const { rate, channels } = reader.layout;
      const index = PCM_RATES_OFFERED.indexOf(rate);
      if (index < 0 || channels < 1 || channels > DEFAULT_CAPABILITIES.channelsMax) {
        reader.close();
        throw new Error(
          `--input ${options.input}: ${rate} Hz, ${channels} channels: the device offers ` +
            `${
              PCM_RATES_OFFERED.join(", ")
            } Hz and 1..${DEFAULT_CAPABILITIES.channelsMax} channels`,
        );
      }
    }
    let writer: WavWriter | null = null;
    if (options.output !== undefined) {
      try {
        writer = new WavWriter(options.output);
      } catch (error) {
        reader?.close();
        throw new Error(
          `--output ${options.output}: ${error instanceof Error ? error.message : error}`,
        );
      }
    }
    return new FileBackend(writer, reader);
  }

  capabilities(direction: "output" | "input"): StreamCapabilities {
    const reader = this.#reader;
    if (direction === "output" || !reader) return DEFAULT_CAPABILITIES;
    const { format, rate, channels } = reader.layout;
    return {
      formats: [format.code],
      rateIndices: [rateIndexOf(rate)],
      channelsMin: channels,
      channelsMax: channels,
    };
  }

  openStream(port: StreamPort, environment: HostEnvironment): HostStream {
    const writer = this.#writer;
    const reader = this.#reader;
    if (port.direction === "output") {
      return new ClockedStream(port, environment, {
        prepare: (params) => writer?.begin(params, environment.log),
        consume: (bytes) => writer?.write(bytes),
        release: () => writer?.flush(),
      });
    }
    return new ClockedStream(port, environment, {
      prepare: (_params, options) => {
        if (options.newParams) reader?.rewind();
      },
      produce: reader ? (into) => reader.read(into) : undefined,
    });
  }

  close(): void {
    this.#writer?.close();
    this.#reader?.close();
  }
}

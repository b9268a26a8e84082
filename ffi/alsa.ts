/**
 * alsa-lib (`libasound.so.2`) PCM bindings: non-blocking PCMs whose poll
 * descriptors the caller waits on in its own epoll set. The library is
 * loaded on first use, so a daemon that never plays through ALSA never
 * needs it. Errors carry the function name and `snd_strerror`'s text.
 *
 * @module
 */

/** The symbol table: one entry per alsa-lib function, its C prototype above it. */
export const ALSA_SYMBOLS = {
  // int snd_pcm_open(snd_pcm_t **pcm, const char *name, snd_pcm_stream_t stream, int mode);
  snd_pcm_open: { parameters: ["buffer", "buffer", "i32", "i32"], result: "i32" },
  // int snd_pcm_close(snd_pcm_t *pcm);
  snd_pcm_close: { parameters: ["pointer"], result: "i32" },
  // int snd_pcm_set_params(snd_pcm_t *pcm, snd_pcm_format_t format, snd_pcm_access_t access,
  //   unsigned int channels, unsigned int rate, int soft_resample, unsigned int latency);
  snd_pcm_set_params: {
    parameters: ["pointer", "i32", "i32", "u32", "u32", "i32", "u32"],
    result: "i32",
  },
  // int snd_pcm_prepare(snd_pcm_t *pcm);
  snd_pcm_prepare: { parameters: ["pointer"], result: "i32" },
  // int snd_pcm_start(snd_pcm_t *pcm);
  snd_pcm_start: { parameters: ["pointer"], result: "i32" },
  // int snd_pcm_drain(snd_pcm_t *pcm);
  snd_pcm_drain: { parameters: ["pointer"], result: "i32" },
  // int snd_pcm_drop(snd_pcm_t *pcm);
  snd_pcm_drop: { parameters: ["pointer"], result: "i32" },
  // int snd_pcm_recover(snd_pcm_t *pcm, int err, int silent);
  snd_pcm_recover: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  // snd_pcm_state_t snd_pcm_state(snd_pcm_t *pcm);
  snd_pcm_state: { parameters: ["pointer"], result: "i32" },
  // snd_pcm_sframes_t snd_pcm_writei(snd_pcm_t *pcm, const void *buffer, snd_pcm_uframes_t size);
  snd_pcm_writei: { parameters: ["pointer", "buffer", "u64"], result: "i64" },
  // snd_pcm_sframes_t snd_pcm_readi(snd_pcm_t *pcm, void *buffer, snd_pcm_uframes_t size);
  snd_pcm_readi: { parameters: ["pointer", "buffer", "u64"], result: "i64" },
  // snd_pcm_sframes_t snd_pcm_avail_update(snd_pcm_t *pcm);
  snd_pcm_avail_update: { parameters: ["pointer"], result: "i64" },
  // int snd_pcm_delay(snd_pcm_t *pcm, snd_pcm_sframes_t *delayp);
  snd_pcm_delay: { parameters: ["pointer", "buffer"], result: "i32" },
  // int snd_pcm_poll_descriptors_count(snd_pcm_t *pcm);
  snd_pcm_poll_descriptors_count: { parameters: ["pointer"], result: "i32" },
  // int snd_pcm_poll_descriptors(snd_pcm_t *pcm, struct pollfd *pfds, unsigned int space);
  snd_pcm_poll_descriptors: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // int snd_pcm_poll_descriptors_revents(snd_pcm_t *pcm, struct pollfd *pfds,
  //   unsigned int nfds, unsigned short *revents);
  snd_pcm_poll_descriptors_revents: {
    parameters: ["pointer", "buffer", "u32", "buffer"],
    result: "i32",
  },
  // const char *snd_strerror(int errnum);
  snd_strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type AlsaSymbols = Deno.DynamicLibrary<typeof ALSA_SYMBOLS>["symbols"];

let library: AlsaSymbols | null = null;

/** Loads libasound.so.2 once. Throws naming the library if it is missing. */
function alsa(): AlsaSymbols {
  if (library) return library;
  try {
    library = Deno.dlopen("libasound.so.2", ALSA_SYMBOLS).symbols;
  } catch (error) {
    throw new Error(
      `cannot load libasound.so.2 (install libasound2): ${
        error instanceof Error ? error.message : error
      }`,
    );
  }
  return library;
}

/** `SND_PCM_STREAM_*`. */
export const SND_PCM_STREAM_PLAYBACK = 0;
/** `SND_PCM_STREAM_*`. */
export const SND_PCM_STREAM_CAPTURE = 1;
/** `SND_PCM_NONBLOCK`. */
export const SND_PCM_NONBLOCK = 1;
/** `SND_PCM_ACCESS_RW_INTERLEAVED`. */
export const SND_PCM_ACCESS_RW_INTERLEAVED = 3;
/** `SND_PCM_FORMAT_U8`. */
export const SND_PCM_FORMAT_U8 = 1;
/** `SND_PCM_FORMAT_S16_LE`. */
export const SND_PCM_FORMAT_S16_LE = 2;
/** `SND_PCM_FORMAT_S24_LE` (24 bits in 32). */
export const SND_PCM_FORMAT_S24_LE = 6;
/** `SND_PCM_FORMAT_S32_LE`. */
export const SND_PCM_FORMAT_S32_LE = 10;
/** `SND_PCM_STATE_PREPARED`. */
export const SND_PCM_STATE_PREPARED = 2;
/** `SND_PCM_STATE_RUNNING`. */
export const SND_PCM_STATE_RUNNING = 3;
/** `SND_PCM_STATE_XRUN`. */
export const SND_PCM_STATE_XRUN = 4;

/** The negated errno alsa-lib returns when a non-blocking call would block. */
export const EAGAIN = 11;

/** poll(2) events. */
export const POLLIN = 0x1;
/** poll(2) events. */
export const POLLOUT = 0x4;
/** poll(2) events. */
export const POLLERR = 0x8;

/** An alsa-lib call failed. */
export class AlsaError extends Error {
  /** The function, e.g. `snd_pcm_open`. */
  readonly call: string;
  /** The negative error code it returned. */
  readonly code: number;

  /** Builds the error for `call` returning `code`. */
  constructor(call: string, code: number, options: { detail?: string } = {}) {
    const text = Deno.UnsafePointerView.getCString(alsa().snd_strerror(code)!);
    super(`${call}${options.detail ? ` (${options.detail})` : ""}: ${text}`);
    this.name = "AlsaError";
    this.call = call;
    this.code = code;
  }
}

function check(result: number, call: string, detail?: string): number {
  if (result < 0) throw new AlsaError(call, result, { detail });
  return result;
}

/** Configuration of {@link AlsaPcm.open}. */
export interface AlsaPcmOptions {
  /** `SND_PCM_STREAM_PLAYBACK` or `SND_PCM_STREAM_CAPTURE`. */
  readonly stream: number;
  /** `SND_PCM_FORMAT_*`. */
  readonly format: number;
  /** Channels. */
  readonly channels: number;
  /** Frames per second. */
  readonly rate: number;
  /** Wanted latency (the host buffer), microseconds. */
  readonly latencyMicros: number;
}

/** One open non-blocking PCM. */
export class AlsaPcm {
  /** The PCM name it was opened with. */
  readonly name: string;
  readonly #pcm: Deno.PointerValue;
  readonly #pollfds: Uint8Array<ArrayBuffer>;
  readonly #revents = new Uint16Array(1);
  readonly #delay = new BigInt64Array(1);
  #closed = false;

  private constructor(name: string, pcm: Deno.PointerValue, pollfds: Uint8Array<ArrayBuffer>) {
    this.name = name;
    this.#pcm = pcm;
    this.#pollfds = pollfds;
  }

  /** Opens `name` non-blocking and sets its parameters (interleaved access, no resampling). */
  static open(name: string, options: AlsaPcmOptions): AlsaPcm {
    const lib = alsa();
    const handle = new BigUint64Array(1);
    const cname = new TextEncoder().encode(name + "\0");
    check(
      lib.snd_pcm_open(new Uint8Array(handle.buffer), cname, options.stream, SND_PCM_NONBLOCK),
      "snd_pcm_open",
      name,
    );
    const pcm = Deno.UnsafePointer.create(handle[0]);
    try {
      check(
        lib.snd_pcm_set_params(
          pcm,
          options.format,
          SND_PCM_ACCESS_RW_INTERLEAVED,
          options.channels,
          options.rate,
          0,
          options.latencyMicros,
        ),
        "snd_pcm_set_params",
        name,
      );
      const count = check(
        lib.snd_pcm_poll_descriptors_count(pcm),
        "snd_pcm_poll_descriptors_count",
      );
      const pollfds = new Uint8Array(8 * count);
      check(lib.snd_pcm_poll_descriptors(pcm, pollfds, count), "snd_pcm_poll_descriptors");
      return new AlsaPcm(name, pcm, pollfds);
    } catch (error) {
      lib.snd_pcm_close(pcm);
      throw error;
    }
  }

  /** The fds to wait on and the events for each (`struct pollfd`). */
  pollDescriptors(): { fd: number; events: number }[] {
    const view = new DataView(this.#pollfds.buffer);
    const out = [];
    for (let at = 0; at < this.#pollfds.length; at += 8) {
      out.push({ fd: view.getInt32(at, true), events: view.getInt16(at + 4, true) });
    }
    return out;
  }

  /**
   * The PCM's own readiness (POLLIN/POLLOUT/POLLERR) given what epoll
   * reported for `fd` (`snd_pcm_poll_descriptors_revents` demangles plugins').
   */
  revents(fd: number, events: number): number {
    const view = new DataView(this.#pollfds.buffer);
    for (let at = 0; at < this.#pollfds.length; at += 8) {
      view.setInt16(at + 6, view.getInt32(at, true) === fd ? events : 0, true);
    }
    check(
      alsa().snd_pcm_poll_descriptors_revents(
        this.#pcm,
        this.#pollfds,
        this.#pollfds.length / 8,
        new Uint8Array(this.#revents.buffer),
      ),
      "snd_pcm_poll_descriptors_revents",
    );
    return this.#revents[0];
  }

  /** `snd_pcm_prepare`. */
  prepare(): void {
    check(alsa().snd_pcm_prepare(this.#pcm), "snd_pcm_prepare", this.name);
  }

  /** `snd_pcm_start` (capture; playback starts on its first write). */
  start(): void {
    check(alsa().snd_pcm_start(this.#pcm), "snd_pcm_start", this.name);
  }

  /**
   * `snd_pcm_drain` without waiting (the PCM is non-blocking): playback goes
   * on until what is buffered has played, then stops.
   */
  drain(): void {
    const result = alsa().snd_pcm_drain(this.#pcm);
    if (result < 0 && result !== -EAGAIN) throw new AlsaError("snd_pcm_drain", result);
  }

  /** `snd_pcm_drop`: stops at once, discarding what is buffered. */
  drop(): void {
    check(alsa().snd_pcm_drop(this.#pcm), "snd_pcm_drop", this.name);
  }

  /** `snd_pcm_state`. */
  state(): number {
    return alsa().snd_pcm_state(this.#pcm);
  }

  /** Frames that can be written (playback) or read (capture) now, or a negative error. */
  avail(): number {
    return Number(alsa().snd_pcm_avail_update(this.#pcm));
  }

  /** Frames queued ahead of the next one written (0 when unknown). */
  delayFrames(): number {
    const result = alsa().snd_pcm_delay(this.#pcm, new Uint8Array(this.#delay.buffer));
    return result < 0 ? 0 : Math.max(0, Number(this.#delay[0]));
  }

  /** Writes up to `frames` frames from `buffer`; returns frames written or a negative error. */
  write(buffer: Uint8Array, frames: number): number {
    return Number(alsa().snd_pcm_writei(this.#pcm, buffer, BigInt(frames)));
  }

  /** Reads up to `frames` frames into `buffer`; returns frames read or a negative error. */
  read(buffer: Uint8Array, frames: number): number {
    return Number(alsa().snd_pcm_readi(this.#pcm, buffer, BigInt(frames)));
  }

  /** `snd_pcm_recover` after an xrun (-EPIPE) or suspend (-ESTRPIPE); throws if it cannot. */
  recover(code: number): void {
    check(alsa().snd_pcm_recover(this.#pcm, code, 1), "snd_pcm_recover", this.name);
  }

  /** Closes the PCM. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    alsa().snd_pcm_close(this.#pcm);
  }
}

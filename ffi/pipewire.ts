/**
 * libpipewire-0.3 bindings: a PipeWire loop driven from the caller's own
 * epoll set and thread, and audio streams on it.
 *
 * In 0.3, `pw_loop_get_fd`, `pw_loop_enter` and `pw_loop_iterate` are macros
 * over the loop's `spa_loop_control` interface, so they are reached through
 * its method table: `struct pw_loop { system, loop, control, utils }`,
 * `control` is a `struct spa_interface { type, version, cb { funcs, data } }`
 * and `funcs` a `struct spa_loop_control_methods { version, get_fd,
 * add_hook, enter, leave, iterate, … }`. Streams are made without
 * `PW_STREAM_FLAG_RT_PROCESS`, so their `process` callback runs inside
 * `iterate` on the caller's thread, never on PipeWire's data thread.
 *
 * @module
 */

/** The symbol table: one entry per libpipewire function, its C prototype above it. */
export const PIPEWIRE_SYMBOLS = {
  // void pw_init(int *argc, char **argv[]);
  pw_init: { parameters: ["pointer", "pointer"], result: "void" },
  // struct pw_loop *pw_loop_new(const struct spa_dict *props);
  pw_loop_new: { parameters: ["pointer"], result: "pointer" },
  // void pw_loop_destroy(struct pw_loop *loop);
  pw_loop_destroy: { parameters: ["pointer"], result: "void" },
  // struct pw_properties *pw_properties_new_string(const char *args);
  pw_properties_new_string: { parameters: ["buffer"], result: "pointer" },
  // struct pw_stream *pw_stream_new_simple(struct pw_loop *loop, const char *name,
  //   struct pw_properties *props, const struct pw_stream_events *events, void *data);
  pw_stream_new_simple: {
    parameters: ["pointer", "buffer", "pointer", "buffer", "pointer"],
    result: "pointer",
  },
  // int pw_stream_connect(struct pw_stream *stream, enum pw_direction direction,
  //   uint32_t target_id, enum pw_stream_flags flags, const struct spa_pod **params,
  //   uint32_t n_params);
  pw_stream_connect: {
    parameters: ["pointer", "i32", "u32", "i32", "buffer", "u32"],
    result: "i32",
  },
  // int pw_stream_set_active(struct pw_stream *stream, bool active);
  pw_stream_set_active: { parameters: ["pointer", "bool"], result: "i32" },
  // int pw_stream_disconnect(struct pw_stream *stream);
  pw_stream_disconnect: { parameters: ["pointer"], result: "i32" },
  // void pw_stream_destroy(struct pw_stream *stream);
  pw_stream_destroy: { parameters: ["pointer"], result: "void" },
  // struct pw_buffer *pw_stream_dequeue_buffer(struct pw_stream *stream);
  pw_stream_dequeue_buffer: { parameters: ["pointer"], result: "pointer" },
  // int pw_stream_queue_buffer(struct pw_stream *stream, struct pw_buffer *buffer);
  pw_stream_queue_buffer: { parameters: ["pointer", "pointer"], result: "i32" },
  // int pw_stream_get_time_n(struct pw_stream *stream, struct pw_time *time, size_t size);
  pw_stream_get_time_n: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type PipeWireSymbols = Deno.DynamicLibrary<typeof PIPEWIRE_SYMBOLS>["symbols"];

let library: PipeWireSymbols | null = null;

/** Loads libpipewire-0.3.so.0 once and initialises it. Throws naming the library if missing. */
function pipewire(): PipeWireSymbols {
  if (library) return library;
  try {
    library = Deno.dlopen("libpipewire-0.3.so.0", PIPEWIRE_SYMBOLS).symbols;
  } catch (error) {
    throw new Error(
      `cannot load libpipewire-0.3.so.0 (install libpipewire-0.3-0): ${
        error instanceof Error ? error.message : error
      }`,
    );
  }
  // As pw-cat does: the context loads client-rt.conf, whose module-rt gives the stream's data
  // thread (it hands the graph one buffer per cycle) real-time priority where RLIMIT_RTPRIO or
  // rtkit allow, and is skipped elsewhere. On a loaded host a normal-priority data thread missed
  // graph cycles, and PipeWire then dropped a quantum. A caller's own choice stands.
  if (Deno.env.get("PIPEWIRE_CONFIG_NAME") === undefined) {
    Deno.env.set("PIPEWIRE_CONFIG_NAME", "client-rt.conf");
  }
  library.pw_init(null, null);
  return library;
}

/** `enum pw_stream_state`. */
export const PW_STREAM_STATE_ERROR: number = -1;
/** `enum pw_stream_state`. */
export const PW_STREAM_STATE_UNCONNECTED = 0;
/** `enum pw_stream_state`. */
export const PW_STREAM_STATE_STREAMING = 3;
/** `enum pw_direction` (`SPA_DIRECTION_*`): a capture stream takes data in. */
export const PW_DIRECTION_INPUT = 0;
/** A playback stream gives data out. */
export const PW_DIRECTION_OUTPUT = 1;
/** `PW_ID_ANY`. */
export const PW_ID_ANY = 0xffff_ffff;
/** `enum pw_stream_flags`. */
export const PW_STREAM_FLAG_AUTOCONNECT = 1 << 0;
/** `enum pw_stream_flags`. */
export const PW_STREAM_FLAG_INACTIVE = 1 << 1;
/** `enum pw_stream_flags`. */
export const PW_STREAM_FLAG_MAP_BUFFERS = 1 << 2;

/** `enum spa_audio_format` values for the formats the sound device carries. */
export const SPA_AUDIO_FORMAT_U8 = 0x102;
/** `SPA_AUDIO_FORMAT_S16_LE`. */
export const SPA_AUDIO_FORMAT_S16_LE = 0x103;
/** `SPA_AUDIO_FORMAT_S24_32_LE`. */
export const SPA_AUDIO_FORMAT_S24_32_LE = 0x107;
/** `SPA_AUDIO_FORMAT_S32_LE`. */
export const SPA_AUDIO_FORMAT_S32_LE = 0x10b;

// spa/utils/type.h, spa/param/param.h, spa/param/format.h
const SPA_TYPE_Id = 3;
const SPA_TYPE_Int = 4;
const SPA_TYPE_Array = 13;
const SPA_TYPE_Object = 15;
const SPA_TYPE_OBJECT_Format = 0x40003;
const SPA_TYPE_OBJECT_ParamBuffers = 0x40004;
const SPA_PARAM_EnumFormat = 3;
const SPA_PARAM_Buffers = 5;
const SPA_PARAM_BUFFERS_buffers = 1;
const SPA_FORMAT_mediaType = 1;
const SPA_FORMAT_mediaSubtype = 2;
const SPA_FORMAT_AUDIO_format = 0x10001;
const SPA_FORMAT_AUDIO_rate = 0x10003;
const SPA_FORMAT_AUDIO_channels = 0x10004;
const SPA_FORMAT_AUDIO_position = 0x10005;
const SPA_MEDIA_TYPE_audio = 1;
const SPA_MEDIA_SUBTYPE_raw = 1;

/** The raw audio format a stream is offered in. */
export interface AudioFormat {
  /** `SPA_AUDIO_FORMAT_*`. */
  readonly format: number;
  /** Frames per second. */
  readonly rate: number;
  /** Channels. */
  readonly channels: number;
  /** `SPA_AUDIO_CHANNEL_*` per channel, or none. */
  readonly positions: readonly number[];
}

/**
 * The `EnumFormat` object pod `spa_format_audio_raw_build` makes: a
 * `struct spa_pod` header, the object body `{type, id}`, then properties
 * `{key, flags, pod}`, each pod's body padded to 8 bytes.
 */
export function audioFormatPod(format: AudioFormat): Uint8Array<ArrayBuffer> {
  const words: number[] = [SPA_TYPE_OBJECT_Format, SPA_PARAM_EnumFormat];
  const scalar = (key: number, type: number, value: number) =>
    words.push(key, 0, 4, type, value, 0);
  scalar(SPA_FORMAT_mediaType, SPA_TYPE_Id, SPA_MEDIA_TYPE_audio);
  scalar(SPA_FORMAT_mediaSubtype, SPA_TYPE_Id, SPA_MEDIA_SUBTYPE_raw);
  scalar(SPA_FORMAT_AUDIO_format, SPA_TYPE_Id, format.format);
  scalar(SPA_FORMAT_AUDIO_rate, SPA_TYPE_Int, format.rate);
  scalar(SPA_FORMAT_AUDIO_channels, SPA_TYPE_Int, format.channels);
  if (format.positions.length > 0) {
    // An array pod: its child's header, then the values.
    const size = 8 + 4 * format.positions.length;
    words.push(SPA_FORMAT_AUDIO_position, 0, size, SPA_TYPE_Array, 4, SPA_TYPE_Id);
    words.push(...format.positions);
    if (format.positions.length % 2 === 1) words.push(0);
  }
  return objectPod(words);
}

/**
 * A `Buffers` object pod asking for `count` buffers: the only property
 * given, so the peer's size, stride and block count stand (spa_pod_filter
 * keeps the properties the filter lacks).
 */
export function buffersPod(count: number): Uint8Array<ArrayBuffer> {
  const words = [SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers];
  words.push(SPA_PARAM_BUFFERS_buffers, 0, 4, SPA_TYPE_Int, count, 0);
  return objectPod(words);
}

/** An object pod: its header (body size, SPA_TYPE_Object), then `words` (type, id, properties). */
function objectPod(words: readonly number[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(8 + 4 * words.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 4 * words.length, true);
  view.setUint32(4, SPA_TYPE_Object, true);
  words.forEach((word, i) => view.setUint32(8 + 4 * i, word >>> 0, true));
  return out;
}

/** A PipeWire loop the caller iterates when {@link PipeWireLoop.fd} is readable. */
export class PipeWireLoop {
  /** The loop's fd, for the caller's epoll set. */
  readonly fd: number;
  /** The `struct pw_loop *`, for streams made on it. */
  readonly pointer: Deno.PointerValue;
  readonly #data: Deno.PointerValue;
  readonly #iterate: Deno.UnsafeFnPointer<
    { readonly parameters: readonly ["pointer", "i32"]; readonly result: "i32" }
  >;
  readonly #leave: Deno.UnsafeFnPointer<
    { readonly parameters: readonly ["pointer"]; readonly result: "void" }
  >;
  #closed = false;

  /** Creates a loop and enters it: from now on only this thread iterates it. */
  constructor() {
    const lib = pipewire();
    const loop = lib.pw_loop_new(null);
    if (loop === null) throw new Error("pw_loop_new failed");
    this.pointer = loop;
    const control = new Deno.UnsafePointerView(loop).getPointer(16);
    if (control === null) throw new Error("pw_loop has no control interface");
    const iface = new Deno.UnsafePointerView(control);
    const funcs = iface.getPointer(16);
    this.#data = iface.getPointer(24);
    if (funcs === null) throw new Error("spa_loop_control has no methods");
    const methods = new Deno.UnsafePointerView(funcs);
    const method = <T extends Deno.ForeignFunction>(
      offset: number,
      definition: T,
    ): Deno.UnsafeFnPointer<T> => {
      const pointer = methods.getPointer(offset);
      if (pointer === null) throw new Error(`spa_loop_control method at ${offset} is missing`);
      return new Deno.UnsafeFnPointer(pointer as Deno.PointerObject<T>, definition);
    };
    // int get_fd(void *object); void enter(void *object); void leave(void *object);
    // int iterate(void *object, int timeout);
    const getFd = method(8, { parameters: ["pointer"], result: "i32" } as const);
    const enter = method(24, { parameters: ["pointer"], result: "void" } as const);
    this.#leave = method(32, { parameters: ["pointer"], result: "void" } as const);
    this.#iterate = method(40, { parameters: ["pointer", "i32"], result: "i32" } as const);
    this.fd = getFd.call(this.#data);
    enter.call(this.#data);
  }

  /** Dispatches whatever is ready without waiting (`pw_loop_iterate(loop, 0)`). */
  iterate(): number {
    return this.#iterate.call(this.#data, 0);
  }

  /** Leaves and destroys the loop. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#leave.call(this.#data);
    pipewire().pw_loop_destroy(this.pointer);
  }
}

/** Callbacks of a {@link PipeWireStream}, run inside {@link PipeWireLoop.iterate}. */
export interface StreamCallbacks {
  /** A buffer can be dequeued. */
  process(): void;
  /** The stream's state changed (`PW_STREAM_STATE_*`), with PipeWire's error text. */
  stateChanged(state: number, error: string | null): void;
}

/** Options of {@link PipeWireStream.connect}. */
export interface StreamOptions {
  /** `PW_DIRECTION_OUTPUT` (playback) or `PW_DIRECTION_INPUT` (capture). */
  readonly direction: number;
  /** Node name and properties, `key=value` separated by spaces. */
  readonly properties: string;
  /** The format offered. */
  readonly format: AudioFormat;
  /**
   * Buffers to ask for (PipeWire's default is 2): more let a playback
   * stream queue several quanta ahead and a capture stream fall behind by
   * several quanta without losing one.
   */
  readonly buffers?: number;
}

/** A stream's timing (`struct pw_time`), read with `pw_stream_get_time_n`. */
export interface StreamTime {
  /** Seconds from the stream's next sample to the device; excludes what is queued. */
  readonly delaySeconds: number;
  /** The sum of the `size` of the buffers queued and not yet taken by the graph. */
  readonly queued: number;
  /** Buffers queued and not yet taken by the graph. */
  readonly queuedBuffers: number;
  /** Buffers ready to dequeue. */
  readonly availableBuffers: number;
}

/** A mapped buffer dequeued from a stream. */
export interface StreamBuffer {
  /** The `struct pw_buffer *`. */
  readonly pointer: Deno.PointerObject;
  /** The first data plane's memory (all of `maxsize`). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Its `struct spa_chunk *`. */
  readonly chunk: Deno.PointerObject;
  /** Frames the consumer asked for (0: unknown). */
  readonly requested: number;
}

/** One audio stream on a loop. */
export class PipeWireStream {
  readonly #stream: Deno.PointerObject;
  readonly #events: Uint8Array<ArrayBuffer>;
  readonly #callbacks: { close(): void }[];
  #destroyed = false;

  private constructor(
    stream: Deno.PointerObject,
    events: Uint8Array<ArrayBuffer>,
    callbacks: { close(): void }[],
  ) {
    this.#stream = stream;
    this.#events = events;
    this.#callbacks = callbacks;
  }

  /** Creates a stream (its own context and core connection) and connects it, inactive. */
  static connect(
    loop: PipeWireLoop,
    options: StreamOptions,
    callbacks: StreamCallbacks,
  ): PipeWireStream {
    const lib = pipewire();
    const process = new Deno.UnsafeCallback(
      { parameters: ["pointer"], result: "void" } as const,
      () => callbacks.process(),
    );
    const stateChanged = new Deno.UnsafeCallback(
      { parameters: ["pointer", "i32", "i32", "pointer"], result: "void" } as const,
      (_data, _old, state, error) =>
        callbacks.stateChanged(
          state,
          error === null ? null : Deno.UnsafePointerView.getCString(error),
        ),
    );
    // struct pw_stream_events, version 2: state_changed at 16, process at 64.
    const events = new Uint8Array(96);
    const view = new DataView(events.buffer);
    view.setUint32(0, 2, true);
    view.setBigUint64(16, BigInt(Deno.UnsafePointer.value(stateChanged.pointer)), true);
    view.setBigUint64(64, BigInt(Deno.UnsafePointer.value(process.pointer)), true);
    const release = () => {
      process.close();
      stateChanged.close();
    };
    const properties = lib.pw_properties_new_string(
      new TextEncoder().encode(options.properties + "\0"),
    );
    const stream = lib.pw_stream_new_simple(
      loop.pointer,
      new TextEncoder().encode("vhost-device-sound\0"),
      properties,
      events,
      null,
    );
    if (stream === null) {
      release();
      throw new Error("pw_stream_new_simple failed: is PipeWire running for this user?");
    }
    const pods = [audioFormatPod(options.format)];
    if (options.buffers !== undefined) pods.push(buffersPod(options.buffers));
    const params = new BigUint64Array(
      pods.map((pod) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(pod)))),
    );
    const result = lib.pw_stream_connect(
      stream,
      options.direction,
      PW_ID_ANY,
      PW_STREAM_FLAG_AUTOCONNECT | PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_INACTIVE,
      new Uint8Array(params.buffer),
      pods.length,
    );
    if (result < 0) {
      lib.pw_stream_destroy(stream);
      release();
      throw new Error(`pw_stream_connect failed: error ${-result}`);
    }
    return new PipeWireStream(stream, events, [process, stateChanged]);
  }

  /** Starts or pauses the flow (`pw_stream_set_active`). */
  setActive(active: boolean): void {
    pipewire().pw_stream_set_active(this.#stream, active);
  }

  /** The next free (playback) or filled (capture) buffer, or null. */
  dequeue(): StreamBuffer | null {
    const buffer = pipewire().pw_stream_dequeue_buffer(this.#stream);
    if (buffer === null) return null;
    const pwBuffer = new Deno.UnsafePointerView(buffer);
    const spaBuffer = pwBuffer.getPointer(0);
    const requested = Number(pwBuffer.getBigUint64(24));
    const datas = spaBuffer === null ? null : new Deno.UnsafePointerView(spaBuffer).getPointer(16);
    if (datas === null) return null;
    const data = new Deno.UnsafePointerView(datas);
    const memory = data.getPointer(24);
    const chunk = data.getPointer(32);
    const maxsize = data.getUint32(20);
    if (memory === null || chunk === null) return null;
    return {
      pointer: buffer,
      bytes: new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(memory, maxsize)),
      chunk,
      requested,
    };
  }

  /** The valid bytes of a capture buffer (its chunk's offset and size, clamped). */
  static filled(buffer: StreamBuffer): Uint8Array {
    const chunk = new Deno.UnsafePointerView(buffer.chunk);
    const offset = Math.min(chunk.getUint32(0), buffer.bytes.length);
    const size = Math.min(chunk.getUint32(4), buffer.bytes.length - offset);
    return buffer.bytes.subarray(offset, offset + size);
  }

  /**
   * Returns a buffer; for playback, `size` bytes of `stride`-byte frames
   * were written (their frame count becomes `pw_buffer.size`, summed in
   * {@link StreamTime.queued}).
   */
  queue(buffer: StreamBuffer, fill?: { size: number; stride: number }): void {
    if (fill) {
      // struct pw_buffer { spa_buffer *buffer; void *user_data; u64 size; u64 requested; }
      new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(buffer.pointer, 24))[2] = BigInt(
        Math.floor(fill.size / fill.stride),
      );
      // struct spa_chunk { u32 offset; u32 size; i32 stride; i32 flags; }
      const chunk = new Uint32Array(
        Deno.UnsafePointerView.getArrayBuffer(buffer.chunk, 16),
      );
      chunk[0] = 0;
      chunk[1] = fill.size;
      chunk[2] = fill.stride;
      chunk[3] = 0;
    }
    pipewire().pw_stream_queue_buffer(this.#stream, buffer.pointer);
  }

  /** The stream's timing as of the last graph cycle. */
  time(): StreamTime {
    // struct pw_time { i64 now; spa_fraction rate; u64 ticks; i64 delay; u64 queued;
    //   u64 buffered; u32 queued_buffers; u32 avail_buffers; }
    const time = new Uint8Array(56);
    const result = pipewire().pw_stream_get_time_n(this.#stream, time, 56n);
    if (result < 0) throw new Error(`pw_stream_get_time_n failed: error ${-result}`);
    const view = new DataView(time.buffer);
    const num = view.getUint32(8, true);
    const denom = view.getUint32(12, true);
    const delay = Number(view.getBigInt64(24, true));
    return {
      delaySeconds: denom === 0 ? 0 : delay * num / denom,
      queued: Number(view.getBigUint64(32, true)),
      queuedBuffers: view.getUint32(48, true),
      availableBuffers: view.getUint32(52, true),
    };
  }

  /** Disconnects and destroys the stream (and its connection). Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const lib = pipewire();
    lib.pw_stream_disconnect(this.#stream);
    lib.pw_stream_destroy(this.#stream);
    for (const callback of this.#callbacks) callback.close();
    this.#events.fill(0);
  }
}

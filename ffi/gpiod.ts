/**
 * Typed bindings to libgpiod v2 (`libgpiod.so.3`, Debian package
 * `libgpiod3`): a chip, its line info, and line requests with their values,
 * settings and edge events. The library is loaded on first use, so programs
 * that never open a chip do not need it. Nothing here knows of vhost-user or
 * virtio.
 *
 * @module
 */

import { lastErrno, SyscallError } from "./errno.ts";

/** The library's file name (SONAME of libgpiod v2). */
export const LIBGPIOD: string = "libgpiod.so.3";

/** `enum gpiod_line_value` (gpiod.h). */
export const GPIOD_LINE_VALUE_ERROR: number = -1;
/** `enum gpiod_line_value` */
export const GPIOD_LINE_VALUE_INACTIVE: number = 0;
/** `enum gpiod_line_value` */
export const GPIOD_LINE_VALUE_ACTIVE: number = 1;
/** `enum gpiod_line_direction` */
export const GPIOD_LINE_DIRECTION_AS_IS: number = 1;
/** `enum gpiod_line_direction` */
export const GPIOD_LINE_DIRECTION_INPUT: number = 2;
/** `enum gpiod_line_direction` */
export const GPIOD_LINE_DIRECTION_OUTPUT: number = 3;
/** `enum gpiod_line_edge` */
export const GPIOD_LINE_EDGE_NONE: number = 1;
/** `enum gpiod_line_edge` */
export const GPIOD_LINE_EDGE_RISING: number = 2;
/** `enum gpiod_line_edge` */
export const GPIOD_LINE_EDGE_FALLING: number = 3;
/** `enum gpiod_line_edge` */
export const GPIOD_LINE_EDGE_BOTH: number = 4;
/** `enum gpiod_edge_event_type` */
export const GPIOD_EDGE_EVENT_RISING_EDGE: number = 1;
/** `enum gpiod_edge_event_type` */
export const GPIOD_EDGE_EVENT_FALLING_EDGE: number = 2;

/** The symbol table: one entry per libgpiod function, its C prototype above it. */
export const GPIOD_SYMBOLS = {
  // const char *gpiod_api_version(void);
  gpiod_api_version: { parameters: [], result: "pointer" },
  // struct gpiod_chip *gpiod_chip_open(const char *path);
  gpiod_chip_open: { parameters: ["buffer"], result: "pointer" },
  // void gpiod_chip_close(struct gpiod_chip *chip);
  gpiod_chip_close: { parameters: ["pointer"], result: "void" },
  // struct gpiod_chip_info *gpiod_chip_get_info(struct gpiod_chip *chip);
  gpiod_chip_get_info: { parameters: ["pointer"], result: "pointer" },
  // void gpiod_chip_info_free(struct gpiod_chip_info *info);
  gpiod_chip_info_free: { parameters: ["pointer"], result: "void" },
  // const char *gpiod_chip_info_get_name(struct gpiod_chip_info *info);
  gpiod_chip_info_get_name: { parameters: ["pointer"], result: "pointer" },
  // const char *gpiod_chip_info_get_label(struct gpiod_chip_info *info);
  gpiod_chip_info_get_label: { parameters: ["pointer"], result: "pointer" },
  // size_t gpiod_chip_info_get_num_lines(struct gpiod_chip_info *info);
  gpiod_chip_info_get_num_lines: { parameters: ["pointer"], result: "usize" },
  // struct gpiod_line_info *gpiod_chip_get_line_info(struct gpiod_chip *chip, unsigned int offset);
  gpiod_chip_get_line_info: { parameters: ["pointer", "u32"], result: "pointer" },
  // void gpiod_line_info_free(struct gpiod_line_info *info);
  gpiod_line_info_free: { parameters: ["pointer"], result: "void" },
  // const char *gpiod_line_info_get_name(struct gpiod_line_info *info);
  gpiod_line_info_get_name: { parameters: ["pointer"], result: "pointer" },
  // bool gpiod_line_info_is_used(struct gpiod_line_info *info);
  gpiod_line_info_is_used: { parameters: ["pointer"], result: "bool" },
  // const char *gpiod_line_info_get_consumer(struct gpiod_line_info *info);
  gpiod_line_info_get_consumer: { parameters: ["pointer"], result: "pointer" },
  // enum gpiod_line_direction gpiod_line_info_get_direction(struct gpiod_line_info *info);
  gpiod_line_info_get_direction: { parameters: ["pointer"], result: "i32" },
  // struct gpiod_line_settings *gpiod_line_settings_new(void);
  gpiod_line_settings_new: { parameters: [], result: "pointer" },
  // void gpiod_line_settings_free(struct gpiod_line_settings *settings);
  gpiod_line_settings_free: { parameters: ["pointer"], result: "void" },
  // int gpiod_line_settings_set_direction(struct gpiod_line_settings *s, enum gpiod_line_direction d);
  gpiod_line_settings_set_direction: { parameters: ["pointer", "i32"], result: "i32" },
  // int gpiod_line_settings_set_edge_detection(struct gpiod_line_settings *s, enum gpiod_line_edge e);
  gpiod_line_settings_set_edge_detection: { parameters: ["pointer", "i32"], result: "i32" },
  // int gpiod_line_settings_set_output_value(struct gpiod_line_settings *s, enum gpiod_line_value v);
  gpiod_line_settings_set_output_value: { parameters: ["pointer", "i32"], result: "i32" },
  // struct gpiod_line_config *gpiod_line_config_new(void);
  gpiod_line_config_new: { parameters: [], result: "pointer" },
  // void gpiod_line_config_free(struct gpiod_line_config *config);
  gpiod_line_config_free: { parameters: ["pointer"], result: "void" },
  // int gpiod_line_config_add_line_settings(struct gpiod_line_config *config,
  //     const unsigned int *offsets, size_t num_offsets, struct gpiod_line_settings *settings);
  gpiod_line_config_add_line_settings: {
    parameters: ["pointer", "buffer", "usize", "pointer"],
    result: "i32",
  },
  // struct gpiod_request_config *gpiod_request_config_new(void);
  gpiod_request_config_new: { parameters: [], result: "pointer" },
  // void gpiod_request_config_free(struct gpiod_request_config *config);
  gpiod_request_config_free: { parameters: ["pointer"], result: "void" },
  // void gpiod_request_config_set_consumer(struct gpiod_request_config *config, const char *consumer);
  gpiod_request_config_set_consumer: { parameters: ["pointer", "buffer"], result: "void" },
  // struct gpiod_line_request *gpiod_chip_request_lines(struct gpiod_chip *chip,
  //     struct gpiod_request_config *req_cfg, struct gpiod_line_config *line_cfg);
  gpiod_chip_request_lines: { parameters: ["pointer", "pointer", "pointer"], result: "pointer" },
  // void gpiod_line_request_release(struct gpiod_line_request *request);
  gpiod_line_request_release: { parameters: ["pointer"], result: "void" },
  // enum gpiod_line_value gpiod_line_request_get_value(struct gpiod_line_request *r, unsigned int offset);
  gpiod_line_request_get_value: { parameters: ["pointer", "u32"], result: "i32" },
  // int gpiod_line_request_set_value(struct gpiod_line_request *r, unsigned int offset, enum gpiod_line_value v);
  gpiod_line_request_set_value: { parameters: ["pointer", "u32", "i32"], result: "i32" },
  // int gpiod_line_request_reconfigure_lines(struct gpiod_line_request *r, const struct gpiod_line_config *c);
  gpiod_line_request_reconfigure_lines: { parameters: ["pointer", "pointer"], result: "i32" },
  // int gpiod_line_request_get_fd(struct gpiod_line_request *request);
  gpiod_line_request_get_fd: { parameters: ["pointer"], result: "i32" },
  // int gpiod_line_request_read_edge_events(struct gpiod_line_request *r,
  //     struct gpiod_edge_event_buffer *buffer, size_t max_events);
  gpiod_line_request_read_edge_events: {
    parameters: ["pointer", "pointer", "usize"],
    result: "i32",
  },
  // struct gpiod_edge_event_buffer *gpiod_edge_event_buffer_new(size_t capacity);
  gpiod_edge_event_buffer_new: { parameters: ["usize"], result: "pointer" },
  // void gpiod_edge_event_buffer_free(struct gpiod_edge_event_buffer *buffer);
  gpiod_edge_event_buffer_free: { parameters: ["pointer"], result: "void" },
  // struct gpiod_edge_event *gpiod_edge_event_buffer_get_event(struct gpiod_edge_event_buffer *b,
  //     unsigned long index);
  gpiod_edge_event_buffer_get_event: { parameters: ["pointer", "u64"], result: "pointer" },
  // enum gpiod_edge_event_type gpiod_edge_event_get_event_type(struct gpiod_edge_event *event);
  gpiod_edge_event_get_event_type: { parameters: ["pointer"], result: "i32" },
  // unsigned int gpiod_edge_event_get_line_offset(struct gpiod_edge_event *event);
  gpiod_edge_event_get_line_offset: { parameters: ["pointer"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof GPIOD_SYMBOLS>["symbols"];

/** libgpiod could not be loaded: the message names the package to install. */
export class LibgpiodMissingError extends Error {
  /** Why loading failed, from the dynamic loader. */
  constructor(cause: string) {
    super(
      `${LIBGPIOD} could not be loaded (${cause}); install the package libgpiod3 ` +
        "(Debian bookworm: apt-get install -t bookworm-backports libgpiod3)",
    );
    this.name = "LibgpiodMissingError";
  }
}

let loaded: Symbols | null = null;

/** The library's symbols, loaded on first use. Throws {@link LibgpiodMissingError}. */
function gpiod(): Symbols {
  if (loaded) return loaded;
  try {
    loaded = Deno.dlopen(LIBGPIOD, GPIOD_SYMBOLS).symbols;
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new LibgpiodMissingError(message);
  }
  return loaded;
}

function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text + "\0");
}

function readCString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

/** Throws the errno libgpiod left, naming the call, when `pointer` is NULL. */
function checkPointer(
  pointer: Deno.PointerValue,
  call: string,
  detail: string,
): Deno.PointerObject {
  if (pointer === null) throw new SyscallError(call, lastErrno(), { detail });
  return pointer;
}

/** The libgpiod version string (e.g. `2.1.3`). */
export function gpiodVersion(): string {
  return readCString(gpiod().gpiod_api_version());
}

/** A line's direction as libgpiod reports it. */
export type GpiodDirection = "input" | "output";

/** What `gpiod_line_info` tells of one line. */
export interface GpiodLineInfo {
  /** The line's name, `""` if it has none. */
  readonly name: string;
  /** Whether some consumer (the kernel, another process, us) holds it. */
  readonly used: boolean;
  /** The holder's name, `""` if none. */
  readonly consumer: string;
  /** Its direction. */
  readonly direction: GpiodDirection;
}

/** How a line is requested (or reconfigured). */
export interface GpiodLineSettings {
  /** Input or output. */
  readonly direction: GpiodDirection;
  /** The level an output drives. */
  readonly outputValue: 0 | 1;
  /** Edges an input reports: `GPIOD_LINE_EDGE_*`. */
  readonly edge: number;
}

/** One edge event read from a request. */
export interface GpiodEdgeEvent {
  /** The line's offset on the chip. */
  readonly offset: number;
  /** Rising (`true`) or falling. */
  readonly rising: boolean;
}

/** An open GPIO chip (`gpiod_chip`). */
export class GpiodChip {
  /** The chip's path, e.g. `/dev/gpiochip0`. */
  readonly path: string;
  /** The kernel's name for it (`gpiochip0`). */
  readonly name: string;
  /** The chip's label (`gpio-sim.0-node0`). */
  readonly label: string;
  /** Number of lines. */
  readonly numLines: number;
  #chip: Deno.PointerObject | null;

  private constructor(path: string, chip: Deno.PointerObject) {
    this.path = path;
    this.#chip = chip;
    const lib = gpiod();
    const info = lib.gpiod_chip_get_info(chip);
    if (info === null) {
      const error = new SyscallError("gpiod_chip_get_info", lastErrno(), { detail: path });
      lib.gpiod_chip_close(chip);
      throw error;
    }
    this.name = readCString(lib.gpiod_chip_info_get_name(info));
    this.label = readCString(lib.gpiod_chip_info_get_label(info));
    this.numLines = Number(lib.gpiod_chip_info_get_num_lines(info));
    lib.gpiod_chip_info_free(info);
  }

  /** Opens the chip at `path`. Throws {@link LibgpiodMissingError} or a {@link SyscallError}. */
  static open(path: string): GpiodChip {
    const chip = checkPointer(gpiod().gpiod_chip_open(cString(path)), "gpiod_chip_open", path);
    return new GpiodChip(path, chip);
  }

  /** What the kernel says of line `offset` now. */
  lineInfo(offset: number): GpiodLineInfo {
    const lib = gpiod();
    const info = checkPointer(
      lib.gpiod_chip_get_line_info(this.#open(), offset),
      "gpiod_chip_get_line_info",
      `${this.path} line ${offset}`,
    );
    try {
      return {
        name: readCString(lib.gpiod_line_info_get_name(info)),
        used: lib.gpiod_line_info_is_used(info),
        consumer: readCString(lib.gpiod_line_info_get_consumer(info)),
        direction: lib.gpiod_line_info_get_direction(info) === GPIOD_LINE_DIRECTION_OUTPUT
          ? "output"
          : "input",
      };
    } finally {
      lib.gpiod_line_info_free(info);
    }
  }

  /** Requests line `offset` for `consumer` with `settings`. */
  requestLine(
    offset: number,
    options: { consumer: string; settings: GpiodLineSettings },
  ): GpiodLineRequest {
    const lib = gpiod();
    const detail = `${this.path} line ${offset}`;
    const config = lineConfig(offset, options.settings, detail);
    const requestConfig = checkPointer(
      lib.gpiod_request_config_new(),
      "gpiod_request_config_new",
      detail,
    );
    try {
      lib.gpiod_request_config_set_consumer(requestConfig, cString(options.consumer));
      const request = checkPointer(
        lib.gpiod_chip_request_lines(this.#open(), requestConfig, config),
        "gpiod_chip_request_lines",
        detail,
      );
      return new GpiodLineRequest(request, { offset, detail });
    } finally {
      lib.gpiod_request_config_free(requestConfig);
      lib.gpiod_line_config_free(config);
    }
  }

  /** Closes the chip (requests made from it stay valid until released). */
  close(): void {
    if (this.#chip === null) return;
    gpiod().gpiod_chip_close(this.#chip);
    this.#chip = null;
  }

  #open(): Deno.PointerObject {
    if (this.#chip === null) throw new Error(`${this.path} is closed`);
    return this.#chip;
  }
}

/** A `gpiod_line_config` holding one line's settings; the caller frees it. */
function lineConfig(
  offset: number,
  settings: GpiodLineSettings,
  detail: string,
): Deno.PointerObject {
  const lib = gpiod();
  const lineSettings = checkPointer(
    lib.gpiod_line_settings_new(),
    "gpiod_line_settings_new",
    detail,
  );
  try {
    const output = settings.direction === "output";
    if (
      lib.gpiod_line_settings_set_direction(
        lineSettings,
        output ? GPIOD_LINE_DIRECTION_OUTPUT : GPIOD_LINE_DIRECTION_INPUT,
      ) < 0
    ) throw new SyscallError("gpiod_line_settings_set_direction", lastErrno(), { detail });
    if (output) {
      if (lib.gpiod_line_settings_set_output_value(lineSettings, settings.outputValue) < 0) {
        throw new SyscallError("gpiod_line_settings_set_output_value", lastErrno(), { detail });
      }
    } else if (lib.gpiod_line_settings_set_edge_detection(lineSettings, settings.edge) < 0) {
      throw new SyscallError("gpiod_line_settings_set_edge_detection", lastErrno(), { detail });
    }
    const config = checkPointer(lib.gpiod_line_config_new(), "gpiod_line_config_new", detail);
    const offsets = new Uint32Array([offset]);
    const added = lib.gpiod_line_config_add_line_settings(
      config,
      new Uint8Array(offsets.buffer),
      1n,
      lineSettings,
    );
    if (added < 0) {
      const error = new SyscallError("gpiod_line_config_add_line_settings", lastErrno(), {
        detail,
      });
      lib.gpiod_line_config_free(config);
      throw error;
    }
    return config;
  } finally {
    lib.gpiod_line_settings_free(lineSettings);
  }
}

/** Edge events read per call. */
const EVENT_BUFFER_CAPACITY = 64;

/** A requested line (`gpiod_line_request`): its value, settings and edge events. */
export class GpiodLineRequest {
  /** The line's offset. */
  readonly offset: number;
  /** The request's fd: readable when edge events wait (watch it in an event loop). */
  readonly fd: number;
  readonly #detail: string;
  #request: Deno.PointerObject | null;
  #events: Deno.PointerObject | null = null;

  /** Wraps a request made by {@link GpiodChip.requestLine}. */
  constructor(request: Deno.PointerObject, options: { offset: number; detail: string }) {
    this.#request = request;
    this.offset = options.offset;
    this.#detail = options.detail;
    this.fd = gpiod().gpiod_line_request_get_fd(request);
  }

  /** The line's level now. */
  value(): 0 | 1 {
    const value = gpiod().gpiod_line_request_get_value(this.#open(), this.offset);
    if (value === GPIOD_LINE_VALUE_ERROR) {
      throw new SyscallError("gpiod_line_request_get_value", lastErrno(), { detail: this.#detail });
    }
    return value === GPIOD_LINE_VALUE_ACTIVE ? 1 : 0;
  }

  /** Drives an output line. */
  setValue(value: 0 | 1): void {
    if (gpiod().gpiod_line_request_set_value(this.#open(), this.offset, value) < 0) {
      throw new SyscallError("gpiod_line_request_set_value", lastErrno(), { detail: this.#detail });
    }
  }

  /** Changes direction, output value or edge detection in place. */
  reconfigure(settings: GpiodLineSettings): void {
    const lib = gpiod();
    const config = lineConfig(this.offset, settings, this.#detail);
    try {
      if (lib.gpiod_line_request_reconfigure_lines(this.#open(), config) < 0) {
        throw new SyscallError("gpiod_line_request_reconfigure_lines", lastErrno(), {
          detail: this.#detail,
        });
      }
    } finally {
      lib.gpiod_line_config_free(config);
    }
  }

  /** Reads the edge events waiting (call when {@link fd} is readable; blocks otherwise). */
  readEdgeEvents(): GpiodEdgeEvent[] {
    const lib = gpiod();
    this.#events ??= checkPointer(
      lib.gpiod_edge_event_buffer_new(BigInt(EVENT_BUFFER_CAPACITY)),
      "gpiod_edge_event_buffer_new",
      this.#detail,
    );
    const count = lib.gpiod_line_request_read_edge_events(
      this.#open(),
      this.#events,
      BigInt(EVENT_BUFFER_CAPACITY),
    );
    if (count < 0) {
      throw new SyscallError("gpiod_line_request_read_edge_events", lastErrno(), {
        detail: this.#detail,
      });
    }
    const events: GpiodEdgeEvent[] = [];
    for (let i = 0; i < count; i++) {
      const event = lib.gpiod_edge_event_buffer_get_event(this.#events, BigInt(i));
      if (event === null) break;
      events.push({
        offset: lib.gpiod_edge_event_get_line_offset(event),
        rising: lib.gpiod_edge_event_get_event_type(event) === GPIOD_EDGE_EVENT_RISING_EDGE,
      });
    }
    return events;
  }

  /** Releases the line (closing {@link fd}). */
  release(): void {
    const lib = gpiod();
    if (this.#events !== null) lib.gpiod_edge_event_buffer_free(this.#events);
    this.#events = null;
    if (this.#request !== null) lib.gpiod_line_request_release(this.#request);
    this.#request = null;
  }

  #open(): Deno.PointerObject {
    if (this.#request === null) throw new Error(`${this.#detail} was released`);
    return this.#request;
  }
}

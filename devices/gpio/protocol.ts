/**
 * The virtio GPIO wire format (VIRTIO 1.2 §5.17): constants named as the
 * spec names them, the config space, and the decoding of the driver's
 * requests into typed values. Guest bytes are decoded here once; nothing
 * past this module looks at them again.
 *
 * @module
 */

/** §5.17.3: the device supports interrupts on GPIO lines (and has an eventq). */
export const VIRTIO_GPIO_F_IRQ = 0;

/** §5.17.6: request types. */
export const VIRTIO_GPIO_MSG_GET_LINE_NAMES = 0x0001;
/** §5.17.6.2 */
export const VIRTIO_GPIO_MSG_GET_DIRECTION = 0x0002;
/** §5.17.6.3 */
export const VIRTIO_GPIO_MSG_SET_DIRECTION = 0x0003;
/** §5.17.6.4 */
export const VIRTIO_GPIO_MSG_GET_VALUE = 0x0004;
/** §5.17.6.5 */
export const VIRTIO_GPIO_MSG_SET_VALUE = 0x0005;
/** §5.17.6.6 */
export const VIRTIO_GPIO_MSG_SET_IRQ_TYPE = 0x0006;

/** §5.17.6: response status. */
export const VIRTIO_GPIO_STATUS_OK = 0x0;
/** §5.17.6 */
export const VIRTIO_GPIO_STATUS_ERR = 0x1;

/** §5.17.6: line directions. */
export const VIRTIO_GPIO_DIRECTION_NONE = 0x00;
/** §5.17.6 */
export const VIRTIO_GPIO_DIRECTION_OUT = 0x01;
/** §5.17.6 */
export const VIRTIO_GPIO_DIRECTION_IN = 0x02;

/** §5.17.6: interrupt trigger types. */
export const VIRTIO_GPIO_IRQ_TYPE_NONE = 0x00;
/** §5.17.6 */
export const VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING = 0x01;
/** §5.17.6 */
export const VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING = 0x02;
/** §5.17.6 */
export const VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH = 0x03;
/** §5.17.6 */
export const VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH = 0x04;
/** §5.17.6 */
export const VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW = 0x08;

/** §5.17.7: eventq response status. */
export const VIRTIO_GPIO_IRQ_STATUS_INVALID = 0x0;
/** §5.17.7 */
export const VIRTIO_GPIO_IRQ_STATUS_VALID = 0x1;

/** `struct virtio_gpio_request`: le16 type, le16 gpio, le32 value. */
export const REQUEST_SIZE = 8;
/** `struct virtio_gpio_response`: u8 status, u8 value. */
export const RESPONSE_SIZE = 2;
/** `struct virtio_gpio_irq_request`: le16 gpio. */
export const IRQ_REQUEST_SIZE = 2;
/** `struct virtio_gpio_irq_response`: u8 status. */
export const IRQ_RESPONSE_SIZE = 1;
/** `struct virtio_gpio_config`: le16 ngpio, u8 padding[2], le32 gpio_names_size. */
export const CONFIG_SIZE = 8;

/** A line direction as the spec encodes it. */
export type Direction =
  | typeof VIRTIO_GPIO_DIRECTION_NONE
  | typeof VIRTIO_GPIO_DIRECTION_OUT
  | typeof VIRTIO_GPIO_DIRECTION_IN;

/** An interrupt trigger type as the spec encodes it. */
export type IrqType =
  | typeof VIRTIO_GPIO_IRQ_TYPE_NONE
  | typeof VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING
  | typeof VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING
  | typeof VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH
  | typeof VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH
  | typeof VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW;

/** A line level: 0 low, 1 high. */
export type Level = 0 | 1;

/** A well-formed requestq message. */
export type GpioRequest =
  | { readonly type: typeof VIRTIO_GPIO_MSG_GET_LINE_NAMES }
  | { readonly type: typeof VIRTIO_GPIO_MSG_GET_DIRECTION; readonly gpio: number }
  | {
    readonly type: typeof VIRTIO_GPIO_MSG_SET_DIRECTION;
    readonly gpio: number;
    readonly direction: Direction;
  }
  | { readonly type: typeof VIRTIO_GPIO_MSG_GET_VALUE; readonly gpio: number }
  | {
    readonly type: typeof VIRTIO_GPIO_MSG_SET_VALUE;
    readonly gpio: number;
    readonly value: Level;
  }
  | {
    readonly type: typeof VIRTIO_GPIO_MSG_SET_IRQ_TYPE;
    readonly gpio: number;
    readonly irqType: IrqType;
  };

/** Why a request was refused: answered with `VIRTIO_GPIO_STATUS_ERR` and logged. */
export interface Malformed {
  /** What was wrong, for the log line. */
  readonly error: string;
}

/** The names of the request types, for log lines. */
export const MESSAGE_NAMES: Readonly<Record<number, string>> = {
  [VIRTIO_GPIO_MSG_GET_LINE_NAMES]: "GET_LINE_NAMES",
  [VIRTIO_GPIO_MSG_GET_DIRECTION]: "GET_DIRECTION",
  [VIRTIO_GPIO_MSG_SET_DIRECTION]: "SET_DIRECTION",
  [VIRTIO_GPIO_MSG_GET_VALUE]: "GET_VALUE",
  [VIRTIO_GPIO_MSG_SET_VALUE]: "SET_VALUE",
  [VIRTIO_GPIO_MSG_SET_IRQ_TYPE]: "SET_IRQ_TYPE",
};

const IRQ_TYPES: readonly number[] = [
  VIRTIO_GPIO_IRQ_TYPE_NONE,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING,
  VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW,
];

/** Whether `type` is a level trigger. */
export function isLevelIrq(type: IrqType): boolean {
  return type === VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH || type === VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW;
}

/**
 * Decodes the 8 bytes of a `struct virtio_gpio_request` (§5.17.6) for a
 * device of `ngpio` lines. `irq` says whether VIRTIO_GPIO_F_IRQ was
 * negotiated (SET_IRQ_TYPE is refused without it, §5.17.6.6).
 */
export function parseRequest(
  bytes: Uint8Array,
  options: { ngpio: number; irq: boolean },
): GpioRequest | Malformed {
  if (bytes.length !== REQUEST_SIZE) {
    return { error: `request of ${bytes.length} bytes, expected ${REQUEST_SIZE}` };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, REQUEST_SIZE);
  const type = view.getUint16(0, true);
  const gpio = view.getUint16(2, true);
  const value = view.getUint32(4, true);
  if (type === VIRTIO_GPIO_MSG_GET_LINE_NAMES) return { type };
  const name = MESSAGE_NAMES[type];
  if (name === undefined) return { error: `unknown request type ${type}` };
  if (gpio >= options.ngpio) {
    return { error: `${name} for line ${gpio}, the device has ${options.ngpio}` };
  }
  switch (type) {
    case VIRTIO_GPIO_MSG_GET_DIRECTION:
    case VIRTIO_GPIO_MSG_GET_VALUE:
      return { type, gpio };
    case VIRTIO_GPIO_MSG_SET_DIRECTION:
      if (value > VIRTIO_GPIO_DIRECTION_IN) {
        return { error: `SET_DIRECTION of line ${gpio} to unknown direction ${value}` };
      }
      return { type, gpio, direction: value as Direction };
    case VIRTIO_GPIO_MSG_SET_VALUE:
      if (value > 1) return { error: `SET_VALUE of line ${gpio} to ${value}, above 1` };
      return { type, gpio, value: value as Level };
    default:
      if (!options.irq) {
        return { error: `SET_IRQ_TYPE of line ${gpio} without VIRTIO_GPIO_F_IRQ negotiated` };
      }
      if (!IRQ_TYPES.includes(value)) {
        return { error: `SET_IRQ_TYPE of line ${gpio} to unknown type ${value}` };
      }
      return { type: VIRTIO_GPIO_MSG_SET_IRQ_TYPE, gpio, irqType: value as IrqType };
  }
}

/** Decodes a `struct virtio_gpio_irq_request` (§5.17.7): the line, or why not. */
export function parseIrqRequest(
  bytes: Uint8Array,
  options: { ngpio: number },
): { readonly gpio: number } | Malformed {
  if (bytes.length !== IRQ_REQUEST_SIZE) {
    return { error: `eventq request of ${bytes.length} bytes, expected ${IRQ_REQUEST_SIZE}` };
  }
  const gpio = bytes[0] | (bytes[1] << 8);
  if (gpio >= options.ngpio) {
    return { error: `eventq buffer for line ${gpio}, the device has ${options.ngpio}` };
  }
  return { gpio };
}

/**
 * The `gpio_names` block (§5.17.6.1): each line's name, zero-terminated, in
 * line order. Empty when no line has a name (`gpio_names_size` is then 0).
 */
export function encodeLineNames(names: readonly string[]): Uint8Array {
  if (names.every((name) => name === "")) return new Uint8Array(0);
  const parts = names.map((name) => new TextEncoder().encode(name));
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length + 1, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length + 1;
  }
  return out;
}

/**
 * Line names as the spec allows them (§5.17.6.1): 7-bit ASCII, no NUL, and
 * unique within the device. Other characters become `?`; a name already
 * taken by a lower line is dropped. Returns the names and what was changed.
 */
export function sanitizeLineNames(
  names: readonly string[],
): { names: string[]; changes: string[] } {
  const seen = new Set<string>();
  const changes: string[] = [];
  const out = names.map((raw, line) => {
    // deno-lint-ignore no-control-regex
    const name = raw.replace(/[^\x01-\x7f]/g, "?");
    if (name !== raw) changes.push(`line ${line}: "${raw}" is not 7-bit ASCII, named "${name}"`);
    if (name === "") return name;
    if (seen.has(name)) {
      changes.push(`line ${line}: "${name}" is already taken by a lower line, left unnamed`);
      return "";
    }
    seen.add(name);
    return name;
  });
  return { names: out, changes };
}

/** `struct virtio_gpio_config` (§5.17.4). */
export function encodeConfig(options: { ngpio: number; namesSize: number }): Uint8Array {
  const out = new Uint8Array(CONFIG_SIZE);
  const view = new DataView(out.buffer);
  view.setUint16(0, options.ngpio, true);
  view.setUint32(4, options.namesSize, true);
  return out;
}

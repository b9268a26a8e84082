/**
 * Linux i2c-dev (`/dev/i2c-N`) through `ioctl(2)`: the functionality query,
 * the client address, combined transfers (`I2C_RDWR`) and SMBus commands
 * (`I2C_SMBUS`). Constants and layouts are those of `<linux/i2c.h>` and
 * `<linux/i2c-dev.h>` (LP64). Nothing here knows of virtio.
 *
 * @module
 */

import { check } from "./errno.ts";
import { libc } from "./libc.ts";

/** `I2C_SLAVE`: set the client address of later reads, writes and SMBus calls. */
export const I2C_SLAVE = 0x0703n;
/** `I2C_FUNCS`: the adapter's functionality mask (an `unsigned long`). */
export const I2C_FUNCS = 0x0705n;
/** `I2C_RDWR`: a combined transfer (`struct i2c_rdwr_ioctl_data`). */
export const I2C_RDWR = 0x0707n;
/** `I2C_SMBUS`: one SMBus command (`struct i2c_smbus_ioctl_data`). */
export const I2C_SMBUS = 0x0720n;

/** `I2C_M_RD`: the message reads from the client. */
export const I2C_M_RD = 0x0001;
/** `I2C_RDWR_IOCTL_MAX_MSGS`: i2c-dev refuses more messages per transfer. */
export const I2C_RDWR_IOCTL_MAX_MSGS = 42;

/** `I2C_SMBUS_READ` / `I2C_SMBUS_WRITE` (the `read_write` field). */
export const I2C_SMBUS_READ = 1;
/** See {@link I2C_SMBUS_READ}. */
export const I2C_SMBUS_WRITE = 0;
/** `I2C_SMBUS_BLOCK_MAX`: data bytes of one SMBus block. */
export const I2C_SMBUS_BLOCK_MAX = 32;
/** `sizeof(union i2c_smbus_data)`: `block[I2C_SMBUS_BLOCK_MAX + 2]`. */
export const I2C_SMBUS_DATA_SIZE: number = I2C_SMBUS_BLOCK_MAX + 2;

/** The transaction types of `I2C_SMBUS` (the `size` field), named as `<linux/i2c.h>`. */
export const SmbusSize = {
  I2C_SMBUS_QUICK: 0,
  I2C_SMBUS_BYTE: 1,
  I2C_SMBUS_BYTE_DATA: 2,
  I2C_SMBUS_WORD_DATA: 3,
  I2C_SMBUS_PROC_CALL: 4,
  I2C_SMBUS_BLOCK_DATA: 5,
  I2C_SMBUS_I2C_BLOCK_DATA: 8,
} as const;

/** Functionality bits (`I2C_FUNC_*` of `<linux/i2c.h>`). */
export const I2cFunc = {
  I2C_FUNC_I2C: 0x00000001,
  I2C_FUNC_SMBUS_QUICK: 0x00010000,
  I2C_FUNC_SMBUS_READ_BYTE: 0x00020000,
  I2C_FUNC_SMBUS_WRITE_BYTE: 0x00040000,
  I2C_FUNC_SMBUS_READ_BYTE_DATA: 0x00080000,
  I2C_FUNC_SMBUS_WRITE_BYTE_DATA: 0x00100000,
  I2C_FUNC_SMBUS_READ_WORD_DATA: 0x00200000,
  I2C_FUNC_SMBUS_WRITE_WORD_DATA: 0x00400000,
  I2C_FUNC_SMBUS_PROC_CALL: 0x00800000,
  I2C_FUNC_SMBUS_READ_BLOCK_DATA: 0x01000000,
  I2C_FUNC_SMBUS_WRITE_BLOCK_DATA: 0x02000000,
  I2C_FUNC_SMBUS_READ_I2C_BLOCK: 0x04000000,
  I2C_FUNC_SMBUS_WRITE_I2C_BLOCK: 0x08000000,
} as const;

/** `sizeof(struct i2c_msg)`: u16 addr, u16 flags, u16 len, (2 pad), u8 *buf. */
export const I2C_MSG_SIZE = 16;
/** `sizeof(struct i2c_rdwr_ioctl_data)`: struct i2c_msg *msgs, u32 nmsgs (+4 pad). */
export const I2C_RDWR_IOCTL_DATA_SIZE = 16;
/** `sizeof(struct i2c_smbus_ioctl_data)`: u8 read_write, u8 command, (2 pad), u32 size, data ptr. */
export const I2C_SMBUS_IOCTL_DATA_SIZE = 16;

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;

/** One message of an `I2C_RDWR` transfer; `data` is written (or, for a read, filled). */
export interface I2cDevMessage {
  /** 7-bit client address. */
  readonly address: number;
  /** Reads into `data` (else writes it). */
  readonly read: boolean;
  /** The bytes; at most 65535. */
  readonly data: Uint8Array<ArrayBuffer>;
}

/** Opens an i2c-dev node read-write (close-on-exec). */
export function openI2cDev(path: string): number {
  const name = new TextEncoder().encode(path + "\0");
  return check(libc.open(name, O_RDWR | O_CLOEXEC, 0), "open", { detail: path });
}

/** `ioctl(fd, I2C_FUNCS, &funcs)`: the adapter's `I2C_FUNC_*` mask. */
export function i2cFuncs(fd: number): number {
  const out = new BigUint64Array(1);
  check(libc.ioctl(fd, I2C_FUNCS, new Uint8Array(out.buffer)), "ioctl", {
    detail: `fd ${fd}, I2C_FUNCS`,
  });
  return Number(out[0] & 0xffff_ffffn);
}

/** `ioctl(fd, I2C_SLAVE, address)`: later SMBus calls on `fd` go to `address`. */
export function i2cSetSlave(fd: number, address: number): void {
  check(libc.ioctl_value(fd, I2C_SLAVE, BigInt(address)), "ioctl", {
    detail: `fd ${fd}, I2C_SLAVE 0x${address.toString(16)}`,
  });
}

/**
 * `ioctl(fd, I2C_RDWR, …)`: one combined transfer, a repeated start between
 * messages and one stop at the end. Read messages' `data` is filled in place.
 */
export function i2cRdwr(fd: number, messages: readonly I2cDevMessage[]): void {
  const table = new Uint8Array(I2C_MSG_SIZE * messages.length);
  const view = new DataView(table.buffer);
  messages.forEach((message, i) => {
    const at = i * I2C_MSG_SIZE;
    view.setUint16(at, message.address, true);
    view.setUint16(at + 2, message.read ? I2C_M_RD : 0, true);
    view.setUint16(at + 4, message.data.length, true);
    const pointer = message.data.length > 0 ? Deno.UnsafePointer.of(message.data) : null;
    view.setBigUint64(at + 8, BigInt(Deno.UnsafePointer.value(pointer)), true);
  });
  const data = new Uint8Array(I2C_RDWR_IOCTL_DATA_SIZE);
  const dataView = new DataView(data.buffer);
  dataView.setBigUint64(0, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(table))), true);
  dataView.setUint32(8, messages.length, true);
  check(libc.ioctl(fd, I2C_RDWR, data), "ioctl", {
    detail: `fd ${fd}, I2C_RDWR ${messages.length} messages`,
  });
}

/** The arguments of one `I2C_SMBUS` call. */
export interface SmbusCall {
  /** {@link I2C_SMBUS_READ} or {@link I2C_SMBUS_WRITE}. */
  readonly readWrite: number;
  /** The command (register) byte. */
  readonly command: number;
  /** A {@link SmbusSize} value. */
  readonly size: number;
  /** `union i2c_smbus_data` ({@link I2C_SMBUS_DATA_SIZE} bytes): in for writes, out for reads. */
  readonly data: Uint8Array<ArrayBuffer>;
}

/** `ioctl(fd, I2C_SMBUS, …)` to the address set by {@link i2cSetSlave}; `call.data` is updated in place. */
export function i2cSmbus(fd: number, call: SmbusCall): void {
  if (call.data.length !== I2C_SMBUS_DATA_SIZE) {
    throw new RangeError(`i2c_smbus_data must be ${I2C_SMBUS_DATA_SIZE} bytes`);
  }
  const args = new Uint8Array(I2C_SMBUS_IOCTL_DATA_SIZE);
  const view = new DataView(args.buffer);
  view.setUint8(0, call.readWrite);
  view.setUint8(1, call.command);
  view.setUint32(4, call.size, true);
  view.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(call.data))), true);
  check(libc.ioctl(fd, I2C_SMBUS, args), "ioctl", {
    detail: `fd ${fd}, I2C_SMBUS size ${call.size} ${call.readWrite ? "read" : "write"}`,
  });
}

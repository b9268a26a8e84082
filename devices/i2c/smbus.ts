/**
 * SMBus emulation of I2C transfers, for adapters without `I2C_FUNC_I2C`:
 * a combined transfer whose bytes on the wire are exactly those of one SMBus
 * command (SMBus 3.1 §6.5) is run as that command through `I2C_SMBUS`. This is
 * Linux's `i2c_smbus_xfer_emulated` read backwards. A transfer no SMBus
 * command the adapter supports puts on the wire fails; it is never
 * approximated.
 *
 * Pure functions: {@link translateToSmbus} picks the command,
 * {@link smbusCall} lays out the ioctl's arguments, {@link smbusReply}
 * turns the ioctl's answer into the read message's bytes.
 *
 * @module
 */

import {
  I2C_SMBUS_BLOCK_MAX,
  I2C_SMBUS_DATA_SIZE,
  I2C_SMBUS_READ,
  I2C_SMBUS_WRITE,
  I2cFunc as F,
  type SmbusCall,
  SmbusSize as S,
} from "../../ffi/i2c_dev.ts";
import type { I2cMessage } from "./adapter.ts";

/** One SMBus command, by the name SMBus gives it. */
export type SmbusCommand =
  | { readonly kind: "quick"; readonly read: boolean }
  | { readonly kind: "send-byte"; readonly value: number }
  | { readonly kind: "receive-byte" }
  | { readonly kind: "write-byte-data"; readonly command: number; readonly value: number }
  | { readonly kind: "read-byte-data"; readonly command: number }
  | { readonly kind: "write-word-data"; readonly command: number; readonly value: number }
  | { readonly kind: "read-word-data"; readonly command: number }
  | { readonly kind: "process-call"; readonly command: number; readonly value: number }
  | { readonly kind: "write-block-data"; readonly command: number; readonly data: Uint8Array }
  /** `length`: bytes the guest reads (the count byte, then data). */
  | { readonly kind: "read-block-data"; readonly command: number; readonly length: number }
  | { readonly kind: "write-i2c-block"; readonly command: number; readonly data: Uint8Array }
  | { readonly kind: "read-i2c-block"; readonly command: number; readonly length: number };

/** The command, or why none fits. */
export type Translation =
  | { readonly ok: true; readonly command: SmbusCommand }
  | { readonly ok: false; readonly reason: string };

const fail = (reason: string): Translation => ({ ok: false, reason });
const ok = (command: SmbusCommand): Translation => ({ ok: true, command });

/**
 * The SMBus command that puts exactly `messages` on the wire, among those
 * `funcs` (the adapter's `I2C_FUNC_*` mask) allows. Where two commands put
 * the same bytes on the wire (a byte-data write is a one-byte I2C block
 * write), the simpler one wins if the adapter has it.
 */
export function translateToSmbus(messages: readonly I2cMessage[], funcs: number): Translation {
  const has = (bit: number): boolean => (funcs & bit) !== 0;
  if (messages.length === 0) return fail("an empty transfer");
  if (messages.length > 2) return fail(`${messages.length} messages (SMBus has at most 2)`);
  if (messages.some((m) => m.address !== messages[0].address)) {
    return fail("messages to different addresses");
  }
  if (messages.length === 1) {
    const [{ read, data }] = messages;
    const n = data.length;
    if (n === 0) {
      return has(F.I2C_FUNC_SMBUS_QUICK) ? ok({ kind: "quick", read }) : fail("no SMBus quick");
    }
    if (read) {
      if (n === 1) {
        return has(F.I2C_FUNC_SMBUS_READ_BYTE)
          ? ok({ kind: "receive-byte" })
          : fail("no SMBus receive byte");
      }
      return fail(`a ${n}-byte read without a command byte`);
    }
    if (n === 1) {
      return has(F.I2C_FUNC_SMBUS_WRITE_BYTE)
        ? ok({ kind: "send-byte", value: data[0] })
        : fail("no SMBus send byte");
    }
    const command = data[0];
    if (n === 2 && has(F.I2C_FUNC_SMBUS_WRITE_BYTE_DATA)) {
      return ok({ kind: "write-byte-data", command, value: data[1] });
    }
    if (n === 3 && has(F.I2C_FUNC_SMBUS_WRITE_WORD_DATA)) {
      return ok({ kind: "write-word-data", command, value: data[1] | (data[2] << 8) });
    }
    if (n - 1 <= I2C_SMBUS_BLOCK_MAX && has(F.I2C_FUNC_SMBUS_WRITE_I2C_BLOCK)) {
      return ok({ kind: "write-i2c-block", command, data: data.slice(1) });
    }
    // SMBus block write: command, count, then count bytes.
    if (
      n >= 3 && data[1] === n - 2 && n - 2 <= I2C_SMBUS_BLOCK_MAX &&
      has(F.I2C_FUNC_SMBUS_WRITE_BLOCK_DATA)
    ) {
      return ok({ kind: "write-block-data", command, data: data.slice(2) });
    }
    return fail(`no SMBus write of ${n} bytes on this adapter`);
  }
  const [first, second] = messages;
  if (first.read || !second.read) return fail("a combined transfer other than write-then-read");
  const w = first.data.length;
  const r = second.data.length;
  if (w === 3 && r === 2) {
    return has(F.I2C_FUNC_SMBUS_PROC_CALL)
      ? ok({
        kind: "process-call",
        command: first.data[0],
        value: first.data[1] | (first.data[2] << 8),
      })
      : fail("no SMBus process call");
  }
  if (w !== 1) return fail(`a ${w}-byte write before a read (SMBus sends one command byte)`);
  if (r === 0) return fail("a zero-length read after a command byte");
  const command = first.data[0];
  if (r === 1 && has(F.I2C_FUNC_SMBUS_READ_BYTE_DATA)) {
    return ok({ kind: "read-byte-data", command });
  }
  if (r === 2 && has(F.I2C_FUNC_SMBUS_READ_WORD_DATA)) {
    return ok({ kind: "read-word-data", command });
  }
  if (r <= I2C_SMBUS_BLOCK_MAX && has(F.I2C_FUNC_SMBUS_READ_I2C_BLOCK)) {
    return ok({ kind: "read-i2c-block", command, length: r });
  }
  // SMBus block read: the client sends a count, then data; reading less is a
  // normal early stop, more is decided once the count is known (smbusReply).
  if (r <= I2C_SMBUS_BLOCK_MAX + 1 && has(F.I2C_FUNC_SMBUS_READ_BLOCK_DATA)) {
    return ok({ kind: "read-block-data", command, length: r });
  }
  return fail(`no SMBus read of ${r} bytes on this adapter`);
}

/** The `I2C_SMBUS` arguments for `command`. */
export function smbusCall(command: SmbusCommand): SmbusCall {
  const data = new Uint8Array(I2C_SMBUS_DATA_SIZE);
  const call = (readWrite: number, cmd: number, size: number): SmbusCall => ({
    readWrite,
    command: cmd,
    size,
    data,
  });
  switch (command.kind) {
    case "quick":
      return call(command.read ? I2C_SMBUS_READ : I2C_SMBUS_WRITE, 0, S.I2C_SMBUS_QUICK);
    case "send-byte":
      return call(I2C_SMBUS_WRITE, command.value, S.I2C_SMBUS_BYTE);
    case "receive-byte":
      return call(I2C_SMBUS_READ, 0, S.I2C_SMBUS_BYTE);
    case "write-byte-data":
      data[0] = command.value;
      return call(I2C_SMBUS_WRITE, command.command, S.I2C_SMBUS_BYTE_DATA);
    case "read-byte-data":
      return call(I2C_SMBUS_READ, command.command, S.I2C_SMBUS_BYTE_DATA);
    case "write-word-data":
      data[0] = command.value & 0xff;
      data[1] = command.value >> 8;
      return call(I2C_SMBUS_WRITE, command.command, S.I2C_SMBUS_WORD_DATA);
    case "read-word-data":
      return call(I2C_SMBUS_READ, command.command, S.I2C_SMBUS_WORD_DATA);
    case "process-call":
      data[0] = command.value & 0xff;
      data[1] = command.value >> 8;
      return call(I2C_SMBUS_WRITE, command.command, S.I2C_SMBUS_PROC_CALL);
    case "write-block-data":
      data[0] = command.data.length;
      data.set(command.data, 1);
      return call(I2C_SMBUS_WRITE, command.command, S.I2C_SMBUS_BLOCK_DATA);
    case "read-block-data":
      return call(I2C_SMBUS_READ, command.command, S.I2C_SMBUS_BLOCK_DATA);
    case "write-i2c-block":
      data[0] = command.data.length;
      data.set(command.data, 1);
      return call(I2C_SMBUS_WRITE, command.command, S.I2C_SMBUS_I2C_BLOCK_DATA);
    case "read-i2c-block":
      data[0] = command.length;
      return call(I2C_SMBUS_READ, command.command, S.I2C_SMBUS_I2C_BLOCK_DATA);
  }
}

/**
 * The bytes the read message receives, from the `union i2c_smbus_data` the
 * ioctl returned; `null` for a command without a read, or when the answer
 * cannot be what the guest's read would have seen (an SMBus block shorter
 * than the guest reads: the bytes after it are unknown).
 */
export function smbusReply(command: SmbusCommand, data: Uint8Array): Uint8Array | null {
  switch (command.kind) {
    case "receive-byte":
    case "read-byte-data":
      return data.slice(0, 1);
    case "read-word-data":
    case "process-call":
      return data.slice(0, 2);
    case "read-i2c-block":
      return data[0] === command.length ? data.slice(1, 1 + command.length) : null;
    case "read-block-data": {
      const count = data[0];
      if (count > I2C_SMBUS_BLOCK_MAX || count + 1 < command.length) return null;
      return data.slice(0, command.length);
    }
    default:
      return null;
  }
}

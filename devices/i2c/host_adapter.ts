/**
 * A host I2C bus through Linux i2c-dev (`/dev/i2c-N`): `I2C_RDWR` when the
 * adapter speaks plain I2C (`I2C_FUNC_I2C`), else SMBus emulation through
 * `I2C_SMBUS` (smbus.ts). Each transfer is one synchronous ioctl: the daemon
 * serves one such transfer per event-loop pass (see {@link I2cAdapter.blocking}).
 *
 * @module
 */

import {
  close,
  I2C_RDWR_IOCTL_MAX_MSGS,
  I2cFunc,
  i2cFuncs,
  i2cRdwr,
  i2cSetSlave,
  i2cSmbus,
  openI2cDev,
  SyscallError,
} from "../../ffi/mod.ts";
import type { I2cAdapter, I2cMessage, TransferResult } from "./adapter.ts";
import { smbusCall, smbusReply, translateToSmbus } from "./smbus.ts";

/** The i2c-dev calls {@link HostAdapter} makes; a test can replace them. */
export interface I2cDevCalls {
  /** Opens the node. */
  open(path: string): number;
  /** `I2C_FUNCS`. */
  funcs(fd: number): number;
  /** `I2C_SLAVE`. */
  setSlave(fd: number, address: number): void;
  /** `I2C_RDWR`. */
  rdwr(fd: number, messages: readonly I2cMessage[]): void;
  /** `I2C_SMBUS`. */
  smbus(fd: number, call: Parameters<typeof i2cSmbus>[1]): void;
  /** Closes the node. */
  close(fd: number): void;
}

/** The real calls, through `ffi/`. */
export const LINUX_I2C_DEV: I2cDevCalls = {
  open: openI2cDev,
  funcs: i2cFuncs,
  setSlave: i2cSetSlave,
  rdwr: i2cRdwr,
  smbus: i2cSmbus,
  close,
};

/** errnos a client that does not answer leaves (i2c fault codes, Documentation/i2c/fault-codes.rst). */
const NACK_ERRNOS = new Set([6, /* ENXIO */ 121, /* EREMOTEIO */ 5 /* EIO */]);

/** A `/dev/i2c-N` adapter serving chosen client addresses. */
export class HostAdapter implements I2cAdapter {
  readonly name: string;
  readonly addresses: readonly number[];
  readonly blocking = true;
  /** The adapter's `I2C_FUNC_*` mask, read at start-up. */
  readonly funcs: number;
  readonly #fd: number;
  readonly #calls: I2cDevCalls;

  private constructor(
    path: string,
    init: { fd: number; funcs: number; addresses: readonly number[]; calls: I2cDevCalls },
  ) {
    this.name = path;
    this.#fd = init.fd;
    this.funcs = init.funcs;
    this.addresses = init.addresses;
    this.#calls = init.calls;
  }

  /**
   * Opens `path`, reads its functionality and probes every address with
   * `I2C_SLAVE` as upstream does (a kernel driver bound to an address makes
   * it fail with EBUSY). Throws naming the adapter and address.
   */
  static open(
    path: string,
    options: { addresses: readonly number[]; calls?: I2cDevCalls },
  ): HostAdapter {
    const calls = options.calls ?? LINUX_I2C_DEV;
    const fd = calls.open(path);
    try {
      const funcs = calls.funcs(fd);
      const smbusOnly = I2cFunc.I2C_FUNC_SMBUS_READ_BYTE_DATA |
        I2cFunc.I2C_FUNC_SMBUS_WRITE_BYTE_DATA;
      if ((funcs & I2cFunc.I2C_FUNC_I2C) === 0 && (funcs & smbusOnly) === 0) {
        throw new Error(
          `${path}: the adapter has neither I2C nor SMBus byte-data transfers ` +
            `(I2C_FUNCS 0x${funcs.toString(16)})`,
        );
      }
      for (const address of options.addresses) {
        try {
          calls.setSlave(fd, address);
        } catch (error) {
          throw new Error(
            `${path}: cannot use address 0x${address.toString(16)}: ${
              error instanceof Error ? error.message : error
            }`,
          );
        }
      }
      return new HostAdapter(path, { fd, funcs, addresses: options.addresses, calls });
    } catch (error) {
      calls.close(fd);
      throw error;
    }
  }

  /** Whether transfers go through `I2C_RDWR` (else SMBus emulation). */
  get plainI2c(): boolean {
    return (this.funcs & I2cFunc.I2C_FUNC_I2C) !== 0;
  }

  transfer(messages: readonly I2cMessage[]): TransferResult {
    try {
      if (this.plainI2c) {
        if (messages.length > I2C_RDWR_IOCTL_MAX_MSGS) {
          return { completed: 0, error: `${messages.length} messages (i2c-dev takes 42)` };
        }
        this.#calls.rdwr(this.#fd, messages);
        return { completed: messages.length };
      }
      const translation = translateToSmbus(messages, this.funcs);
      if (!translation.ok) {
        return { completed: 0, error: `no SMBus command fits: ${translation.reason}` };
      }
      const call = smbusCall(translation.command);
      this.#calls.setSlave(this.#fd, messages[0].address);
      this.#calls.smbus(this.#fd, call);
      const read = messages.find((m) => m.read && m.data.length > 0);
      if (read) {
        const reply = smbusReply(translation.command, call.data);
        if (reply === null) {
          // The write (if any) went out; the read cannot be answered faithfully.
          return {
            completed: messages.length - 1,
            error: `the SMBus answer (count ${call.data[0]}) does not fill a ` +
              `${read.data.length}-byte read`,
          };
        }
        read.data.set(reply);
      }
      return { completed: messages.length };
    } catch (error) {
      if (error instanceof SyscallError) {
        return { completed: 0, error: error.message, nack: NACK_ERRNOS.has(error.errno) };
      }
      throw error;
    }
  }

  close(): void {
    this.#calls.close(this.#fd);
  }
}

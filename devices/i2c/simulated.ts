/**
 * A simulated I2C adapter: a **test and development aid** for machines
 * without I2C hardware (`--simulated-device`), never used unless asked for.
 * Its clients behave on the wire as real parts do, so the guest's own
 * drivers (at24, i2c-tools) can be tested against it:
 *
 * - {@link Eeprom24c02}: a 24C02-like 256-byte EEPROM. A write sends the
 *   word address, then data written with 8-byte page wrap-around; a read
 *   continues sequentially from the address counter, wrapping at 256.
 * - {@link RegisterFile}: 256 byte registers with an auto-incrementing
 *   register pointer; the last two (device id) are read-only and a write to
 *   them is refused (NACK), as a sensor's identification registers are.
 *
 * @module
 */

import type { I2cAdapter, I2cMessage, TransferResult } from "./adapter.ts";

/** A simulated I2C client: it acknowledges or refuses each message. */
export interface SimulatedClient {
  /** `eeprom` or `regs`, for log lines. */
  readonly kind: SimulatedKind;
  /** A write message (after the address byte); `false` is a NACK. */
  write(data: Uint8Array): boolean;
  /** A read message fills `data`; `false` is a NACK. */
  read(data: Uint8Array): boolean;
}

/** The kinds of simulated clients `--simulated-device` accepts. */
export const SIMULATED_KINDS = ["eeprom", "regs"] as const;
/** One of {@link SIMULATED_KINDS}. */
export type SimulatedKind = typeof SIMULATED_KINDS[number];

/** 24C02: 2 Kbit, 8-byte write pages. */
export const EEPROM_SIZE = 256;
/** 24C02's write page. */
export const EEPROM_PAGE = 8;

/** A 24C02-like EEPROM (erased: all 0xff). */
export class Eeprom24c02 implements SimulatedClient {
  readonly kind = "eeprom";
  /** The memory array. */
  readonly memory: Uint8Array = new Uint8Array(EEPROM_SIZE).fill(0xff);
  #pointer = 0;

  write(data: Uint8Array): boolean {
    if (data.length === 0) return true;
    this.#pointer = data[0];
    // Byte or page write: the low 3 address bits wrap within the page.
    const page = this.#pointer & ~(EEPROM_PAGE - 1);
    let offset = this.#pointer & (EEPROM_PAGE - 1);
    for (const byte of data.subarray(1)) {
      this.memory[page + offset] = byte;
      offset = (offset + 1) & (EEPROM_PAGE - 1);
    }
    if (data.length > 1) this.#pointer = page + offset;
    return true;
  }

  read(data: Uint8Array): boolean {
    for (let i = 0; i < data.length; i++) {
      data[i] = this.memory[this.#pointer];
      this.#pointer = (this.#pointer + 1) % EEPROM_SIZE;
    }
    return true;
  }
}

/** The register file's read-only identification registers and their values. */
export const REGISTER_ID = { 0xfe: 0x5a, 0xff: 0x01 } as const;

/** A 256-register device with an auto-incrementing register pointer. */
export class RegisterFile implements SimulatedClient {
  readonly kind = "regs";
  /** The registers (all 0 but the id). */
  readonly registers: Uint8Array = new Uint8Array(256);
  #pointer = 0;

  /** Registers cleared, id registers set. */
  constructor() {
    this.registers[0xfe] = REGISTER_ID[0xfe];
    this.registers[0xff] = REGISTER_ID[0xff];
  }

  write(data: Uint8Array): boolean {
    if (data.length === 0) return true;
    this.#pointer = data[0];
    for (const byte of data.subarray(1)) {
      if (this.#pointer >= 0xfe) return false;
      this.registers[this.#pointer] = byte;
      this.#pointer = (this.#pointer + 1) & 0xff;
    }
    return true;
  }

  read(data: Uint8Array): boolean {
    for (let i = 0; i < data.length; i++) {
      data[i] = this.registers[this.#pointer];
      this.#pointer = (this.#pointer + 1) & 0xff;
    }
    return true;
  }
}

/** Makes a fresh client of `kind`. */
export function simulatedClient(kind: SimulatedKind): SimulatedClient {
  return kind === "eeprom" ? new Eeprom24c02() : new RegisterFile();
}

/** An in-process adapter with simulated clients; its state outlives guest connections. */
export class SimulatedAdapter implements I2cAdapter {
  readonly name = "simulated";
  readonly blocking = false;
  readonly #clients: ReadonlyMap<number, SimulatedClient>;

  /** An adapter with `clients` at their 7-bit addresses. */
  constructor(clients: ReadonlyMap<number, SimulatedClient>) {
    this.#clients = clients;
  }

  get addresses(): number[] {
    return [...this.#clients.keys()];
  }

  /** The client at `address`, for tests. */
  client(address: number): SimulatedClient | undefined {
    return this.#clients.get(address);
  }

  /** Runs the messages in order; the first refused one ends the transfer (a stop after the NACK). */
  transfer(messages: readonly I2cMessage[]): TransferResult {
    for (let i = 0; i < messages.length; i++) {
      const { address, read, data } = messages[i];
      const client = this.#clients.get(address);
      const acked = client !== undefined && (read ? client.read(data) : client.write(data));
      if (!acked) {
        return {
          completed: i,
          error: `address 0x${address.toString(16)} refused message ${i}`,
          nack: true,
        };
      }
    }
    return { completed: messages.length };
  }

  close(): void {}
}

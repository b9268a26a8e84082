/**
 * The host side of the I2C device: an adapter runs one combined transfer
 * (the messages of one Linux `i2c_transfer`: a start, a repeated start
 * between messages, one stop). Two implementations: {@link I2cDevAdapter}
 * in `i2c_dev.ts` (a host bus through `/dev/i2c-N`) and the simulated
 * adapter of `simulated.ts` (a test and development aid).
 *
 * @module
 */

/** One message of a combined transfer. */
export interface I2cMessage {
  /** 7-bit client address. */
  readonly address: number;
  /** A read fills `data`; a write sends it. */
  readonly read: boolean;
  /** Bytes to write, or the buffer a read fills (its length is the read's length). */
  readonly data: Uint8Array<ArrayBuffer>;
}

/** What a transfer did. */
export interface TransferResult {
  /**
   * Messages that completed, from the first: all of them on success; on a
   * failure the messages from index `completed` on did not (their read
   * buffers hold nothing valid).
   */
  readonly completed: number;
  /** Why the transfer stopped short, for the log; absent on success. */
  readonly error?: string;
  /** The failure is a normal bus event (no client answered): not worth a warning. */
  readonly nack?: boolean;
}

/** A host I2C adapter with the client addresses the guest may use. */
export interface I2cAdapter {
  /** For log lines: `/dev/i2c-1`, `simulated`. */
  readonly name: string;
  /** The client addresses passed to the guest. */
  readonly addresses: readonly number[];
  /**
   * `transfer` blocks the thread for bus time (a kernel ioctl on a real
   * bus), so the device serves one transfer per event-loop pass.
   */
  readonly blocking: boolean;
  /** Runs one combined transfer; every message's address is one of {@link addresses}. */
  transfer(messages: readonly I2cMessage[]): TransferResult;
  /** Releases host resources. */
  close(): void;
}

/** The adapters of a daemon by client address: the guest's one virtual bus. */
export class I2cBus {
  readonly #byAddress = new Map<number, I2cAdapter>();
  readonly #adapters: readonly I2cAdapter[];

  /** Throws if two adapters claim one address (the guest has one address space). */
  constructor(adapters: readonly I2cAdapter[]) {
    this.#adapters = adapters;
    for (const adapter of adapters) {
      for (const address of adapter.addresses) {
        const other = this.#byAddress.get(address);
        if (other) {
          throw new Error(
            `address 0x${address.toString(16)} is on both ${other.name} and ${adapter.name}`,
          );
        }
        this.#byAddress.set(address, adapter);
      }
    }
  }

  /** The adapter serving `address`, or `undefined`. */
  adapterFor(address: number): I2cAdapter | undefined {
    return this.#byAddress.get(address);
  }

  /** Every configured address, ascending. */
  get addresses(): number[] {
    return [...this.#byAddress.keys()].sort((a, b) => a - b);
  }

  /** Closes every adapter. */
  close(): void {
    for (const adapter of this.#adapters) adapter.close();
  }
}

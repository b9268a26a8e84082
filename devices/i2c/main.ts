/**
 * `vhost-device-i2c`: a drop-in for rust-vmm's binary of that name.
 *
 * ```sh
 * deno run --allow-all devices/i2c/main.ts -s /run/vhost/i2c.sock -l 1:32:0x51
 * ```
 *
 * @module
 */

import { type CommandSpec, loggerFor, runMain } from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import { type I2cAdapter, I2cBus } from "./adapter.ts";
import { I2C_COMMAND, i2cConfig } from "./config.ts";
import { I2cDevice } from "./device.ts";
import { HostAdapter } from "./host_adapter.ts";
import { SimulatedAdapter, type SimulatedClient, simulatedClient } from "./simulated.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = I2C_COMMAND;

if (import.meta.main) {
  await runMain(I2C_COMMAND, async (options) => {
    const config = i2cConfig(options);
    const log = loggerFor("vhost_device_i2c", { flag: config.logLevel });
    // Adapters are opened and probed before listening: a bad bus fails the start.
    const adapters: I2cAdapter[] = [];
    try {
      for (const { path, addresses } of config.adapters) {
        const adapter = HostAdapter.open(path, { addresses });
        adapters.push(adapter);
        log.info(
          `${path}: ${adapter.plainI2c ? "I2C_RDWR" : "SMBus emulation"} ` +
            `(I2C_FUNCS 0x${adapter.funcs.toString(16)}), clients ${hex(addresses)}`,
        );
      }
      if (config.simulated.length > 0) {
        const clients = new Map<number, SimulatedClient>(
          config.simulated.map(({ kind, address }) => [address, simulatedClient(kind)]),
        );
        adapters.push(new SimulatedAdapter(clients));
        log.info(
          `simulated adapter (a test aid): ${
            config.simulated.map((s) => `${s.kind}@0x${s.address.toString(16)}`).join(", ")
          }`,
        );
      }
    } catch (error) {
      for (const adapter of adapters) adapter.close();
      throw error;
    }
    // One bus for every socket, as upstream: the clients' state is shared.
    const bus = new I2cBus(adapters);
    const daemon = new Daemon({
      log,
      pollMicros: config.pollMicros,
      createDevice: () => new I2cDevice({ bus }),
    });
    try {
      for (const address of config.addresses) daemon.listen(address);
      await daemon.run();
    } finally {
      bus.close();
    }
  });
}

function hex(addresses: readonly number[]): string {
  return addresses.map((a) => `0x${a.toString(16)}`).join(", ");
}

/**
 * `vhost-device-gpio`: a drop-in for rust-vmm's binary of that name.
 *
 * ```sh
 * deno run --allow-all devices/gpio/main.ts -s /run/vhost/gpio.sock -c 2 -l 0:s8
 * ```
 *
 * @module
 */

import { type CommandSpec, loggerFor, runMain } from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import type { Logger } from "../../core/log.ts";
import type { GpioChip } from "./chip.ts";
import { type ChipSpec, GPIO_COMMAND, gpioConfig } from "./config.ts";
import { SimControlServer } from "./control.ts";
import { GpioDevice } from "./device.ts";
import { openLibgpiodChip } from "./libgpiod_chip.ts";
import { SimulatedChip } from "./sim_chip.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = GPIO_COMMAND;

const DIRECTIONS = ["none", "out", "in"];

function openChip(spec: ChipSpec, index: number, options: { daemon: Daemon; log: Logger }) {
  if (spec.kind === "real") return openLibgpiodChip(spec.path, { loop: options.daemon.loop });
  const chip = new SimulatedChip(spec.lines, { label: `simulated chip ${index}` });
  // As upstream's mock chip, what the guest does to a line is logged at info.
  chip.onChange = (line) => {
    const state = chip.state(line);
    options.log.info(
      `${chip.label}: line ${line} ${DIRECTIONS[state.direction]}, value ${state.value}`,
    );
  };
  return chip;
}

if (import.meta.main) {
  await runMain(GPIO_COMMAND, async (options) => {
    const config = gpioConfig(options);
    // Upstream's gpio daemon alone logs at info unless told otherwise.
    const log = loggerFor("vhost_device_gpio", { flag: config.logLevel, fallback: "info" });
    const chips: GpioChip[] = [];
    let control: SimControlServer | null = null;
    const daemon = new Daemon({
      log,
      pollMicros: config.pollMicros,
      createDevice: (index) => new GpioDevice(chips[index], { log }),
    });
    try {
      // Opened before listening: a missing chip fails the start, not the first guest.
      config.chips.forEach((spec, index) => chips.push(openChip(spec, index, { daemon, log })));
      if (config.simControl !== null) {
        const simulated = new Map<number, SimulatedChip>();
        chips.forEach((chip, index) => {
          if (chip instanceof SimulatedChip) simulated.set(index, chip);
        });
        control = new SimControlServer(config.simControl, {
          loop: daemon.loop,
          log,
          chips: simulated,
        });
      }
      for (const address of config.addresses) daemon.listen(address);
      await daemon.run();
    } finally {
      control?.close();
      for (const chip of chips) chip.close();
    }
  });
}

/**
 * `vhost-device-scmi`: a drop-in for rust-vmm's binary of that name. It
 * offers host sensors (a fake accelerometer, IIO channels) to a guest's Arm
 * SCMI stack through virtio SCMI.
 *
 * ```sh
 * deno run --allow-all devices/scmi/main.ts -s /run/vhost/scmi.sock -d fake,name=acc0 \
 *   -d iio,path=/sys/bus/iio/devices/iio:device0,channel=in_temp
 * ```
 *
 * @module
 */

import { type CommandSpec, loggerFor, runMain, VERSION } from "../../core/cli.ts";
import { Daemon } from "../../core/daemon.ts";
import { devicesHelp, type DeviceSpec, SCMI_COMMAND, scmiConfig } from "./config.ts";
import { ScmiDevice } from "./device.ts";
import { FakeSensor } from "./fake_sensor.ts";
import { IioSensor } from "./iio_sensor.ts";
import type { Sensor } from "./sensor.ts";

/** The command line: parser, `--help` and man page. */
export const COMMAND: CommandSpec = SCMI_COMMAND;

/** The project's version as DISCOVER_IMPLEMENTATION_VERSION reports it: 0xMMmmpp. */
export function implementationVersion(version: string = VERSION): number {
  const [major, minor, patch] = version.split(".").map((part) => Number.parseInt(part, 10) || 0);
  return ((major & 0xff) << 16) | ((minor & 0xff) << 8) | (patch & 0xff);
}

/** Opens the host side of each `--device`; throws naming the device that failed. */
export function openSensors(specs: readonly DeviceSpec[]): Sensor[] {
  return specs.map((spec, index) => {
    const name = spec.properties.get("name");
    if (spec.id === "fake") return new FakeSensor(name);
    try {
      return IioSensor.open({
        path: spec.properties.get("path")!,
        channel: spec.properties.get("channel")!,
        name,
      });
    } catch (error) {
      throw new Error(`device ${index} (iio): ${error instanceof Error ? error.message : error}`);
    }
  });
}

if (import.meta.main) {
  await runMain(SCMI_COMMAND, async (options) => {
    const config = scmiConfig(options);
    if (config.helpDevices) {
      console.log(devicesHelp());
      return;
    }
    const log = loggerFor("vhost_device_scmi", { flag: config.logLevel });
    // Opened before listening: a bad device fails the start, not the first guest.
    const sensors = openSensors(config.devices);
    log.info(`serving ${sensors.length} sensor(s): ${sensors.map((s) => s.name).join(", ")}`);
    const daemon = new Daemon({
      log,
      pollMicros: config.pollMicros,
      createDevice: () =>
        new ScmiDevice({ sensors, implementationVersion: implementationVersion() }),
    });
    daemon.listen(config.address);
    await daemon.run();
  });
}

// vhost-device-scmi under real QEMU: an aarch64 guest's own SCMI stack
// (scmi_transport_virtio, scmi-hwmon, scmi_iio) uses our back-end. x86 QEMU
// has no vhost-user SCMI device, so this is the project's aarch64 guest.
// Needs root (QEMU, the aarch64 guest kit).
// Run: deno test --allow-all tests/e2e/scmi_test.ts
import assert from "node:assert/strict";
import { startScmiDaemon, writeIioDevice } from "../../devices/scmi/testing.ts";
import { assertGuestSucceeded, consoleTail, type GuestOptions, startGuest } from "./guest.ts";

/** The devicetree node the virtio transport binds to (guest-devices facts: /firmware/scmi). */
const SCMI_NODE = `
/ {
  firmware {
    scmi {
      compatible = "arm,scmi-virtio";
      #address-cells = <1>;
      #size-cells = <0>;
      protocol@15 {
        reg = <0x15>;
        #thermal-sensor-cells = <1>;
      };
    };
  };
};
`;

function scmiGuest(socket: string, script: string): GuestOptions {
  return {
    arch: "aarch64",
    memoryMiB: 512,
    devicetree: SCMI_NODE,
    modules: ["scmi_transport_virtio", "scmi_hwmon", "scmi_iio"],
    qemuArgs: [
      "-chardev",
      `socket,id=scmi0,path=${socket}`,
      "-device",
      "vhost-user-scmi-pci,chardev=scmi0",
    ],
    script,
  };
}

Deno.test("scmi e2e: smoke", async () => {
  await using daemon = await startScmiDaemon([
    "-d",
    "fake,name=acc0",
    "-d",
    "iio,path={dir}/iio0,channel=in_temp,name=board",
  ], {
    logLevel: "debug",
    prepare: (dir) => writeIioDevice(`${dir}/iio0`, { in_temp_raw: "2512", in_temp_scale: "10" }),
  });
  await using guest = await startGuest(scmiGuest(
    daemon.socket,
    `
    dmesg | grep -i scmi
    ls /sys/class/hwmon/ /sys/bus/iio/devices/
    for h in /sys/class/hwmon/hwmon*; do echo "$h $(cat $h/name)"; ls $h; cat $h/temp1_input; done
    d=/sys/bus/iio/devices/iio:device0
    ls $d
    cat $d/name $d/in_accel_x_raw $d/in_accel_x_raw $d/in_accel_scale
  `,
  ));
  const result = await guest.result;
  console.log(result.console);
  console.log(daemon.log.slice(-3000));
  assertGuestSucceeded(result);
  assert.ok(consoleTail(result.console));
});

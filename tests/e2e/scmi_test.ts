// vhost-device-scmi under real QEMU: an aarch64 guest's own SCMI stack
// (scmi_transport_virtio, scmi-hwmon, scmi_iio) uses our back-end. x86 QEMU
// has no vhost-user SCMI device, so this is the project's aarch64 guest.
// Needs root (QEMU, the aarch64 guest kit).
// Run: deno test --allow-all tests/e2e/scmi_test.ts
import assert from "node:assert/strict";
import { startScmiDaemon, writeIioDevice } from "../../devices/scmi/testing.ts";
import {
  assertGuestSucceeded,
  consoleTail,
  type GuestOptions,
  type GuestResult,
  startGuest,
} from "./guest.ts";

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

/**
 * An aarch64 guest with the SCMI modules and our device, on PCI or, with
 * `mmio`, on one of virt's virtio-mmio transports (made modern: they are
 * legacy by default and the SCMI transport refuses a legacy device).
 */
function scmiGuest(socket: string, script: string, options: { mmio?: boolean } = {}): GuestOptions {
  return {
    arch: "aarch64",
    memoryMiB: 512,
    devicetree: SCMI_NODE,
    modules: [
      ...(options.mmio ? ["virtio_mmio"] : []),
      "scmi_transport_virtio",
      "scmi_hwmon",
      "scmi_iio",
    ],
    qemuArgs: [
      "-chardev",
      `socket,id=scmi0,path=${socket}`,
      ...(options.mmio
        ? ["-global", "virtio-mmio.force-legacy=false", "-device", "vhost-user-scmi,chardev=scmi0"]
        : ["-device", "vhost-user-scmi-pci,chardev=scmi0"]),
    ],
    script,
  };
}

function check(condition: boolean, message: string, result: GuestResult): void {
  if (!condition) {
    throw new Error(`${message}\nlast console lines:\n${consoleTail(result.console, 60)}`);
  }
}

/** Finds the scmi-hwmon and scmi_iio devices, and the core's probe line. */
const FIND = `
  echo "@@RESULT probe $(dmesg | grep -o "SCMI Protocol v[0-9.]* '[^']*' Firmware version 0x[0-9a-f]*")"
  h=; for x in /sys/class/hwmon/hwmon*; do [ "$(cat $x/name)" = scmi_sensors ] && h=$x; done
  d=; for x in /sys/bus/iio/devices/iio:device*; do [ "$(cat $x/name)" = acc0 ] && d=$x; done
  echo "@@RESULT found hwmon=$h iio=$d"
`;

Deno.test("scmi e2e: an aarch64 guest's SCMI stack reads fake and IIO sensors, gets notifications, survives a QEMU restart (then on virtio-mmio)", async () => {
  await using daemon = await startScmiDaemon([
    "-d",
    "fake,name=acc0",
    "-d",
    "iio,path={dir}/iio0,channel=in_temp,name=board",
    "-d",
    "iio,path={dir}/iio0,channel=in_voltage0,name=vdd",
  ], {
    prepare: (dir) =>
      writeIioDevice(`${dir}/iio0`, {
        name: "test-adc",
        in_temp_raw: "2512",
        in_temp_scale: "10",
        in_voltage0_raw: "1234",
        in_voltage_scale: "0.5",
      }),
  });
  const t0 = performance.now();
  const phase = (name: string) =>
    console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s into the test`);
  const first = await startGuest(scmiGuest(
    daemon.socket,
    `${FIND}
    # scmi-hwmon: milli-degrees and milli-volts, = (raw + offset) x scale of the files.
    echo "@@RESULT labels $(cat $h/temp1_label) $(cat $h/in0_label)"
    echo "@@RESULT temp $(cat $h/temp1_input)"
    echo "@@RESULT volt $(cat $h/in0_input)"
    echo "@@READY"
    i=0
    while [ "$(cat $h/temp1_input)" = 25120 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    echo "@@RESULT temp_changed $(cat $h/temp1_input)"
    echo "@@GONE?"
    i=0
    while cat $h/in0_input >/dev/null 2>&1 && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    cat $h/in0_input >/dev/null 2>&1 && echo "@@RESULT volt_gone no" || echo "@@RESULT volt_gone yes"
    # scmi_iio: the fake accelerometer, live.
    echo "@@RESULT accel $(cat $d/in_accel_x_raw) $(cat $d/in_accel_x_raw) $(cat $d/in_accel_y_raw)"
    echo "@@RESULT accel_scale $(cat $d/in_accel_x_scale)"
    echo "@@RESULT accel_freq $(cat $d/in_accel_sampling_frequency)"
    # Notifications: enabling the IIO buffer makes scmi_iio enable the sensor;
    # SENSOR_UPDATE messages on the eventq become scans (3 x s64 + timestamp).
    for c in x y z; do echo 1 > $d/scan_elements/in_accel_\${c}_en; done
    echo 1 > $d/scan_elements/in_timestamp_en
    echo 1 > $d/buffer/enable
    timeout 30 head -c 96 /dev/$(basename $d) > /tmp/scan
    echo 0 > $d/buffer/enable
    echo "@@RESULT scan_bytes $(wc -c < /tmp/scan)"
    echo "@@RESULT scan $(od -An -v -t d8 /tmp/scan | tr -s ' \n' ' ')"
    `,
  ));
  phase("QEMU 1 started");
  try {
    await first.waitFor("@@READY", { timeoutMs: 120_000 });
    Deno.writeTextFileSync(`${daemon.dir}/iio0/in_temp_raw`, "2600\n");
    await first.waitFor("@@GONE?", { timeoutMs: 60_000 });
    Deno.removeSync(`${daemon.dir}/iio0/in_voltage0_raw`);
  } finally {
    await first.result;
  }
  const one = await first.result;
  console.log(
    `boot 1: ${(one.totalMs / 1000).toFixed(1)} s (script started after ${
      ((one.bootMs ?? 0) / 1000).toFixed(1)
    } s)`,
  );
  assertGuestSucceeded(one);
  const r = one.results;
  check(
    r.probe === "SCMI Protocol v2.0 'rust-vmm:deno' Firmware version 0x100",
    `probe: ${r.probe}`,
    one,
  );
  check(/hwmon=\/sys\S+ iio=\/sys\S+/.test(r.found ?? ""), `found: ${r.found}`, one);
  assert.equal(r.labels, "board vdd");
  // 2512 x 10 m°C; 1234 x 0.5 mV.
  assert.equal(r.temp, "25120");
  assert.equal(r.volt, "617");
  assert.equal(r.temp_changed, "26000", "each hwmon read is a live SENSOR_READING_GET");
  assert.equal(r.volt_gone, "yes", "a vanished file is a failed read in the guest");
  const [x1, x2, y] = (r.accel ?? "").split(" ").map(Number);
  check(x2 > x1 && y > x2, `accel readings ${r.accel} do not change`, one);
  // 10^-3 m/s² per unit.
  assert.equal(r.accel_scale, "0.001000000");
  assert.equal(r.accel_freq, "10.000000", "100 ms update interval");
  assert.equal(r.scan_bytes, "96", "three scans from SENSOR_UPDATE notifications");
  const scan = (r.scan ?? "").trim().split(" ").map(Number);
  const xs = [scan[0], scan[4], scan[8]];
  check(xs[0] < xs[1] && xs[1] < xs[2], `scan x values ${xs} not increasing`, one);
  assert.deepEqual([scan[1] - scan[0], scan[2] - scan[0]], [1000, 2000]);
  await daemon.waitForLog("waiting for a front-end");
  phase("boot 1 checked");
  const fds = daemon.fds();

  // A QEMU restart against the same daemon: a fresh SCMI probe, readings
  // again, this time through virtio-mmio.
  Deno.writeTextFileSync(`${daemon.dir}/iio0/in_voltage0_raw`, "2000\n");
  await using second = await startGuest(scmiGuest(
    daemon.socket,
    `${FIND}
    echo "@@RESULT temp $(cat $h/temp1_input)"
    echo "@@RESULT volt $(cat $h/in0_input)"
    echo "@@RESULT accel $(cat $d/in_accel_x_raw)"
    echo "@@RESULT transport $(basename $(readlink /sys/bus/virtio/devices/virtio0/driver)) $(basename $(dirname $(readlink -f /sys/bus/virtio/devices/virtio0)))"
    `,
    { mmio: true },
  ));
  phase("QEMU 2 started");
  const two = await second.result;
  console.log(`boot 2: ${(two.totalMs / 1000).toFixed(1)} s, ${two.results.transport}`);
  assertGuestSucceeded(two);
  check(two.results.probe === r.probe, `probe after restart: ${two.results.probe}`, two);
  assert.equal(two.results.temp, "26000");
  assert.equal(two.results.volt, "1000");
  check(Number(two.results.accel) > x2, `accel after restart: ${two.results.accel}`, two);
  check(
    /^scmi-virtio \S+\.virtio_mmio$/.test(two.results.transport ?? ""),
    `transport after restart: ${two.results.transport}`,
    two,
  );
  await daemon.waitForLog("waiting for a front-end", { count: 2 });
  await daemon.expectFds(fds, { what: "the daemon's fds across QEMU sessions" });
  assert.ok(daemon.running);
  phase("boot 2 checked");
});

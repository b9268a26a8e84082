// A guest that reboots inside the same QEMU keeps every device: rng, vsock,
// scsi, sound, i2c and gpio are served before the reboot and again after it, by
// the same daemons over the same connections. QEMU stops the rings on the
// reset (GET_VRING_BASE) and starts them again (SET_FEATURES, the rings
// anew) once the guest's drivers set the devices up; a back-end that keeps
// stale ring state (the used index, say) is dead after the reboot. The
// connection stays, and QEMU 10 sends no RESET_DEVICE (vhost-user-scsi acks
// protocol features 0x8009 only), so a back-end cannot tell a reboot from a
// `stop`/`cont`: the scsi target reports no new unit attention (README,
// vhost-device-scsi). The guest reboots itself
// (`reboot -f`, with `-action reboot=reset` overriding the rig's
// `-no-reboot`); the scsi disk carries the boot count across. Needs root
// (QEMU, the guest kit).
// Run: deno test --allow-all tests/e2e/reboot_test.ts
import assert from "node:assert/strict";
import { SimControl, startGpioDaemon } from "../../devices/gpio/testing.ts";
import { startI2cDaemon } from "../../devices/i2c/testing.ts";
import { startRngDaemon } from "../../devices/rng/testing.ts";
import { startScsiDaemon } from "../../devices/scsi/testing.ts";
import { startSoundDaemon } from "../../devices/sound/testing.ts";
import { DaemonProcess } from "../integration/daemon_process.ts";
import { consoleTail, type GuestResult, startGuest } from "./guest.ts";

const VSOCK_MAIN = new URL("../../devices/vsock/main.ts", import.meta.url).pathname;
const MiB = 1 << 20;
/** The marker the first boot writes at the start of the scsi disk. */
const MARKER = "REBOOTED";

function expect(result: GuestResult, name: string, value: string): void {
  const got = result.results[name];
  if (got !== value) {
    throw new Error(`${name} is ${got}, expected ${value}\n${consoleTail(result.console, 60)}`);
  }
}

/** The same checks in each boot; results are named `boot<N>_…`. */
const SCRIPT = `
  set -u
  n=0; while ! ls /sys/block | grep -q '^sd' && [ $n -lt 150 ]; do sleep 0.2; n=$((n+1)); done
  disk=/dev/$(ls /sys/block | grep '^sd' | head -1)
  boot=1
  [ "$(dd if=$disk bs=${MARKER.length} count=1 2>/dev/null)" = "${MARKER}" ] && boot=2
  echo "@@RESULT boot\${boot}_rng_current $(cat /sys/class/misc/hw_random/rng_current)"
  echo "@@RESULT boot\${boot}_rng_bytes $(head -c 4096 /dev/hwrng | wc -c)"
  echo "boot\${boot}" | socat -t 5 - VSOCK-CONNECT:2:5000
  echo "@@RESULT boot\${boot}_vsock $?"
  dd if=/dev/urandom of=/tmp/w bs=64k count=16 2>/dev/null
  dd if=/tmp/w of=$disk bs=64k seek=1 oflag=direct 2>/dev/null
  dd if=$disk of=/tmp/r bs=64k skip=1 count=16 iflag=direct 2>/dev/null
  cmp -s /tmp/w /tmp/r
  echo "@@RESULT boot\${boot}_scsi $?"
  aplay -q -D hw:0 -t raw -f S16_LE -r 48000 -c 2 -d 1 /dev/zero
  echo "@@RESULT boot\${boot}_sound $?"
  bus=
  for d in /sys/bus/i2c/devices/i2c-*; do
    case "$(cat "$d/name")" in i2c_virtio*) bus=\${d##*/i2c-} ;; esac
  done
  i2cset -y $bus 0x20 0x10 0x\${boot}5 && echo "@@RESULT boot\${boot}_i2c $(i2cget -y $bus 0x20 0x10)"
  chip=$(gpiodetect | awk '/\\(8 lines\\)/ { print $1; exit }')
  echo "@@RESULT boot\${boot}_gpio $(gpioget --numeric -c $chip 2 3)"
  if [ $boot = 1 ]; then
    printf ${MARKER} | dd of=$disk conv=notrunc oflag=direct 2>/dev/null
    sync
    echo "@@RESULT boot1_rebooting"
    reboot -f
    sleep 60
  fi
`;

Deno.test("reboot e2e: rng, vsock, scsi, sound, i2c and gpio serve again after the guest reboots inside QEMU", async () => {
  const dir = await Deno.makeTempDir({ prefix: "reboot-e2e-" });
  const image = `${dir}/disk.img`;
  await Deno.writeFile(image, new Uint8Array(0));
  await Deno.truncate(image, 16 * MiB);
  await using rng = await startRngDaemon([]);
  await using scsi = await startScsiDaemon(["--log-level", "debug", image]);
  await using sound = await startSoundDaemon(["--backend", "null"]);
  await using i2c = await startI2cDaemon(["--simulated-device", "regs@0x20"], {
    logLevel: "info",
  });
  await using gpio = await startGpioDaemon("s8");
  await using control = await SimControl.connect(gpio.controlPath);
  await control.set(0, 2, 1);
  const vhostVsock = `${dir}/vsock.sock`;
  const uds = `${dir}/vm.vsock`;
  await using vsock = await DaemonProcess.start(VSOCK_MAIN, {
    args: ["--socket", vhostVsock, "--uds-path", uds, "--guest-cid", "3"],
    waitFor: [vhostVsock],
  });
  const listener = Deno.listen({ transport: "unix", path: `${uds}_5000` });
  const received = (async () => {
    const lines: string[] = [];
    for (let i = 0; i < 2; i++) {
      const conn = await listener.accept().catch(() => null);
      if (!conn) break;
      if (i === 1) listener.close();
      lines.push((await new Response(conn.readable).text()).trim());
    }
    return lines;
  })();
  try {
    const guest = await startGuest({
      modules: [
        "virtio_rng",
        "vmw_vsock_virtio_transport",
        "virtio_scsi",
        "sd_mod",
        "virtio_snd",
        "i2c_virtio",
        "i2c_dev",
        "gpio-virtio",
      ],
      tools: [
        "socat",
        "aplay",
        "/usr/share/alsa",
        "/usr/bin/dd",
        "/usr/bin/cmp",
        "i2cset",
        "i2cget",
        "gpiodetect",
        "gpioget",
      ],
      memoryMiB: 512,
      timeoutMs: 300_000,
      qemuArgs: [
        "-action",
        "reboot=reset",
        ...["-chardev", `socket,id=rng,path=${rng.socketPrefix}0`],
        ...["-device", "vhost-user-rng-pci,chardev=rng"],
        ...["-chardev", `socket,id=vsock,path=${vhostVsock}`],
        ...["-device", "vhost-user-vsock-pci,chardev=vsock"],
        ...["-chardev", `socket,id=scsi,path=${scsi.socket}`],
        ...["-device", "vhost-user-scsi-pci,chardev=scsi,num_queues=1"],
        ...["-chardev", `socket,id=snd,path=${sound.socket}`],
        ...["-device", "vhost-user-snd-pci,chardev=snd"],
        ...["-chardev", `socket,id=i2c,path=${i2c.socketPrefix}0`],
        ...["-device", "vhost-user-i2c-pci,chardev=i2c"],
        ...["-chardev", `socket,id=gpio,path=${gpio.socketPrefix}0`],
        ...["-device", "vhost-user-gpio-pci,chardev=gpio"],
      ],
      script: SCRIPT,
    });
    const result = await guest.result;
    assert.equal(result.stopReason, "done", consoleTail(result.console, 60));
    expect(result, "boot1_rebooting", "");
    for (const boot of [1, 2]) {
      expect(result, `boot${boot}_rng_current`, "virtio_rng.0");
      expect(result, `boot${boot}_rng_bytes`, "4096");
      expect(result, `boot${boot}_vsock`, "0");
      expect(result, `boot${boot}_scsi`, "0");
      expect(result, `boot${boot}_sound`, "0");
      expect(result, `boot${boot}_i2c`, `0x${boot}5`);
      expect(result, `boot${boot}_gpio`, "1 0");
    }
    assert.deepEqual(await received, ["boot1", "boot2"]);
    // One connection carried both boots (it closed once, when QEMU exited): the
    // rings were stopped and started again, with no RESET_DEVICE (see above).
    assert.equal(scsi.log.match(/front-end connection closed/g)?.length ?? 0, 1, scsi.log);
    assert.ok((scsi.log.match(/GET_VRING_BASE/g)?.length ?? 0) > 0, scsi.log);
    assert.doesNotMatch(scsi.log, /RESET_DEVICE/);
    for (const daemon of [rng, scsi, sound, vsock, i2c, gpio]) {
      assert.ok(daemon.running, `a daemon exited:\n${daemon.log}`);
    }
  } finally {
    try {
      listener.close();
    } catch {
      // Closed already (the guest connected twice).
    }
    await Deno.remove(dir, { recursive: true });
  }
});

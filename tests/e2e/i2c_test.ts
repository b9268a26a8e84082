// vhost-device-i2c under real QEMU (vhost-user-i2c-pci): the guest's
// i2c-virtio and i2c-dev drivers, i2c-tools and the at24 EEPROM driver use
// the daemon's simulated clients. Two boots against one daemon: the second,
// under bookworm's QEMU 7.2, proves the EEPROM contents written through at24
// in the first (QEMU 10) survive.
// Needs root (QEMU, the guest kit). Run: deno test --allow-all tests/e2e/i2c_test.ts
import assert from "node:assert/strict";
import { startI2cDaemon } from "../../devices/i2c/testing.ts";
import {
  assertGuestSucceeded,
  bootGuest,
  consoleTail,
  ensureGuestKit,
  type GuestResult,
  type QemuBinary,
} from "./guest.ts";

const I2C_TOOLS = ["i2cdetect", "i2cget", "i2cset", "i2ctransfer", "i2cdump"];

/** Finds the virtio adapter's bus number and binds at24 to the EEPROM at 0x50. */
const FIND_BUS = `
  bus=
  for d in /sys/bus/i2c/devices/i2c-*; do
    case "$(cat "$d/name")" in i2c_virtio*) bus=\${d##*/i2c-} ;; esac
  done
  [ -n "$bus" ] || { echo "no i2c_virtio adapter"; exit 1; }
  echo "@@RESULT bus_name $(cat /sys/bus/i2c/devices/i2c-$bus/name)"
`;
const BIND_AT24 = `
  echo 24c02 0x50 > /sys/bus/i2c/devices/i2c-$bus/new_device
  eeprom=/sys/bus/i2c/devices/$bus-0050/eeprom
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -e $eeprom ] && break; sleep 0.2; done
  echo "@@RESULT at24_driver $(basename "$(readlink /sys/bus/i2c/devices/$bus-0050/driver)")"
`;

function check(condition: boolean, message: string, result: GuestResult): void {
  if (!condition) {
    throw new Error(`${message}\nlast console lines:\n${consoleTail(result.console, 60)}`);
  }
}

Deno.test("i2c e2e: i2c-tools and at24 through i2c-virtio; EEPROM data survives a reboot, into QEMU 7.2", async () => {
  await using daemon = await startI2cDaemon([
    "--simulated-device",
    "eeprom@0x50",
    "--simulated-device",
    "eeprom@0x51",
    "--simulated-device",
    "regs@0x20",
  ], { logLevel: "info" });
  const socket = `${daemon.socketPrefix}0`;
  const kit = await ensureGuestKit();
  const guest = (script: string, qemu?: QemuBinary) =>
    bootGuest({
      qemu,
      modules: ["i2c_virtio", "i2c_dev", "at24"],
      tools: I2C_TOOLS,
      // A host this loaded can make the kernel's IO-APIC timer check fail under TCG (a panic).
      qemuArgs: [
        "-chardev",
        `socket,id=c0,path=${socket}`,
        "-device",
        "vhost-user-i2c-pci,chardev=c0",
      ],
      script: FIND_BUS + script,
    });

  const first = await guest(`
    # The whole 7-bit range, quick writes and reads as i2cdetect chooses them.
    echo "@@RESULT detected $(i2cdetect -y -a $bus | tail -n +2 | cut -c5- | tr ' ' '\\n' | grep -v -e '--' -e '^$' | tr '\\n' ' ')"
    echo "@@RESULT funcs_i2c $(i2cdetect -F $bus | grep '^I2C ' | awk '{print $2}')"
    # Byte and word data to the register file (SMBus transfers the guest emulates on I2C).
    i2cset -y $bus 0x20 0x10 0xab && echo "@@RESULT byte $(i2cget -y $bus 0x20 0x10)"
    i2cset -y $bus 0x20 0x30 0x1234 w && echo "@@RESULT word $(i2cget -y $bus 0x20 0x30 w)"
    echo "@@RESULT word_high $(i2cget -y $bus 0x20 0x31)"
    echo "@@RESULT id $(i2cget -y $bus 0x20 0xfe w)"
    i2cset -y $bus 0x20 0xfe 0x00 2>/dev/null; echo "@@RESULT readonly_rc $?"
    # A page write, then a combined write-then-read (repeated start).
    i2ctransfer -y $bus w6@0x51 0x08 0x01 0x02 0x03 0x04 0x05
    echo "@@RESULT xfer $(i2ctransfer -y $bus w1@0x51 0x08 r5)"
    echo "@@RESULT xfer_two $(i2ctransfer -y $bus w1@0x20 0x30 r2 w1@0x51 0x0a r1@0x51 | tr '\\n' ' ')"
    # Linux's i2c-virtio returns the count of messages before the first error, which
    # i2ctransfer reports as a partial transfer.
    echo "@@RESULT absent $(i2ctransfer -y $bus w1@0x33 0x00 r1 2>&1 | tr '\\n' ' ')"
    echo "@@RESULT dump_b $(i2cdump -y $bus 0x51 b | grep '^00:' | cut -c5-52)"
    echo "@@RESULT dump_i $(i2cdump -y $bus 0x51 i | grep '^00:' | cut -c5-52)"
    ${BIND_AT24}
    # 256 bytes through at24's eeprom file: written, read back, fingerprinted for the next boot.
    i=0; : > /tmp/pattern
    while [ $i -lt 16 ]; do printf 'vhost-i2c-%05d\\n' $(((i * 7919) % 100000)) >> /tmp/pattern; i=$((i + 1)); done
    echo "@@RESULT pattern_bytes $(wc -c < /tmp/pattern)"
    dd if=/tmp/pattern of=$eeprom bs=256 count=1 2>/dev/null; echo "@@RESULT write_rc $?"
    echo "@@RESULT written $(md5sum < /tmp/pattern | cut -d' ' -f1)"
    echo "@@RESULT readback $(md5sum < $eeprom | cut -d' ' -f1)"
    echo "@@RESULT detected_bound $(i2cdetect -y $bus | grep '^50:' | cut -c5-10)"
  `);
  assertGuestSucceeded(first);
  const r1 = first.results;
  check(r1.bus_name?.startsWith("i2c_virtio") ?? false, `bus name ${r1.bus_name}`, first);
  check(r1.detected?.trim() === "20 50 51", `i2cdetect found "${r1.detected}"`, first);
  check(r1.funcs_i2c === "yes", `I2C functionality ${r1.funcs_i2c}`, first);
  assert.equal(r1.byte, "0xab");
  assert.equal(r1.word, "0x1234");
  assert.equal(r1.word_high, "0x12", "a word is two registers on the wire");
  assert.equal(r1.id, "0x015a");
  assert.notEqual(r1.readonly_rc, "0", "a write to a read-only register fails");
  assert.equal(r1.xfer, "0x01 0x02 0x03 0x04 0x05");
  assert.equal(r1.xfer_two?.trim(), "0x34 0x12 0x03", "four messages, two clients, one transfer");
  assert.match(r1.absent ?? "", /only 0\/2 messages/);
  assert.equal(r1.dump_b, "ff ff ff ff ff ff ff ff 01 02 03 04 05 ff ff ff");
  assert.equal(r1.dump_i, r1.dump_b);
  check(r1.at24_driver === "at24", `at24 driver: ${r1.at24_driver}`, first);
  assert.equal(r1.pattern_bytes, "256");
  assert.equal(r1.write_rc, "0");
  assert.equal(r1.readback, r1.written);
  assert.equal(r1.detected_bound?.trim(), "UU 51");

  // The same daemon, a fresh guest, under bookworm's QEMU 7.2 (the older front-end we support):
  // at24 reads what the last guest wrote.
  const second = await guest(
    `
    ${BIND_AT24}
    echo "@@RESULT readback $(md5sum < $eeprom | cut -d' ' -f1)"
    echo "@@RESULT byte $(i2cget -y $bus 0x20 0x10)"
    echo "@@RESULT detected $(i2cdetect -y $bus | tail -n +2 | cut -c5- | tr ' ' '\\n' | grep -v -e '--' -e '^$' | tr '\\n' ' ')"
  `,
    kit.qemu72,
  );
  assertGuestSucceeded(second);
  assert.equal(second.results.at24_driver, "at24");
  assert.equal(second.results.readback, r1.written);
  assert.equal(second.results.byte, "0xab");
  assert.equal(second.results.detected?.trim(), "20 UU 51");
  assert.doesNotMatch(second.qemuStderr, /vhost|error/i, "QEMU 7.2 complained");
  assert.ok(daemon.running, daemon.log);
  assert.ok(!/rejected|WARN/.test(daemon.log), daemon.log);
});

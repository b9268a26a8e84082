// vhost-device-gpio against a real kernel GPIO chip: a guest with gpio-sim
// runs the daemon under Deno on /dev/gpiochipN through libgpiod, and the
// TypeScript front-end in the same guest (gpio_sim_guest.ts).
// Needs root (QEMU, the guest kit). Run: deno test --allow-all tests/e2e/gpio_sim_test.ts
import { assertGuestSucceeded, bootGuest, consoleTail } from "./guest.ts";

Deno.test("gpio e2e: the daemon in a guest on gpio-sim through libgpiod, driven by the TS front-end", async () => {
  const result = await bootGuest({
    deno: true,
    modules: ["gpio-sim"],
    // gpioinfo brings libgpiod.so.3 along (the daemon dlopens it) and shows the chip.
    tools: ["gpioinfo"],
    script: `
      mount -t configfs none /sys/kernel/config || exit 2
      C=/sys/kernel/config/gpio-sim/sim0
      mkdir $C $C/bank0 && echo 8 > $C/bank0/num_lines && echo vhost-test > $C/bank0/label || exit 3
      for pair in 0:led0 3:button 4:alarm 5:relay; do
        mkdir $C/bank0/line\${pair%%:*} && echo \${pair#*:} > $C/bank0/line\${pair%%:*}/name || exit 4
      done
      mkdir $C/bank0/line5/hog && echo hog > $C/bank0/line5/hog/name &&
        echo output-high > $C/bank0/line5/hog/direction || exit 5
      echo 1 > $C/live || exit 6
      chip=$(cat $C/bank0/chip_name)
      export GPIO_SIM_CHIP=$chip GPIO_SIM_SYSFS=/sys/devices/platform/$(cat $C/dev_name)/$chip
      gpioinfo -c $chip
      cd /project || exit 1
      deno test --allow-all --no-check tests/e2e/gpio_sim_guest.ts > /tmp/out 2>&1
      rc=$?
      tail -n 40 /tmp/out
      echo "@@RESULT summary $(grep -E '^(ok|FAILED) \\|' /tmp/out)"
      exit $rc
    `,
  });
  assertGuestSucceeded(result);
  const summary = result.results.summary ?? "";
  if (!/^ok \| 1 passed \| 0 failed/.test(summary)) {
    throw new Error(`deno test in the guest: ${summary}\n${consoleTail(result.console)}`);
  }
});

// vhost-device-rng under real QEMU: the guest's virtio_rng driver reads
// /dev/hwrng through our back-end. Needs root (QEMU, the guest kit).
// Run: deno test --allow-all tests/e2e/rng_test.ts
import assert from "node:assert/strict";
import { startRngDaemon } from "../../devices/rng/testing.ts";
import {
  assertGuestSucceeded,
  bootGuest,
  consoleTail,
  type GuestOptions,
  type GuestResult,
  startGuest,
} from "./guest.ts";

function rngGuest(socket: string, script: string): GuestOptions {
  return {
    modules: ["virtio_rng"],
    qemuArgs: [
      "-chardev",
      `socket,id=c0,path=${socket}`,
      "-device",
      "vhost-user-rng-pci,chardev=c0",
    ],
    script: `
      echo "@@RESULT rng_current $(cat /sys/class/misc/hw_random/rng_current)"
      ${script}
    `,
  };
}

function check(condition: boolean, message: string, result: GuestResult): void {
  if (!condition) {
    throw new Error(`${message}\nlast console lines:\n${consoleTail(result.console)}`);
  }
}

/** Reads `bytes` from /dev/hwrng into /tmp/r, timing it with /proc/uptime (10 ms ticks). */
function timedRead(bytes: number): string {
  return `
    start=$(cut -d' ' -f1 /proc/uptime)
    head -c ${bytes} /dev/hwrng > /tmp/r
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "@@RESULT bytes $(wc -c < /tmp/r)"
    echo "@@RESULT seconds $(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')"
  `;
}

/** Pearson's chi-square of byte counts against a uniform distribution. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / 256;
  return counts.reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
}

Deno.test("rng e2e: --socket-count 2 serves two guests at once, each within its share of -m", async () => {
  // 8192 B per 1000 ms over 2 sockets: 4096 B/s each, so 16 KiB takes ≥ 3 periods.
  await using daemon = await startRngDaemon(["-c", "2", "-m", "8192", "-p", "1000"], {
    socketCount: 2,
  });
  const results = await Promise.all(
    [0, 1].map((i) => bootGuest(rngGuest(`${daemon.socketPrefix}${i}`, timedRead(16384)))),
  );
  for (const result of results) {
    assertGuestSucceeded(result);
    check(
      result.results.rng_current?.startsWith("virtio_rng") ?? false,
      `rng_current is "${result.results.rng_current}"`,
      result,
    );
    check(result.results.bytes === "16384", `read ${result.results.bytes} bytes`, result);
    const seconds = Number(result.results.seconds);
    check(
      seconds >= 2.8 && seconds < 15,
      `16 KiB at 4096 B/s took ${seconds} s, expected about 3`,
      result,
    );
  }
  assert.ok(daemon.running, daemon.log);
});

Deno.test("rng e2e: random bytes; QEMU restarted twice and SIGKILLed mid-read; no fd leak", async () => {
  await using daemon = await startRngDaemon([]);
  const socket = `${daemon.socketPrefix}0`;
  const disconnected = (n: number) => daemon.waitForLog("waiting for a front-end", { count: n });

  // Boot 1: 64 KiB, checked byte by byte on the host.
  const first = await bootGuest(rngGuest(
    socket,
    `${timedRead(65536)}
    counts=$(od -An -v -tu1 /tmp/r |
      awk '{ for (i = 1; i <= NF; i++) c[$i]++ } END { for (k in c) printf "%s:%s,", k, c[k] }')
    echo "@@RESULT counts $counts"`,
  ));
  assertGuestSucceeded(first);
  check(
    first.results.rng_current?.startsWith("virtio_rng") ?? false,
    `rng_current is "${first.results.rng_current}"`,
    first,
  );
  check(first.results.bytes === "65536", `read ${first.results.bytes} bytes`, first);
  const counts = new Array<number>(256).fill(0);
  for (const pair of (first.results.counts ?? "").split(",").filter(Boolean)) {
    const [value, count] = pair.split(":").map(Number);
    counts[value] = count;
  }
  const missing = counts.filter((n) => n === 0).length;
  const chi2 = chiSquare(counts);
  // 255 degrees of freedom: mean 255, sd 22.6; 400 is beyond p = 1e-9.
  check(missing === 0 && chi2 < 400, `${missing} byte values missing, chi-square ${chi2}`, first);
  await disconnected(1);
  const fdsAfterFirst = daemon.fds();

  // Boot 2: a plain restart.
  const second = await bootGuest(rngGuest(socket, timedRead(4096)));
  assertGuestSucceeded(second);
  check(second.results.bytes === "4096", `read ${second.results.bytes} bytes`, second);
  await disconnected(2);

  // Boot 3: killed while reading.
  {
    await using guest = await startGuest(rngGuest(
      socket,
      `echo reading; while true; do head -c 65536 /dev/hwrng > /dev/null; done`,
    ));
    await guest.waitFor("reading");
    await new Promise((resolve) => setTimeout(resolve, 500));
    guest.kill("SIGKILL");
    const killed = await guest.result;
    assert.equal(killed.qemuStatus.signal, "SIGKILL");
  }
  await disconnected(3);

  // Boot 4: the same daemon still serves.
  const fourth = await bootGuest(rngGuest(socket, timedRead(4096)));
  assertGuestSucceeded(fourth);
  check(fourth.results.bytes === "4096", `read ${fourth.results.bytes} bytes`, fourth);
  await disconnected(4);

  assert.ok(daemon.running, daemon.log);
  await daemon.expectFds(fdsAfterFirst, { what: "the daemon's fds across restarts" });
});

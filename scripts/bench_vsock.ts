/**
 * Benchmark: vhost-device-vsock (hybrid vsock over Unix sockets) against
 * QEMU's built-in virtio-serial, in the same guest boot, carrying the same
 * bytes with the same tool (socat) in the guest: throughput both ways and
 * echo round-trip latency. Prints medians of repeated runs.
 *
 * Run (root: QEMU and the guest kit): deno run --allow-all scripts/bench_vsock.ts
 * Options: --mib N (per run, default 32), --runs N (default 5), --echoes N (default 300),
 * --tx-buffer-size BYTES and --poll-us N (passed to the daemon; default: the daemon's own
 * defaults), --daemon PATH (another checkout's devices/vsock/main.ts, for before/after)
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startGuest } from "../tests/e2e/guest.ts";
import { DaemonProcess } from "../tests/integration/daemon_process.ts";

const MIB = 1 << 20;
const MAIN = new URL("../devices/vsock/main.ts", import.meta.url).pathname;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads exactly `length` bytes; returns ms from the first byte to the last. */
async function receive(conn: Deno.Conn, length: number): Promise<number> {
  const buffer = new Uint8Array(256 * 1024);
  let got = 0;
  let start = 0;
  while (got < length) {
    const n = await conn.read(buffer.subarray(0, Math.min(buffer.length, length - got)));
    if (n === null) throw new Error(`end of file after ${got} of ${length} bytes`);
    if (got === 0) start = performance.now();
    got += n;
  }
  return performance.now() - start;
}

async function readUntilEof(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(65536);
  let got = 0;
  for (;;) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) return got;
    got += n;
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
}

/** Hybrid vsock connect to guest `port`, retrying while the guest is not listening yet. */
async function vsockConnect(uds: string, port: number): Promise<Deno.UnixConn> {
  for (let attempt = 0;; attempt++) {
    const conn = await Deno.connect({ transport: "unix", path: uds });
    await conn.write(new TextEncoder().encode(`CONNECT ${port}\n`));
    const reply = new Uint8Array(32);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(reply);
      if (n === null) break;
      text += new TextDecoder().decode(reply.subarray(0, n));
    }
    if (text.startsWith("OK ")) return conn;
    conn.close();
    if (attempt > 200) throw new Error(`guest port ${port} never accepted`);
    await delay(20);
  }
}

async function echo(conn: Deno.Conn, count: number): Promise<number[]> {
  const one = new Uint8Array([0x2a]);
  const back = new Uint8Array(1);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await conn.write(one);
    if ((await conn.read(back)) !== 1) throw new Error("echo ended");
    times.push(performance.now() - t);
  }
  return times;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mib: { type: "string", default: "32" },
      runs: { type: "string", default: "5" },
      echoes: { type: "string", default: "300" },
      "tx-buffer-size": { type: "string" },
      "poll-us": { type: "string" },
      daemon: { type: "string", default: MAIN },
    },
  });
  const mib = Number(values.mib);
  const runs = Number(values.runs);
  const echoes = Number(values.echoes);
  const bytes = mib * MIB;
  const dir = Deno.makeTempDirSync({ prefix: "vsock-bench-" });
  const socket = `${dir}/vhost.sock`;
  const uds = `${dir}/vm.vsock`;
  const serialPath = `${dir}/serial.sock`;
  const tuning = [
    ...(values["tx-buffer-size"] ? ["--tx-buffer-size", values["tx-buffer-size"]] : []),
    ...(values["poll-us"] ? ["--poll-us", values["poll-us"]] : []),
  ];
  const daemon = await DaemonProcess.start(values.daemon, {
    args: ["--socket", socket, "--uds-path", uds, ...tuning],
    waitFor: [socket],
    tempDir: dir,
  });
  const results = {
    vsockG2H: [] as number[],
    serialG2H: [] as number[],
    vsockH2G: [] as number[],
    serialH2G: [] as number[],
    vsockEcho: [] as number[],
    serialEcho: [] as number[],
    vsockConnectEcho: [] as number[],
  };
  try {
    const g2h = Deno.listen({ transport: "unix", path: `${uds}_6000` });
    const guest = await startGuest({
      modules: ["vmw_vsock_virtio_transport", "virtio_console"],
      tools: ["socat"],
      memoryMiB: 512,
      timeoutMs: 900_000,
      qemuArgs: [
        "-chardev",
        `socket,id=c0,path=${socket}`,
        "-device",
        "vhost-user-vsock-pci,chardev=c0",
        "-device",
        "virtio-serial-pci",
        "-chardev",
        `socket,id=s0,path=${serialPath},server=on,wait=off`,
        "-device",
        "virtserialport,chardev=s0,name=bench",
      ],
      script: `
        N=${bytes}
        S="socat -b 65536 -u"
        # No udev: find the port named "bench" (/dev/virtio-ports/bench on a full system).
        PORT=""
        for p in /dev/vport*p*; do
          [ "$(cat /sys/class/virtio-ports/\${p#/dev/}/name 2>/dev/null)" = bench ] && PORT=$p
        done
        [ -n "$PORT" ] || { ls -l /dev/vport*; exit 1; }
        echo "@@PHASE g2h"
        sleep 1
        for r in $(seq ${runs}); do
          $S OPEN:/dev/zero,readbytes=$N VSOCK-CONNECT:2:6000
          $S OPEN:/dev/zero,readbytes=$N OPEN:$PORT,wronly
        done
        for r in $(seq ${runs}); do
          $S VSOCK-LISTEN:6001 OPEN:/dev/null &
          v=$!
          echo "@@H2G vsock $r"
          wait $v
          $S OPEN:$PORT,rdonly,readbytes=$N OPEN:/dev/null
          echo ok > $PORT
        done
        socat VSOCK-LISTEN:6002 PIPE &
        echo "@@ECHO vsock"
        wait
        socat OPEN:$PORT PIPE &
        echo "@@ECHO serial"
        wait
        socat VSOCK-LISTEN:6003,fork PIPE &
        echo "@@ECHO connect"
        wait
      `,
    });
    const serial = await (async () => {
      for (let i = 0;; i++) {
        try {
          return await Deno.connect({ transport: "unix", path: serialPath });
        } catch (error) {
          if (i > 500) throw error;
          await delay(20);
        }
      }
    })();
    await guest.waitFor("@@PHASE g2h", { timeoutMs: 120_000 });
    for (let r = 0; r < runs; r++) {
      const conn = await g2h.accept();
      const ms = await receive(conn, bytes);
      conn.close();
      results.vsockG2H.push(bytes / MIB / (ms / 1000));
      results.serialG2H.push(bytes / MIB / ((await receive(serial, bytes)) / 1000));
    }
    const payload = new Uint8Array(bytes).fill(0x5a);
    for (let r = 1; r <= runs; r++) {
      await guest.waitFor(`@@H2G vsock ${r}`, { timeoutMs: 300_000 });
      const conn = await vsockConnect(uds, 6001);
      let t = performance.now();
      await writeAll(conn, payload);
      await conn.closeWrite();
      await readUntilEof(conn);
      results.vsockH2G.push(bytes / MIB / ((performance.now() - t) / 1000));
      conn.close();
      t = performance.now();
      await writeAll(serial, payload);
      const ok = new Uint8Array(3);
      await receive(serial, 3).catch(() => ok);
      results.serialH2G.push(bytes / MIB / ((performance.now() - t) / 1000));
    }
    await guest.waitFor("@@ECHO vsock");
    const echoConn = await vsockConnect(uds, 6002);
    results.vsockEcho = await echo(echoConn, echoes);
    echoConn.close();
    await guest.waitFor("@@ECHO serial");
    await delay(300);
    results.serialEcho = await echo(serial, echoes);
    serial.close();
    await guest.waitFor("@@ECHO connect");
    await delay(300);
    for (let i = 0; i < Math.max(10, echoes / 10); i++) {
      const t = performance.now();
      const conn = await vsockConnect(uds, 6003);
      await echo(conn, 1);
      conn.close();
      results.vsockConnectEcho.push(performance.now() - t);
    }
    guest.kill("SIGKILL");
    await guest.result;
    g2h.close();
  } catch (error) {
    console.error(`daemon log:\n${daemon.log}`);
    throw error;
  } finally {
    await daemon.stop();
  }
  const row = (name: string, ours: number[], theirs: number[] | null, unit: string) => {
    const a = median(ours);
    const b = theirs ? median(theirs) : NaN;
    const ratio = theirs ? (unit === "MB/s" ? a / b : b / a) : NaN;
    return `| ${name.padEnd(28)} | ${a.toFixed(unit === "MB/s" ? 1 : 3).padStart(10)} ${unit} | ${
      theirs
        ? `${b.toFixed(unit === "MB/s" ? 1 : 3).padStart(10)} ${unit}`
        : "       n/a".padEnd(15)
    } | ${Number.isNaN(ratio) ? "  n/a" : `${ratio.toFixed(2)}x`.padStart(5)} |`;
  };
  console.log(
    `\nvhost-device-vsock (${values.daemon}${
      tuning.length ? ` ${tuning.join(" ")}` : ", default configuration"
    }) vs virtio-serial, ` +
      `TCG guest, ${mib} MiB per run, median of ${runs} runs; ` +
      `latency: median of ${echoes} round trips (ratio > 1: vsock better)\n`,
  );
  console.log("| metric                       | vsock (ours)    | virtio-serial   | ratio |");
  console.log("|------------------------------|-----------------|-----------------|-------|");
  console.log(row("guest → host throughput", results.vsockG2H, results.serialG2H, "MB/s"));
  console.log(row("host → guest throughput", results.vsockH2G, results.serialH2G, "MB/s"));
  console.log(row("1-byte echo round trip", results.vsockEcho, results.serialEcho, "ms"));
  console.log(row("connect + echo (vsock only)", results.vsockConnectEcho, null, "ms"));
  console.log(
    `\nruns: vsock g2h ${results.vsockG2H.map((x) => x.toFixed(0)).join(" ")}; serial g2h ${
      results.serialG2H.map((x) => x.toFixed(0)).join(" ")
    }; vsock h2g ${results.vsockH2G.map((x) => x.toFixed(0)).join(" ")}; serial h2g ${
      results.serialH2G.map((x) => x.toFixed(0)).join(" ")
    } (MB/s = MiB/s)`,
  );
}

if (import.meta.main) await main();

/**
 * Benchmark (not a test) of vhost-device-i2c with a simulated 24C02 EEPROM:
 *
 * 1. transfers per second at queue depth 1 through the daemon (the
 *    TypeScript front-end over a real socket, memfd memory and eventfds),
 *    each a byte-data read as Linux sends it (a 1-byte write, then a 1-byte
 *    read, two chains with FAIL_NEXT on the first);
 * 2. in the same run, the same requests answered by an in-process handler
 *    (the same request decoding and simulated adapter, no process hop, no
 *    rings): the difference is the daemon's overhead;
 * 3. the time a Linux guest (QEMU TCG) takes to read the whole 256-byte
 *    EEPROM: through at24's `eeprom` file, with one `i2ctransfer`, and with
 *    `i2cdump` (256 byte-data transfers).
 *
 * Run: deno run --allow-all scripts/bench_i2c.ts [--transfers 20000] [--runs 3] [--no-guest]
 *
 * @module
 */

import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { MemoryRegion } from "../core/memory/guest_memory.ts";
import type { DescriptorChain } from "../core/virtio/descriptor_chain.ts";
import { writeSlices } from "../core/virtio/descriptor_chain.ts";
import { decodeRequest, VIRTIO_I2C_MSG_ERR, VIRTIO_I2C_MSG_OK } from "../devices/i2c/request.ts";
import { Eeprom24c02, SimulatedAdapter, type SimulatedClient } from "../devices/i2c/simulated.ts";
import { i2cSession, startI2cDaemon, transferChains } from "../devices/i2c/testing.ts";
import { assertGuestSucceeded, bootGuest } from "../tests/e2e/guest.ts";
import { median } from "./bench_rng.ts";

const EEPROM = 0x50;

/** Depth-1 byte-data reads through the daemon; returns transfers per second. */
async function throughDaemon(socket: string, transfers: number): Promise<number> {
  const session = await i2cSession(socket);
  try {
    for (let i = 0; i < 200; i++) {
      session.xfer({ address: EEPROM, write: [i & 0xff] }, { address: EEPROM, read: 1 });
    }
    const start = performance.now();
    for (let i = 0; i < transfers; i++) {
      const [, read] = session.xfer({ address: EEPROM, write: [i & 0xff] }, {
        address: EEPROM,
        read: 1,
      });
      if (read.status !== VIRTIO_I2C_MSG_OK) throw new Error(`transfer ${i} failed`);
    }
    return transfers / ((performance.now() - start) / 1000);
  } finally {
    session.close();
  }
}

/**
 * The same two chains laid out in plain memory, answered in this process.
 * Returns transfers per second of wall time and of this process's CPU time
 * (on a shared machine the wall time includes waiting for a CPU).
 */
function inProcess(transfers: number): { wall: number; cpu: number } {
  const chains = transferChains([{ address: EEPROM, write: [0] }, { address: EEPROM, read: 1 }]);
  const bytes = new Uint8Array(4096);
  const region = new MemoryRegion(
    { guestPhysAddr: 0, memorySize: bytes.length, userspaceAddr: 0, mmapOffset: 0 },
    { bytes },
  );
  let offset = 0;
  const slice = (length: number) => {
    offset += length;
    return { region, offset: offset - length, length };
  };
  const laid: DescriptorChain[] = chains.map((c, head) => {
    const readable = c.readable.map((b) => {
      const s = slice(b.length);
      bytes.set(b, s.offset);
      return s;
    });
    const writable = c.writable.map(slice);
    return {
      head,
      readable,
      writable,
      readableLength: readable.reduce((n, s) => n + s.length, 0),
      writableLength: writable.reduce((n, s) => n + s.length, 0),
    };
  });
  const adapter = new SimulatedAdapter(
    new Map<number, SimulatedClient>([[EEPROM, new Eeprom24c02()]]),
  );
  const start = performance.now();
  const cpuStart = cpuUsage();
  for (let i = 0; i < transfers; i++) {
    const requests = laid.map(decodeRequest);
    const messages = requests.map((r) => {
      if (r.kind !== "request") throw new Error(r.reason);
      return { address: r.address, read: r.read, data: r.data };
    });
    const { completed } = adapter.transfer(messages);
    laid.forEach((chain, j) => {
      const out = new Uint8Array(chain.writableLength);
      if (messages[j].read) out.set(messages[j].data);
      out[out.length - 1] = j < completed ? VIRTIO_I2C_MSG_OK : VIRTIO_I2C_MSG_ERR;
      writeSlices(chain.writable, out);
    });
  }
  const cpu = cpuUsage(cpuStart);
  return {
    wall: transfers / ((performance.now() - start) / 1000),
    cpu: transfers / ((cpu.user + cpu.system) / 1e6),
  };
}

/** Guest script: `repeat` whole-EEPROM reads three ways, timed by /proc/uptime (10 ms ticks). */
function guestScript(repeat: number): string {
  const timed = (name: string, command: string) => `
    s=$(cut -d' ' -f1 /proc/uptime)
    i=0; while [ $i -lt ${repeat} ]; do ${command} > /dev/null; i=$((i + 1)); done
    e=$(cut -d' ' -f1 /proc/uptime)
    echo "@@RESULT ${name} $(awk -v s="$s" -v e="$e" 'BEGIN { print (e - s) / ${repeat} }')"
  `;
  return `
    for d in /sys/bus/i2c/devices/i2c-*; do
      case "$(cat "$d/name")" in i2c_virtio*) bus=\${d##*/i2c-} ;; esac
    done
    ${timed("i2ctransfer", "i2ctransfer -y $bus w1@0x51 0x00 r256")}
    ${timed("i2cdump", "i2cdump -y $bus 0x51 b")}
    echo 24c02 0x50 > /sys/bus/i2c/devices/i2c-$bus/new_device
    eeprom=/sys/bus/i2c/devices/$bus-0050/eeprom
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -e $eeprom ] && break; sleep 0.2; done
    ${timed("at24", "dd if=$eeprom bs=256 count=1 2>/dev/null")}
  `;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      transfers: { type: "string", default: "20000" },
      runs: { type: "string", default: "3" },
      "no-guest": { type: "boolean", default: false },
    },
  });
  const transfers = Number(values.transfers);
  const runs = Number(values.runs);
  const daemon = await startI2cDaemon(
    ["--simulated-device", "eeprom@0x50", "--simulated-device", "eeprom@0x51"],
    { logLevel: "info" },
  );
  try {
    const daemonRates: number[] = [];
    const localRates: number[] = [];
    const localCpuRates: number[] = [];
    // Both paths warm (JIT) before measuring.
    inProcess(transfers);
    for (let run = 0; run < runs; run++) {
      daemonRates.push(await throughDaemon(`${daemon.socketPrefix}0`, transfers));
      const local = inProcess(transfers);
      localRates.push(local.wall);
      localCpuRates.push(local.cpu);
      console.error(
        `run ${run + 1}/${runs}: daemon ${daemonRates.at(-1)!.toFixed(0)}/s, ` +
          `in-process ${localRates.at(-1)!.toFixed(0)}/s`,
      );
    }
    const d = median(daemonRates);
    const l = median(localRates);
    const c = median(localCpuRates);
    console.log(
      `\nbyte-data reads (2 requests each) at depth 1, ${transfers} per run, median of ${runs}:\n`,
    );
    // The best run is the one least disturbed by other load on a shared machine.
    const row = (name: string, median: number, best: number) =>
      console.log(
        `| ${name} | ${median.toFixed(0)} | ${(1e6 / median).toFixed(1)} | ${best.toFixed(0)} | ${
          (1e6 / best).toFixed(1)
        } |`,
      );
    console.log("| path | transfers/s | µs per transfer | best run /s | best µs |");
    console.log("| ---- | ----------- | --------------- | ----------- | ------- |");
    row("through the daemon", d, Math.max(...daemonRates));
    row("in-process handler", l, Math.max(...localRates));
    row("in-process handler, CPU time", c, Math.max(...localCpuRates));
    console.log(
      `\ndaemon overhead: ${(1e6 / d - 1e6 / l).toFixed(1)} µs per transfer ` +
        `(${(l / d).toFixed(1)}x the in-process wall time)`,
    );
    if (!values["no-guest"]) {
      const repeat = 10;
      const result = await bootGuest({
        modules: ["i2c_virtio", "i2c_dev", "at24"],
        tools: ["i2ctransfer", "i2cdump"],
        kernelArgs: ["no_timer_check"],
        qemuArgs: [
          "-chardev",
          `socket,id=c0,path=${daemon.socketPrefix}0`,
          "-device",
          "vhost-user-i2c-pci,chardev=c0",
        ],
        script: guestScript(repeat),
      });
      assertGuestSucceeded(result);
      const ms = (name: string) => (Number(result.results[name]) * 1000).toFixed(1);
      console.log(`\nwhole 256-byte EEPROM read from a TCG guest, mean of ${repeat}:\n`);
      console.log("| how | ms |");
      console.log("| --- | -- |");
      console.log(`| at24 eeprom file (dd bs=256) | ${ms("at24")} |`);
      console.log(`| i2ctransfer w1 r256 (one transfer) | ${ms("i2ctransfer")} |`);
      console.log(`| i2cdump b (256 byte-data transfers) | ${ms("i2cdump")} |`);
    }
  } finally {
    await daemon.stop();
  }
}

/**
 * Benchmark (not a test): fio in one guest against the same tmpfs-backed
 * raw image served four ways at once: vhost-device-scsi as it runs by
 * default (`--io auto`: a tmpfs image is read and written inline), with
 * every operation on io_uring (`--io io-uring`, the measured alternative),
 * QEMU's built-in virtio-scsi-pci + scsi-hd, and qemu-storage-daemon's
 * vhost-user-blk export. Jobs: 4 KiB random read and write at depth 1 and
 * 32, 1 MiB sequential read at depth 8, all O_DIRECT through libaio, run
 * on each disk in turn for `--runs` rounds (medians reported), so a busy
 * host weighs on every variant alike. QEMU runs TCG here (no KVM): figures
 * are TCG-bound; compare ratios. First, the host side alone: 4 KiB reads of
 * the image through each way the daemon could issue them. Next to the
 * figures, the guest interrupts each disk cost per I/O (its controller's
 * MSI-X vectors in /proc/interrupts over the I/Os in /proc/diskstats): with a
 * single TCG vCPU, guest work per request decides.
 *
 * Run: deno task bench:scsi [--runs 3] [--runtime 5] [--mib 256] [--host-only] [--guest-only]
 * [--jobs randread-4k-qd32,...] (a subset of {@link JOBS}, by name)
 * [--alt="--io io-uring"] (the second configuration of ours: daemon flags)
 * [--alt-main PATH] (another checkout's devices/scsi/main.ts for that second
 * configuration, with `--alt=""` for its defaults: a same-run before/after)
 *
 * @module
 */

import { parseArgs } from "node:util";
import { AutoBlockIo, fileRoute } from "../devices/scsi/auto_block_io.ts";
import { type BlockIo, SyncBlockIo } from "../devices/scsi/block_io.ts";
import { startScsiDaemon } from "../devices/scsi/testing.ts";
import { UringBlockIo } from "../devices/scsi/uring_block_io.ts";
import { EventLoop } from "../core/event_loop.ts";
import { Logger } from "../core/log.ts";
import {
  addressOf,
  close,
  IoUring,
  IoUringOp,
  IovecList,
  openFile,
  preadv,
  preadv2,
  preadvOnHelperThread,
  RWF_NOWAIT,
  stableBuffer,
} from "../ffi/mod.ts";
import { assertGuestSucceeded, bootGuest } from "../tests/e2e/guest.ts";

/** Median of `values`. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One fio job: name, read/write pattern, block size, depth. */
export interface Job {
  /** fio job name, and the row's label. */
  readonly name: string;
  /** fio `--rw`. */
  readonly rw: "randread" | "randwrite" | "read";
  /** fio `--bs`. */
  readonly bs: string;
  /** fio `--iodepth`. */
  readonly depth: number;
}

/** The jobs the issue asks for. */
export const JOBS: readonly Job[] = [
  { name: "randread-4k-qd1", rw: "randread", bs: "4k", depth: 1 },
  { name: "randread-4k-qd32", rw: "randread", bs: "4k", depth: 32 },
  { name: "randwrite-4k-qd1", rw: "randwrite", bs: "4k", depth: 1 },
  { name: "randwrite-4k-qd32", rw: "randwrite", bs: "4k", depth: 32 },
  { name: "read-1m-qd8", rw: "read", bs: "1m", depth: 8 },
];

/** A device under test: how QEMU attaches it and how the guest finds its disk. */
interface Variant {
  /** Row label. */
  readonly name: string;
  /** QEMU arguments. */
  readonly qemuArgs: readonly string[];
  /** The PCI address of its controller (`10.0`): its disk and its interrupt vectors. */
  readonly pci: string;
}

/**
 * Guest script: finds each variant's disk, then for each round runs every
 * job on every disk in turn, so load on the host falls on all of them alike.
 */
function guestScript(
  variants: readonly Variant[],
  options: { rounds: number; runtime: number; jobs: readonly Job[] },
): string {
  // Each disk is found by the PCI slot of its controller, and so is its
  // virtio device, whose MSI-X vectors /proc/interrupts names virtioN-<queue>.
  const find = variants.map((v, i) => `
    for d in /sys/block/sd* /sys/block/vd*; do
      [ -e $d ] && readlink $d | grep -q 0000:00:${v.pci}/ && D${i}=\${d##*/}
    done
    V${i}=$(ls /sys/bus/pci/devices/0000:00:${v.pci}/ | grep -m1 '^virtio')
    echo "@@RESULT disk${i} $D${i} $V${i}"`).join("");
  const jobs = options.jobs.map((job) =>
    variants.map((_, i) => `
      i0=$(irqs $V${i}); n0=$(ios $D${i})
      # A hung job (of any variant) costs one value, not the run.
      out=$(timeout -s KILL ${
      options.runtime * 6 + 30
    } fio --name=${job.name} --filename=/dev/$D${i} --ioengine=libaio --direct=1 --rw=${job.rw} \
        --bs=${job.bs} --iodepth=${job.depth} --time_based --runtime=${options.runtime} \
        --ramp_time=1 --minimal 2>&1)
      i1=$(irqs $V${i}); n1=$(ios $D${i})
      # Terse v3: field 7 read KiB/s, 8 read IOPS, 48 write KiB/s, 49 write IOPS.
      echo "@@VALUE ${i} ${job.name} $(echo "$out" | awk -F';' '{ print $7 + $48, $8 + $49 }') $((i1 - i0)) $((n1 - n0))"`)
      .join("")
  ).join("");
  return `
    # Interrupts taken by every vector of virtio device $1 (all CPUs).
    irqs() {
      awk -v v="$1-" 'index($0, v) { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i }
        END { print s + 0 }' /proc/interrupts
    }
    # Reads plus writes completed by disk $1 (/proc/diskstats fields 4 and 8).
    ios() {
      awk -v d="$1" '$3 == d { print $4 + $8 }' /proc/diskstats
    }
    n=0
    while [ $(ls /sys/block | grep -cE '^(sd|vd)') -lt ${variants.length} ] && [ $n -lt 150 ]; do
      sleep 0.2; n=$((n + 1))
    done
    ${find}
    r=0
    while [ $r -lt ${options.rounds} ]; do
      ${jobs}
      r=$((r + 1))
    done
  `;
}

/** The jobs named in `list` (comma-separated), in {@link JOBS}' order. */
export function selectJobs(list: string): Job[] {
  const names = list.split(",").map((n) => n.trim()).filter((n) => n !== "");
  const unknown = names.filter((n) => !JOBS.some((j) => j.name === n));
  if (unknown.length > 0 || names.length === 0) {
    throw new Error(
      `--jobs: unknown job ${unknown.join(", ") || "(none given)"}; ` +
        `jobs are ${JOBS.map((j) => j.name).join(", ")}`,
    );
  }
  return JOBS.filter((j) => names.includes(j.name));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function filledImage(dir: string, mib: number): Promise<string> {
  const path = `${dir}/bench.img`;
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < mib; i++) {
    for (let at = 0; at < chunk.length; at += 65536) {
      crypto.getRandomValues(chunk.subarray(at, at + 65536));
    }
    await file.write(chunk);
  }
  file.close();
  return path;
}

/**
 * The host side alone: 4 KiB reads at random offsets of the tmpfs image,
 * one at a time and 32 at a time, through each way the daemon could issue
 * them. Returns printable rows.
 */
async function hostIoPaths(image: string, count: number): Promise<string[]> {
  const fd = openFile(image, { readOnly: true });
  const blocks = (await Deno.stat(image)).size / 4096;
  const buffers = Array.from({ length: 32 }, () => stableBuffer(4096));
  const iovs = buffers.map((b) => {
    const iov = new IovecList(1);
    iov.push(addressOf(b), 4096);
    return iov;
  });
  const offset = () => Math.floor(Math.random() * blocks) * 4096;
  const rows: string[] = [];
  // Warm up: the first pass over the file and the JIT are not what we measure.
  for (let i = 0; i < count; i++) preadv(fd, iovs[0], { offset: offset() });
  const time = async (name: string, depth: number, body: () => Promise<void> | void) => {
    const start = performance.now();
    await body();
    const us = ((performance.now() - start) * 1000) / count;
    rows.push(`| ${name} | ${depth} | ${us.toFixed(1)} | ${(1e6 / us).toFixed(0)} |`);
  };
  await time("preadv, synchronous (blocks the loop)", 1, () => {
    for (let i = 0; i < count; i++) preadv(fd, iovs[0], { offset: offset() });
  });
  try {
    await time("preadv2 RWF_NOWAIT, synchronous", 1, () => {
      for (let i = 0; i < count; i++) preadv2(fd, iovs[0], { offset: offset(), flags: RWF_NOWAIT });
    });
  } catch (error) {
    // tmpfs has no RWF_NOWAIT (EOPNOTSUPP): io_uring then hands every read to a kernel worker.
    rows.push(`| preadv2 RWF_NOWAIT | 1 | ${error instanceof Error ? error.message : error} | |`);
  }
  const ring = new IoUring(64);
  let inline = 0;
  await time("io_uring, submit then wait in io_uring_enter", 1, () => {
    for (let i = 0; i < count; i++) {
      ring.push({
        opcode: IoUringOp.READV,
        fd,
        offset: offset(),
        address: iovs[0].address,
        length: 1,
        userData: 0,
      });
      ring.submit();
      if (ring.reap(() => {}) === 0) ring.submit({ waitFor: 1 }), ring.reap(() => {});
      else inline++;
    }
  });
  ring.close();
  rows.push(
    `| (io_uring reads completed inline, during the submission) | 1 | ${
      (100 * inline / count).toFixed(0)
    } % | |`,
  );
  await time("preadv on a Deno helper thread (nonblocking FFI)", 1, async () => {
    for (let i = 0; i < count; i++) await preadvOnHelperThread(fd, iovs[0], { offset: offset() });
  });
  await time("preadv on Deno helper threads (nonblocking FFI)", 32, async () => {
    let next = 0;
    await Promise.all(iovs.map(async (iov) => {
      while (next++ < count) await preadvOnHelperThread(fd, iov, { offset: offset() });
    }));
  });
  const log = new Logger("bench", { level: "error" });
  for (
    const [name, make] of [
      [
        "the daemon's io_uring engine (event loop, eventfd)",
        (loop: EventLoop) => new UringBlockIo({ loop, log }),
      ],
      ["the daemon's sync engine (event loop)", () => new SyncBlockIo()],
      [
        "the daemon's default engine (auto: tmpfs inline, the rest io_uring)",
        (loop: EventLoop) =>
          new AutoBlockIo({
            loop,
            ring: new UringBlockIo({ loop, log }),
            routes: new Map([[fd, fileRoute(fd)]]),
          }),
      ],
    ] as const
  ) {
    for (const depth of [1, 32]) {
      const loop = new EventLoop(log);
      const io: BlockIo = make(loop);
      const running = loop.run();
      await time(name, depth, () =>
        new Promise<void>((resolve) => {
          let started = 0;
          let finished = 0;
          const issue = (slot: number): void => {
            started++;
            io.submit({ kind: "readv", fd, iov: iovs[slot], offset: offset() }, () => {
              finished++;
              if (finished === count) resolve();
              else if (started < count) issue(slot);
            });
          };
          for (let slot = 0; slot < depth; slot++) issue(slot);
          io.flush();
        }));
      io.close();
      loop.stop();
      await running;
      loop.close();
    }
  }
  close(fd);
  // The kernel wrote into `buffers` through raw addresses: they must stay
  // reachable until the last read, or the collector frees them under it.
  if (buffers.some((b) => b.length !== 4096)) throw new Error("a read buffer changed size");
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      runtime: { type: "string", default: "5" },
      mib: { type: "string", default: "256" },
      "host-only": { type: "boolean", default: false },
      "guest-only": { type: "boolean", default: false },
      jobs: { type: "string", default: JOBS.map((j) => j.name).join(",") },
      alt: { type: "string", default: "--io io-uring" },
      "alt-main": { type: "string" },
    },
  });
  const jobs = selectJobs(values.jobs);
  const runs = Number(values.runs);
  const runtime = Number(values.runtime);
  const mib = Number(values.mib);
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "bench-scsi-" });
  const image = await filledImage(dir, mib);
  if (!values["guest-only"]) {
    const hostRows = await hostIoPaths(image, 20000);
    console.log("\nHost side: 4 KiB random reads of the tmpfs image (20000 per row):\n");
    console.log("| path | depth | µs per read | reads/s |");
    console.log("| --- | --- | --- | --- |");
    for (const row of hostRows) console.log(row);
  }
  if (values["host-only"]) {
    await Deno.remove(dir, { recursive: true });
    Deno.exit(0);
  }
  const auto = await startScsiDaemon([image]);
  const altArgs = values.alt.split(" ").filter((a) => a !== "");
  const uring = await startScsiDaemon([...altArgs, image], { main: values["alt-main"] });
  const qsdSocket = `${dir}/qsd.sock`;
  const qsd = new Deno.Command("qemu-storage-daemon", {
    args: [
      "--blockdev",
      `driver=file,node-name=f0,filename=${image},cache.direct=off,locking=off`,
      "--export",
      `type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=${qsdSocket},writable=on`,
    ],
    stdin: "null",
  }).spawn();
  for (let i = 0; i < 200 && !(await exists(qsdSocket)); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // One guest sees every variant (same image file, jobs never overlap).
  const variants: Variant[] = [
    {
      name: "ours (default: --io auto)",
      qemuArgs: [
        "-chardev",
        `socket,id=c0,path=${auto.socket}`,
        "-device",
        "vhost-user-scsi-pci,chardev=c0,num_queues=1,addr=0x10",
      ],
      pci: "10.0",
    },
    {
      name: values["alt-main"] ? `baseline (${altArgs.join(" ")})` : `ours (${altArgs.join(" ")})`,
      qemuArgs: [
        "-chardev",
        `socket,id=c1,path=${uring.socket}`,
        "-device",
        "vhost-user-scsi-pci,chardev=c1,num_queues=1,addr=0x11",
      ],
      pci: "11.0",
    },
    {
      name: "QEMU virtio-scsi + scsi-hd",
      qemuArgs: [
        "-device",
        "virtio-scsi-pci,id=vs0,num_queues=1,addr=0x12",
        "-drive",
        `file=${image},format=raw,if=none,id=d0,file.locking=off`,
        "-device",
        "scsi-hd,drive=d0,bus=vs0.0",
      ],
      pci: "12.0",
    },
    {
      name: "qemu-storage-daemon vhost-user-blk",
      qemuArgs: [
        "-chardev",
        `socket,id=c3,path=${qsdSocket}`,
        "-device",
        "vhost-user-blk-pci,chardev=c3,num-queues=1,addr=0x13",
      ],
      pci: "13.0",
    },
  ];
  const results: { bw: number[]; iops: number[]; irqsPerIo: number[] }[][] = variants.map(
    () => jobs.map(() => ({ bw: [], iops: [], irqsPerIo: [] })),
  );
  try {
    const result = await bootGuest({
      modules: ["virtio_scsi", "sd_mod", "virtio_blk"],
      tools: ["fio"],
      memoryMiB: 512,
      timeoutMs: 3_600_000,
      qemuArgs: variants.flatMap((v) => v.qemuArgs),
      script: guestScript(variants, { rounds: runs, runtime, jobs }),
    });
    assertGuestSucceeded(result);
    console.error(JSON.stringify(result.results));
    for (const line of result.console.split("\n")) {
      const m = /^@@VALUE (\d+) (\S+) (\S+) (\S+) (\d+) (\d+)/.exec(line.trim());
      if (!m) continue;
      // A job killed by its timeout reports nothing: leave it out.
      if (Number(m[4]) === 0) continue;
      const entry = results[Number(m[1])][jobs.findIndex((j) => j.name === m[2])];
      entry.bw.push(Number(m[3]) * 1024);
      entry.iops.push(Number(m[4]));
      if (Number(m[6]) > 0) entry.irqsPerIo.push(Number(m[5]) / Number(m[6]));
    }
    const names = variants.map((v) => v.name);
    const builtin = 2;
    console.log(
      `\nfio in one guest (TCG, 1 vCPU), all four disks on the same ${mib} MiB tmpfs image, ` +
        `jobs interleaved across disks, ${runtime} s each, median of ${runs} rounds; ` +
        `IOPS, or MB/s for the 1 MiB job; (x) = ratio to ${names[builtin]}:\n`,
    );
    console.log(`| job | ${names.join(" | ")} |`);
    console.log(`| --- | ${names.map(() => "---").join(" | ")} |`);
    jobs.forEach((job, j) => {
      const value = (v: number) => {
        const entry = results[v][j];
        return job.bs === "1m" ? median(entry.bw) / 1e6 : median(entry.iops);
      };
      const base = value(builtin);
      const cells = variants.map((_, v) =>
        `${value(v).toFixed(0)} (${(value(v) / base).toFixed(2)}x)`
      );
      console.log(`| ${job.name} | ${cells.join(" | ")} |`);
    });
    console.log(
      "\nGuest interrupts per I/O (every MSI-X vector of the disk's controller, " +
        "/proc/interrupts over /proc/diskstats, whole fio run), median of the rounds:\n",
    );
    console.log(`| job | ${names.join(" | ")} |`);
    console.log(`| --- | ${names.map(() => "---").join(" | ")} |`);
    jobs.forEach((job, j) => {
      const cells = variants.map((_, v) => median(results[v][j].irqsPerIo).toFixed(3));
      console.log(`| ${job.name} | ${cells.join(" | ")} |`);
    });
  } finally {
    await auto.stop();
    await uring.stop();
    qsd.kill("SIGTERM");
    await qsd.status;
    await Deno.remove(dir, { recursive: true });
  }
}

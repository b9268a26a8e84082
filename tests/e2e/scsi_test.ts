// vhost-device-scsi under real QEMU: the guest's virtio_scsi, sd_mod and sg
// drivers use our target, and sg3-utils, lsscsi, fio, e2fsprogs and
// blkdiscard check it. Three boots: (1) the whole command set, fio verify,
// ext4, discard, read-only; (2) QEMU SIGKILLed during flushed writes;
// (3) a new QEMU against the same daemon, next to QEMU's own scsi-hd on the
// same image, to compare their answers. Needs root (QEMU, the guest kit).
// Run: deno test --allow-all tests/e2e/scsi_test.ts
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startScsiDaemon } from "../../devices/scsi/testing.ts";
import {
  assertGuestSucceeded,
  bootGuest,
  consoleTail,
  type GuestResult,
  startGuest,
} from "./guest.ts";

const MiB = 1 << 20;
const MODULES = ["virtio_scsi", "sd_mod", "sg", "crc32c_generic", "ext4"];
const TOOLS = [
  "lsscsi",
  "sg_inq",
  "sg_vpd",
  "sg_readcap",
  "sg_modes",
  "sg_luns",
  "sg_opcodes",
  "sg_raw",
  "sg_verify",
  "fio",
  "mkfs.ext4",
  "e2fsck",
  "/usr/sbin/blkdiscard",
  "/usr/bin/dd",
  "/usr/bin/md5sum",
];

function vhostScsi(socket: string, id: string, queues = 1): string[] {
  return [
    "-chardev",
    `socket,id=${id},path=${socket}`,
    "-device",
    `vhost-user-scsi-pci,chardev=${id},num_queues=${queues}`,
  ];
}

/** The lines the guest printed between `@@BEGIN name` and `@@END name`. */
function section(result: GuestResult, name: string): string {
  const lines = result.console.split("\n").map((l) => l.replace(/\r$/, ""));
  const start = lines.indexOf(`@@BEGIN ${name}`);
  const end = lines.indexOf(`@@END ${name}`, start);
  if (start < 0 || end < 0) throw new Error(`no section ${name}\n${consoleTail(result.console)}`);
  return lines.slice(start + 1, end).join("\n");
}

/** With SCSI_E2E_CONSOLE=<dir>, keeps each boot's console there for a look after a failure. */
async function keepConsole(result: GuestResult, name: string): Promise<void> {
  const dir = Deno.env.get("SCSI_E2E_CONSOLE");
  if (dir) await Deno.writeTextFile(`${dir}/${name}.log`, result.console);
}

function expect(result: GuestResult, name: string, value: string): void {
  const got = result.results[name];
  if (got !== value) {
    throw new Error(`${name} is ${got}, expected ${value}\n${consoleTail(result.console, 60)}`);
  }
}

async function sparseImage(size: number, fill?: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "scsi-e2e-", suffix: ".img" });
  const file = await Deno.open(path, { write: true });
  if (fill) await file.write(fill);
  await file.truncate(size);
  file.close();
  return path;
}

/** Shell: `$1` is the size in 512-byte sectors; prints the /dev node of that disk. */
const FIND_DISK = `
  disk() { for d in /sys/block/sd*; do [ "$(cat $d/size)" = "$1" ] && echo /dev/\${d##*/} && return; done; }
  wait_disks() { n=0; while [ $(ls /sys/block | grep -c '^sd') -lt $1 ] && [ $n -lt 150 ]; do sleep 0.2; n=$((n+1)); done; }
`;

function run(name: string, command: string): string {
  return `echo "@@BEGIN ${name}"; ${command} 2>&1; echo "@@RESULT ${name}_rc $?"; echo "@@END ${name}"`;
}

Deno.test("scsi e2e: sg3-utils, lsscsi, fio crc32c verify over 3 LUNs, ext4, blkdiscard, read-only", async () => {
  const roData = Uint8Array.from({ length: MiB }, (_, i) => (i * 13 + (i >> 12)) & 0xff);
  const a = await sparseImage(64 * MiB);
  const b = await sparseImage(48 * MiB);
  const c = await sparseImage(32 * MiB);
  const r = await sparseImage(16 * MiB, roData);
  const roBefore = await Deno.readFile(r);
  await using rw = await startScsiDaemon(["--num-queues", "2", a, b, c]);
  await using ro = await startScsiDaemon(["--read-only", r]);
  try {
    const result = await bootGuest({
      modules: MODULES,
      tools: TOOLS,
      cpus: 2,
      memoryMiB: 384,
      timeoutMs: 400_000,
      qemuArgs: [...vhostScsi(rw.socket, "c0", 2), ...vhostScsi(ro.socket, "c1")],
      script: `
        ${FIND_DISK}
        wait_disks 4
        A=$(disk 131072); B=$(disk 98304); C=$(disk 65536); R=$(disk 32768)
        echo "@@RESULT disks $A $B $C $R"
        ${run("lsscsi", "lsscsi")}
        ${run("inquiry", "sg_inq $A")}
        ${run("vpd_sp", "sg_vpd -p 0x00 $A")}
        ${run("vpd_sn", "sg_vpd -p 0x80 $A")}
        ${run("vpd_di", "sg_vpd -p 0x83 $A")}
        ${run("vpd_bl", "sg_vpd -p 0xb0 $A")}
        ${run("vpd_bdc", "sg_vpd -p 0xb1 $A")}
        ${run("vpd_lbpv", "sg_vpd -p 0xb2 $A")}
        ${run("readcap", "sg_readcap -l $A")}
        ${run("modes", "sg_modes -a $A")}
        ${run("luns", "sg_luns $A")}
        ${run("opcodes", "sg_opcodes $A")}
        echo "@@RESULT mq $(ls -d /sys/block/\${A##*/}/mq/* | wc -l)"
        echo "@@RESULT cache $(cat /sys/block/\${A##*/}/device/scsi_disk/*/cache_type)"
        # Linux's cache_type attribute sends MODE SELECT with the caching page's WCE changed.
        CT=$(ls -d /sys/block/\${A##*/}/device/scsi_disk/*)/cache_type
        echo "write through" > $CT; echo "@@RESULT cache_wt $(cat $CT)"
        ${run("modes_wt", "sg_modes -p 8 $A")}
        echo "write back" > $CT; echo "@@RESULT cache_wb $(cat $CT)"
        ${
        run(
          "fio",
          "fio --ioengine=libaio --direct=1 --iodepth=32 --rw=randwrite --bs=4k --size=8M " +
            "--verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting " +
            "--name=a --filename=$A --name=b --filename=$B --name=c --filename=$C",
        )
      }
        ${
        run(
          "ext4",
          "mkfs.ext4 -q -F $B && mkdir -p /mnt && mount -t ext4 $B /mnt && " +
            "dd if=/dev/urandom of=/mnt/f bs=1M count=8 && sum=$(md5sum < /mnt/f) && umount /mnt && " +
            'e2fsck -fn $B && mount -t ext4 $B /mnt && [ "$(md5sum < /mnt/f)" = "$sum" ] && umount /mnt',
        )
      }
        dd if=/dev/urandom of=$C bs=1M count=16 oflag=direct 2>/dev/null
        zero=$(dd if=/dev/zero bs=1M count=32 2>/dev/null | md5sum)
        [ "$(dd if=$C bs=1M count=32 iflag=direct 2>/dev/null | md5sum)" != "$zero" ] && echo "@@RESULT written yes"
        ${run("blkdiscard", "/usr/sbin/blkdiscard -v $C")}
        [ "$(dd if=$C bs=1M count=32 iflag=direct 2>/dev/null | md5sum)" = "$zero" ] && echo "@@RESULT discarded_zero yes"
        echo "@@RESULT ro_sysfs $(cat /sys/block/\${R##*/}/ro)"
        dd if=/dev/zero of=$R bs=4096 count=1 oflag=direct 2>/dev/null; echo "@@RESULT ro_dd_rc $?"
        dd if=/dev/zero of=/tmp/z bs=512 count=1 2>/dev/null
        R_SG=/dev/$(ls /sys/block/\${R##*/}/device/scsi_generic)
        ${run("ro_raw", "sg_raw -s 512 -i /tmp/z $R_SG 2a 00 00 00 00 00 00 00 01 00")}
        echo "@@RESULT ro_md5 $(dd if=$R bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
        # VERIFY with BYTCHK=1: the image's own first 4 KiB compare equal; zeros miscompare (14).
        dd if=$R of=/tmp/ro4k bs=4096 count=1 iflag=direct 2>/dev/null
        dd if=/dev/zero of=/tmp/z4k bs=4096 count=1 2>/dev/null
        sg_verify -r --count=8 --ndo=4096 --in=/tmp/ro4k $R; echo "@@RESULT verify_rc $?"
        sg_verify -r -q --count=8 --ndo=4096 --in=/tmp/z4k $R; echo "@@RESULT miscompare_rc $?"
      `,
    });
    await keepConsole(result, "boot1");
    assertGuestSucceeded(result);
    assert.match(section(result, "lsscsi"), /disk\s+rust-vmm\s+vhost-user-scsi/);
    assert.equal(
      section(result, "lsscsi").split("\n").filter((l) => l.includes("rust-vmm")).length,
      4,
    );
    assert.match(section(result, "inquiry"), /Vendor identification: rust-vmm/);
    for (const page of ["[sn]", "[di]", "[bl]", "[bdc]", "[lbpv]"]) {
      assert.ok(section(result, "vpd_sp").includes(page), `page ${page} listed`);
    }
    assert.match(section(result, "vpd_sn"), /Unit serial number: [0-9a-f]{16}/);
    assert.match(
      section(result, "vpd_di"),
      /designator type: NAA, {2}code set: Binary\s+0x3[0-9a-f]{15}/,
    );
    assert.match(section(result, "vpd_bl"), /Maximum unmap LBA count: 2097152/);
    assert.match(section(result, "vpd_lbpv"), /Unmap command supported \(LBPU\): 1/);
    assert.match(section(result, "readcap"), /Last LBA=131071 .*Number of logical blocks=131072/s);
    assert.match(section(result, "readcap"), /Logical block length=512 bytes/);
    assert.match(section(result, "readcap"), /lbpme=1, lbprz=1/);
    assert.match(section(result, "modes"), /WP=0, DpoFua=1/);
    assert.match(section(result, "modes"), /Caching, page_control: current\s+00\s+08 12 04/);
    assert.match(section(result, "luns"), /Lun list length = 24/);
    assert.match(section(result, "opcodes"), /Unmap/);
    for (
      const name of [
        "lsscsi",
        "inquiry",
        "vpd_sn",
        "vpd_di",
        "readcap",
        "modes",
        "luns",
        "fio",
        "ext4",
        "blkdiscard",
      ]
    ) {
      expect(result, `${name}_rc`, "0");
    }
    expect(result, "mq", "2");
    expect(result, "cache", "write back");
    expect(result, "cache_wt", "write through");
    assert.match(section(result, "modes_wt"), /Caching, page_control: current\s+00\s+08 12 00/);
    expect(result, "cache_wb", "write back");
    expect(result, "verify_rc", "0");
    expect(result, "miscompare_rc", "14");
    expect(result, "written", "yes");
    expect(result, "discarded_zero", "yes");
    // The discarded image gave its blocks back to the host file system.
    const allocated = ((await Deno.stat(c)).blocks ?? 0) * 512;
    assert.ok(allocated < MiB, `${allocated} bytes still allocated after blkdiscard`);
    expect(result, "ro_sysfs", "1");
    assert.notEqual(result.results.ro_dd_rc, "0", "a write to the read-only disk failed");
    assert.match(section(result, "ro_raw"), /Data protect|Write protected/i);
    expect(result, "ro_md5", createHash("md5").update(roData).digest("hex"));
    assert.deepEqual(await Deno.readFile(r), roBefore);
    assert.ok(rw.running && ro.running);
  } finally {
    for (const path of [a, b, c, r]) await Deno.remove(path);
  }
});

/** 32 KiB: blocks 8i…8i+7, each "block NNNNNNNNN\n" × 256. */
function batch(i: number): Uint8Array {
  const text = Array.from(
    { length: 8 },
    (_, k) => `block ${String(i * 8 + k).padStart(9, "0")}\n`.repeat(256),
  )
    .join("");
  return new TextEncoder().encode(text);
}

Deno.test("scsi e2e: QEMU SIGKILLed during writes loses nothing flushed; a new QEMU is served; answers compared with scsi-hd", async () => {
  const k = await sparseImage(64 * MiB);
  await using daemon = await startScsiDaemon([k]);
  try {
    // Boot 2: flushed batches until killed.
    const guest = await startGuest({
      modules: MODULES,
      tools: ["/usr/bin/dd"],
      timeoutMs: 300_000,
      qemuArgs: vhostScsi(daemon.socket, "c0"),
      script: `
        ${FIND_DISK}
        wait_disks 1
        D=$(disk 131072)
        i=0
        while [ $i -lt 1500 ]; do
          awk -v b=$i 'BEGIN { for (k = 0; k < 8; k++) { s = sprintf("block %09d\\n", b * 8 + k); for (j = 0; j < 256; j++) printf "%s", s } }' > /tmp/batch
          dd if=/tmp/batch of=$D bs=32768 seek=$i count=1 conv=fsync 2>/dev/null || exit 1
          echo "@@RESULT flushed $i"
          i=$((i + 1))
        done
      `,
    });
    await guest.waitFor(/^@@RESULT flushed 40$/, { timeoutMs: 240_000 });
    guest.kill("SIGKILL");
    const killed = await guest.result;
    await keepConsole(killed, "boot2");
    assert.equal(killed.stopReason, "killed");
    const flushed = Math.max(
      ...[...killed.console.matchAll(/@@RESULT flushed (\d+)/g)].map((m) => Number(m[1])),
    );
    assert.ok(flushed >= 40);
    await daemon.waitForLog("waiting for a front-end", { timeoutMs: 30_000 });
    const image = await Deno.readFile(k);
    for (let i = 0; i <= flushed; i++) {
      const at = i * 32768;
      assert.deepEqual(
        image.subarray(at, at + 32768),
        batch(i),
        `batch ${i} of ${flushed} is in the image`,
      );
    }

    // Boot 3: a new QEMU, the same daemon; QEMU's scsi-hd on the same image beside it.
    const names = ["inq", "sp", "sn", "di", "bl", "bdc", "lbpv", "readcap", "modes", "opcodes"];
    const commands: Record<string, string> = {
      inq: "sg_inq $DEV",
      sp: "sg_vpd -p 0x00 $DEV",
      sn: "sg_vpd -p 0x80 $DEV",
      di: "sg_vpd -p 0x83 $DEV",
      bl: "sg_vpd -p 0xb0 $DEV",
      bdc: "sg_vpd -p 0xb1 $DEV",
      lbpv: "sg_vpd -p 0xb2 $DEV",
      readcap: "sg_readcap -l $DEV",
      modes: "sg_modes -a $DEV",
      opcodes: "sg_opcodes $DEV",
    };
    const dump = (who: string) => names.map((n) => run(`${who}_${n}`, commands[n])).join("\n");
    const result = await bootGuest({
      modules: MODULES,
      tools: [...TOOLS.filter((t) => t.startsWith("sg_")), "/usr/bin/dd", "/usr/bin/md5sum"],
      timeoutMs: 300_000,
      qemuArgs: [
        ...vhostScsi(daemon.socket, "c0"),
        "-device",
        "virtio-scsi-pci,id=vs0",
        "-drive",
        `file=${k},format=raw,if=none,id=d0,discard=unmap,file.locking=off`,
        "-device",
        "scsi-hd,drive=d0,bus=vs0.0",
      ],
      script: `
        ${FIND_DISK}
        wait_disks 2
        for d in /sys/block/sd*; do
          case "$(cat $d/device/vendor)" in rust-vmm*) OURS=/dev/\${d##*/};; QEMU*) THEIRS=/dev/\${d##*/};; esac
        done
        echo "@@RESULT md5 $(dd if=$OURS bs=32768 count=${
        flushed + 1
      } iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
        DEV=$OURS
        ${dump("ours")}
        DEV=$THEIRS
        ${dump("qemu")}
      `,
    });
    await keepConsole(result, "boot3");
    assertGuestSucceeded(result);
    const expected = new Uint8Array(32768 * (flushed + 1));
    for (let i = 0; i <= flushed; i++) expected.set(batch(i), i * 32768);
    expect(result, "md5", createHash("md5").update(expected).digest("hex"));
    for (const n of ["inq", "readcap", "modes"]) {
      expect(result, `ours_${n}_rc`, "0");
      expect(result, `qemu_${n}_rc`, "0");
    }
    // Both read the same capacity from the same image.
    const capacity = (who: string) =>
      /Number of logical blocks=(\d+)/.exec(section(result, `${who}_readcap`))?.[1];
    assert.equal(capacity("ours"), capacity("qemu"));
    // The differences, for the README's table.
    const report = names.map((n) =>
      `==== ${n}\n--- ours\n${section(result, `ours_${n}`)}\n--- scsi-hd\n${
        section(result, `qemu_${n}`)
      }`
    ).join("\n");
    const out = Deno.env.get("SCSI_COMPARE_OUT");
    if (out) await Deno.writeTextFile(out, report);
    assert.ok(daemon.running);
  } finally {
    await Deno.remove(k);
  }
});

// vhost-device-vsock with a real Linux guest (QEMU TCG, vhost-user-vsock-pci):
// bulk transfers both ways, concurrency, abrupt ends on either side and
// short-connection churn, and SOCK_SEQPACKET messages both ways (the
// daemon runs with --seqpacket, QEMU with seqpacket=on), all in one boot.
// Run: deno test --allow-all tests/e2e/vsock_test.ts (root: QEMU, guest kit)
import assert from "node:assert/strict";
import { consoleTail, type GuestResult, startGuest } from "./guest.ts";
import { DaemonProcess } from "../integration/daemon_process.ts";
import {
  acceptUnix,
  close,
  connectUnix,
  listenUnix,
  receiveMessage,
  sendMessage,
  setNonBlocking,
  stableBuffer,
} from "../../ffi/mod.ts";
import { pattern } from "../../devices/vsock/testing/guest_stream.ts";
import { buildSeqpeer, SEQ_SIZES, SEQPEER_PATH } from "./vsock_seqpeer.ts";

const MAIN = new URL("../../devices/vsock/main.ts", import.meta.url).pathname;

/** Polls a non-blocking call until it yields something (the ffi calls do not wait). */
async function poll<T>(what: string, attempt: () => T | null, timeoutMs = 300_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = attempt();
    if (value !== null) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** One SOCK_SEQPACKET message from non-blocking `fd` (empty at end of file). */
async function seqMessage(fd: number, buffer: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const got = await poll("a SOCK_SEQPACKET message", () => receiveMessage(fd, buffer));
  if (got.truncated) throw new Error(`a ${got.length}-byte message did not fit`);
  return buffer.slice(0, got.length);
}
const MIB = 1 << 20;
const BULK = 64 * MIB;

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads a stream to its end (or its reset), returning the bytes. */
async function readAll(conn: Deno.Conn, limit = BULK + MIB): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(limit);
  let got = 0;
  const buffer = new Uint8Array(256 * 1024);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      break; // reset
    }
    if (n === null) break;
    out.set(buffer.subarray(0, Math.min(n, limit - got)), got);
    got = Math.min(got + n, limit);
  }
  return out.subarray(0, got);
}

function deterministic(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let x = 0x9e3779b9;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(i, x >>> 0, true);
  }
  return out;
}

Deno.test("e2e vsock: a Linux guest over vhost-user-vsock-pci", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-e2e-" });
  const socket = `${dir}/vhost.sock`;
  const uds = `${dir}/vm.vsock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: ["--socket", socket, "--uds-path", uds, "--guest-cid", "3", "--seqpacket"],
    waitFor: [socket],
    env: { RUST_LOG: "info" },
    tempDir: dir,
  });
  const listeners: Deno.UnixListener[] = [];
  const fds: number[] = [];
  let result: GuestResult | null = null;
  try {
    const seqpeer = await buildSeqpeer(dir);
    // Host listeners for guest → host connections, one port per check.
    const listen = (port: number) => {
      const l = Deno.listen({ transport: "unix", path: `${uds}_${port}` });
      listeners.push(l);
      return l;
    };
    const bulkIn = listen(5000);
    const concurrent = listen(5002);
    const killed = listen(5003);
    const vanishing = listen(5004);
    const churn = listen(5005);

    // 1. guest → host, 64 MiB.
    const bulkReceived = (async () => {
      const conn = await bulkIn.accept();
      const data = await readAll(conn);
      conn.close();
      return { length: data.length, sha: await sha256(data) };
    })();
    // 3. 16 concurrent guest → host connections of 1 MiB each.
    const concurrentReceived = (async () => {
      const shas: Promise<string>[] = [];
      for (let i = 0; i < 16; i++) {
        const conn = await concurrent.accept();
        shas.push(
          readAll(conn).then((d) => {
            conn.close();
            return d.length === MIB ? sha256(d) : Promise.resolve(`short ${d.length}`);
          }),
        );
      }
      return (await Promise.all(shas)).sort();
    })();
    // 4. The guest kills its sender mid-way: the host reads end of file.
    const killedReceived = (async () => {
      const conn = await killed.accept();
      const data = await readAll(conn, 1 << 30);
      conn.close();
      return data.length;
    })();
    // 5. The host reader disappears mid-way: the guest's sender fails.
    const vanished = (async () => {
      const conn = await vanishing.accept();
      const buffer = new Uint8Array(65536);
      let got = 0;
      while (got < 4 * MIB) got += (await conn.read(buffer)) ?? 0;
      conn.close();
      return got;
    })();
    // 7. SOCK_SEQPACKET, guest → host: each message arrives whole (1 B to 64 KiB),
    // then the host answers with as many for the guest to check.
    // (A guest that never connects leaves the host waiting, but the guest's own
    // "@@LISTENING_SEQ" comes regardless and the test fails on the results.)
    const seqListener = listenUnix(`${uds}_6000`, 4, { seqpacket: true });
    fds.push(seqListener);
    const seqBuffer = stableBuffer(256 * 1024);
    const seqReceived = (async () => {
      const fd = await poll("the guest's SEQPACKET connection", () => acceptUnix(seqListener));
      fds.push(fd);
      const sizes: number[] = [];
      let intact = 0;
      for (const [i, size] of SEQ_SIZES.entries()) {
        const message = await seqMessage(fd, seqBuffer);
        sizes.push(message.length);
        if (message.length === size && equal(message, pattern(size, i + 1))) intact++;
      }
      for (const [i, size] of SEQ_SIZES.entries()) {
        await poll("room to send", () => sendMessage(fd, pattern(size, 100 + i)) || null);
      }
      return { sizes, intact };
    })();

    // 6. 1000 short connections; the daemon's fd count must not grow.
    let churnFdsBefore = 0;
    const churnCount = (async () => {
      let count = 0;
      for (;;) {
        const conn = await churn.accept().catch(() => null);
        if (!conn) break;
        count++;
        if (count === 20) churnFdsBefore = daemon.fdCount();
        void readAll(conn, 64).then(() => conn.close());
        if (count === 1000) break;
      }
      return count;
    })();

    const guest = await startGuest({
      modules: ["vmw_vsock_virtio_transport"],
      tools: ["socat", "sha256sum"],
      files: { [SEQPEER_PATH]: seqpeer },
      memoryMiB: 768,
      timeoutMs: 600_000,
      qemuArgs: [
        "-chardev",
        `socket,id=c0,path=${socket}`,
        "-device",
        // seqpacket=on: QEMU refuses to start unless the daemon offers the feature.
        "vhost-user-vsock-pci,chardev=c0,seqpacket=on",
      ],
      script: `
        set -u
        S="socat -b 65536"
        # 7./8. SOCK_SEQPACKET both ways, and a host-initiated one echoed back.
        chmod +x ${SEQPEER_PATH}
        ${SEQPEER_PATH} send 2 6000 || echo "@@RESULT seq_send_rc $?"
        # (a failed start still wakes the host, whose connect then fails at once)
        ${SEQPEER_PATH} echo 6001 || echo "@@RESULT seq_echo_rc $? @@LISTENING_SEQ 6001"
        dd if=/dev/urandom of=/tmp/out bs=1M count=64 2>/dev/null
        echo "@@RESULT out_sha $(sha256sum /tmp/out | cut -d' ' -f1)"
        t0=$(date +%s)
        $S -u FILE:/tmp/out VSOCK-CONNECT:2:5000 || echo "@@RESULT bulk_out_failed $?"
        echo "@@RESULT bulk_out_s $(( $(date +%s) - t0 ))"

        # 2. host → guest
        $S -u VSOCK-LISTEN:5001 CREATE:/tmp/in &
        lp=$!
        sleep 1
        echo "@@LISTENING 5001"
        wait $lp || echo "@@RESULT bulk_in_failed $?"
        echo "@@RESULT in_sha $(sha256sum /tmp/in | cut -d' ' -f1)"
        rm -f /tmp/in

        # 3. concurrent
        for i in $(seq 0 15); do
          dd if=/tmp/out bs=1M count=1 skip=$i 2>/dev/null > /tmp/c$i
          echo "@@RESULT c$i $(sha256sum /tmp/c$i | cut -d' ' -f1)"
        done
        for i in $(seq 0 15); do $S -u FILE:/tmp/c$i VSOCK-CONNECT:2:5002 & done
        wait
        echo "@@RESULT concurrent_done 1"

        # 4. guest kills its sender
        $S -u /dev/zero VSOCK-CONNECT:2:5003 &
        kp=$!
        sleep 2
        kill -9 $kp
        wait $kp 2>/dev/null
        echo "@@RESULT killed_done 1"

        # 5. host vanishes: socat must end with an error, not hang
        timeout 60 $S -u /dev/zero VSOCK-CONNECT:2:5004
        echo "@@RESULT vanish_rc $?"

        # 6. churn
        i=0
        while [ $i -lt 1000 ]; do
          echo x | socat -u - VSOCK-CONNECT:2:5005 || echo "@@RESULT churn_fail_$i $?"
          i=$((i + 1))
        done
        echo "@@RESULT churn_done $i"
        sleep 1
        echo "@@CHURN_DONE"
        sleep 2
      `,
    });

    // 8. SOCK_SEQPACKET, host → guest through <uds>_seqpacket: every message echoed whole.
    await guest.waitFor("@@LISTENING_SEQ 6001", { timeoutMs: 300_000 });
    const seq = connectUnix(`${uds}_seqpacket`, { seqpacket: true });
    fds.push(seq);
    setNonBlocking(seq, true);
    sendMessage(seq, new TextEncoder().encode("CONNECT 6001\n"));
    const seqOk = new TextDecoder().decode(await seqMessage(seq, seqBuffer));
    let echoed = 0;
    for (const [i, size] of SEQ_SIZES.entries()) {
      const message = pattern(size, 200 + i);
      await poll("room to send", () => sendMessage(seq, message) || null);
      if (equal(await seqMessage(seq, seqBuffer), message)) echoed++;
    }
    close(fds.splice(fds.indexOf(seq), 1)[0]);

    // 2. host → guest, 64 MiB, once the guest listens.
    await guest.waitFor("@@LISTENING 5001", { timeoutMs: 300_000 });
    const payload = deterministic(BULK);
    const expectedIn = await sha256(payload);
    const conn = await Deno.connect({ transport: "unix", path: uds });
    await conn.write(new TextEncoder().encode("CONNECT 5001\n"));
    const ok = new Uint8Array(64);
    const n = (await conn.read(ok)) ?? 0;
    assert.equal(new TextDecoder().decode(ok.subarray(0, n)), "OK 5001\n");
    const t0 = performance.now();
    for (let at = 0; at < BULK;) at += await conn.write(payload.subarray(at, at + 1 * MIB));
    conn.close();
    const inSeconds = (performance.now() - t0) / 1000;

    await guest.waitFor("@@CHURN_DONE", { timeoutMs: 400_000 });
    await delay(500);
    const churnFdsAfter = daemon.fdCount();
    result = await guest.result;
    const r = result.results;
    const fail = (message: string) =>
      new Error(`${message}\nlast console lines:\n${consoleTail(result!.console)}`);

    if (result.exitCode !== 0) throw fail(`guest script exit ${result.exitCode}`);
    const bulk = await bulkReceived;
    assert.equal(bulk.length, BULK, "64 MiB guest → host");
    if (bulk.sha !== r.out_sha) throw fail(`guest → host sha ${bulk.sha} != ${r.out_sha}`);
    if (r.in_sha !== expectedIn) throw fail(`host → guest sha ${r.in_sha} != ${expectedIn}`);
    assert.equal(r.seq_error, undefined, `vsock_seqpeer failed: ${r.seq_error}`);
    const seqOut = await seqReceived;
    assert.deepEqual(seqOut.sizes, SEQ_SIZES, "guest → host SEQPACKET message sizes");
    assert.equal(seqOut.intact, SEQ_SIZES.length, "guest → host SEQPACKET message bytes");
    assert.equal(r.seq_in_good, String(SEQ_SIZES.length), "host → guest SEQPACKET messages");
    assert.equal(seqOk, "OK 6001\n");
    assert.equal(echoed, SEQ_SIZES.length, "host-initiated SEQPACKET messages echoed whole");
    assert.equal(r.seq_echoed, String(SEQ_SIZES.length));
    const expectedChunks = Array.from({ length: 16 }, (_, i) => r[`c${i}`]).sort();
    assert.deepEqual(await concurrentReceived, expectedChunks, "16 concurrent transfers");
    assert.ok((await killedReceived) > 0, "bytes before the kill");
    assert.ok((await vanished) >= 4 * MIB);
    assert.notEqual(r.vanish_rc, "0", "the guest's sender saw the host go");
    assert.notEqual(r.vanish_rc, "124", "the guest's sender did not hang");
    assert.equal(await churnCount, 1000);
    assert.equal(r.churn_done, "1000");
    assert.equal(
      Object.keys(r).filter((k) => k.startsWith("churn_fail")).length,
      0,
      "every short connection worked",
    );
    assert.ok(
      churnFdsAfter <= churnFdsBefore,
      `daemon fds ${churnFdsBefore} after 20 connections, ${churnFdsAfter} after 1000`,
    );
    console.log(
      `guest→host 64 MiB in ~${r.bulk_out_s}s, host→guest 64 MiB in ${inSeconds.toFixed(1)}s, ` +
        `fds ${churnFdsBefore}→${churnFdsAfter}, boot-to-done ${
          (result.totalMs / 1000).toFixed(1)
        }s`,
    );
  } finally {
    listeners.forEach((l) => l.close());
    fds.forEach((fd) => close(fd));
    await daemon.stop();
    if (Deno.env.get("VSOCK_E2E_LOG")) console.log(daemon.log);
  }
});

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Integration tests: the daemon as a child process, the TypeScript vhost-user
// front-end playing a Linux guest, host programs as Unix sockets in this process.
import assert from "node:assert/strict";
import {
  acceptUnix,
  close,
  connectUnix,
  listenUnix,
  setNonBlocking,
  write,
} from "../../ffi/mod.ts";
import { bit } from "../../core/protocol/constants.ts";
import {
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from "../../core/virtio/features.ts";
import {
  headerBytes,
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE,
  VIRTIO_VSOCK_SHUTDOWN_F_SEND,
} from "./packet.ts";
import { FakeGuest, type Packet } from "./testing/fake_guest.ts";
import {
  concat,
  GuestStream,
  hostRead,
  hostSeesEof,
  pattern,
  pumpUntil,
  readSome,
} from "./testing/guest_stream.ts";
import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const BOTH = VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE | VIRTIO_VSOCK_SHUTDOWN_F_SEND;
const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** Starts the daemon (log level from VSOCK_TEST_LOG, default info) once `waitFor` exist. */
function startDaemon(args: string[], waitFor: string[]): Promise<DaemonProcess> {
  const env = { RUST_LOG: Deno.env.get("VSOCK_TEST_LOG") ?? "info" };
  return DaemonProcess.start(MAIN, { args, waitFor, env });
}

/** A temp dir with the daemon's socket paths. */
function paths(): { dir: string; socket: string; uds: string } {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-it-" });
  return { dir, socket: `${dir}/vhost.sock`, uds: `${dir}/vm.vsock` };
}

/** Guest connects to host port `hostPort` (a listener at `<uds>_<hostPort>`); returns both ends. */
function guestConnect(
  guest: FakeGuest,
  options: { listener: number; hostPort: number; guestPort: number; bufAlloc?: number },
): { stream: GuestStream; host: number } {
  const stream = new GuestStream(guest, {
    port: options.guestPort,
    peerPort: options.hostPort,
    bufAlloc: options.bufAlloc,
  });
  stream.send(VIRTIO_VSOCK_OP_REQUEST);
  const reply = stream.next();
  assert.equal(reply.header.op, VIRTIO_VSOCK_OP_RESPONSE, "RESPONSE to the REQUEST");
  let host: number | null = null;
  pumpUntil(guest, () => (host = acceptUnix(options.listener)) !== null, {
    what: "the host accept",
  });
  return { stream, host: host! };
}

/** Host connects through the hybrid socket to guest port `guestPort`; guest accepts. */
function hostConnect(
  guest: FakeGuest,
  options: { uds: string; guestPort: number; bufAlloc?: number },
): { stream: GuestStream; host: number } {
  const host = connectUnix(options.uds);
  setNonBlocking(host, true);
  write(host, new TextEncoder().encode(`CONNECT ${options.guestPort}\n`));
  const request = guest.take((p) =>
    p.header.op === VIRTIO_VSOCK_OP_REQUEST && p.header.dstPort === options.guestPort
  );
  const stream = new GuestStream(guest, {
    port: options.guestPort,
    peerPort: request.header.srcPort,
    bufAlloc: options.bufAlloc,
  });
  stream.peerBufAlloc = request.header.bufAlloc;
  stream.peerFwdCnt = request.header.fwdCnt;
  stream.send(VIRTIO_VSOCK_OP_RESPONSE);
  const ok = new TextDecoder().decode(hostRead(guest, host, `OK ${options.guestPort}\n`.length));
  assert.equal(ok, `OK ${options.guestPort}\n`);
  return { stream, host };
}

async function withDaemon(
  extraArgs: string[],
  body: (ctx: { guest: FakeGuest; daemon: DaemonProcess; uds: string; dir: string }) => void,
  options: { tx?: number } = {},
): Promise<string> {
  const { dir, socket, uds } = paths();
  const args = ["--socket", socket, "--uds-path", uds, "--guest-cid", "7", ...extraArgs];
  if (options.tx) args.push("--tx-buffer-size", String(options.tx));
  const daemon = await startDaemon(args, [socket, uds]);
  try {
    const guest = await FakeGuest.attach(socket);
    try {
      body({ guest, daemon, uds, dir });
    } finally {
      guest.close();
    }
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
  return daemon.log;
}

Deno.test("vsock: config space, features and queues as rust-vmm's", async () => {
  await withDaemon([], ({ guest }) => {
    assert.equal(guest.cid, 7);
    const offered = guest.frontend.backendFeatures;
    for (const feature of [VIRTIO_F_VERSION_1, VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_RING_F_EVENT_IDX]) {
      assert.ok(offered & bit(feature), `feature ${feature} offered`);
    }
    assert.equal(offered & bit(VIRTIO_RING_F_INDIRECT_DESC), 0n, "no INDIRECT_DESC");
    assert.equal(guest.frontend.getQueueNum(), 3);
  });
});

Deno.test("vsock: guest connects to <uds>_<port>; data both ways; clean close", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const listener = listenUnix(`${uds}_1234`, 16);
    try {
      const { stream, host } = guestConnect(guest, { listener, hostPort: 1234, guestPort: 40000 });
      setNonBlocking(host, true);
      const out = pattern(100_000, 1);
      stream.write(out);
      assert.deepEqual(hostRead(guest, host, out.length), out);
      const back = pattern(50_000, 2);
      assert.equal(write(host, back), back.length);
      assert.deepEqual(stream.readBytes(back.length), back);
      // The guest closes: SHUTDOWN both, answered by RST; the host reads end of file.
      stream.shutdown(BOTH);
      assert.equal(stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
      assert.ok(hostSeesEof(guest, host));
      close(host);
    } finally {
      close(listener);
    }
  });
});

Deno.test("vsock: refused connects, unknown connections and foreign CIDs", async () => {
  const log = await withDaemon([], ({ guest }) => {
    // Nothing listens at <uds>_999: RST.
    const s = new GuestStream(guest, { port: 40001, peerPort: 999 });
    s.send(VIRTIO_VSOCK_OP_REQUEST);
    assert.equal(s.next().header.op, VIRTIO_VSOCK_OP_RST);
    // RW for no connection: RST. RST for no connection: nothing.
    const t = new GuestStream(guest, { port: 40002, peerPort: 998 });
    t.send(VIRTIO_VSOCK_OP_RW, new Uint8Array([1, 2, 3]));
    assert.equal(t.next().header.op, VIRTIO_VSOCK_OP_RST);
    t.send(VIRTIO_VSOCK_OP_RST);
    // A packet claiming another source CID is dropped with a log line.
    guest.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 1, dstPort: 999, srcCid: 8 });
    // A chain shorter than a header, a header whose len lies: no crash.
    guest.sendRaw([new Uint8Array(10)]);
    const liar = headerBytes({
      srcCid: guest.cid,
      dstCid: 2,
      srcPort: 5,
      dstPort: 6,
      len: 1000,
      type: 1,
      op: VIRTIO_VSOCK_OP_RW,
      flags: 0,
      bufAlloc: 0,
      fwdCnt: 0,
    });
    guest.sendRaw([liar, new Uint8Array(10)]);
    // Unknown socket type: RST.
    guest.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 7, dstPort: 999, type: 2 });
    const packets = guest.drain(300);
    assert.deepEqual(
      packets.map((p) => [p.header.op, p.header.dstPort]),
      [[VIRTIO_VSOCK_OP_RST, 5], [VIRTIO_VSOCK_OP_RST, 7]],
    );
    assert.equal(guest.txInFlight, 0, "every tx chain was returned");
  });
  assert.match(log, /source CID 8/);
  assert.match(log, /less than a header/);
});

Deno.test("vsock: host CONNECT <port> reaches the guest; OK carries the guest port", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const { stream, host } = hostConnect(guest, { uds, guestPort: 5000 });
    const out = pattern(70_000, 3);
    assert.equal(write(host, out), out.length);
    assert.deepEqual(stream.readBytes(out.length), out);
    const back = pattern(30_000, 4);
    stream.write(back);
    assert.deepEqual(hostRead(guest, host, back.length), back);
    // The host closes: the guest gets SHUTDOWN both; its RST ends the connection.
    close(host);
    const shutdown = stream.nextControl();
    assert.equal(shutdown.header.op, VIRTIO_VSOCK_OP_SHUTDOWN);
    assert.equal(shutdown.header.flags, BOTH);
    stream.send(VIRTIO_VSOCK_OP_RST);
    // A host program for a port nobody answers: the guest's RST closes it.
    const refused = connectUnix(uds);
    setNonBlocking(refused, true);
    write(refused, new TextEncoder().encode("connect 6000\n"));
    const request = guest.take((p) => p.header.op === VIRTIO_VSOCK_OP_REQUEST);
    assert.equal(request.header.dstPort, 6000);
    guest.send({
      op: VIRTIO_VSOCK_OP_RST,
      srcPort: 6000,
      dstPort: request.header.srcPort,
    });
    assert.ok(hostSeesEof(guest, refused));
    close(refused);
    // A malformed line is refused.
    const bad = connectUnix(uds);
    setNonBlocking(bad, true);
    write(bad, new TextEncoder().encode("HELLO 1\n"));
    assert.ok(hostSeesEof(guest, bad));
    close(bad);
  });
});

Deno.test("vsock: half-close in each direction", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const listener = listenUnix(`${uds}_77`, 4);
    try {
      const { stream, host } = guestConnect(guest, { listener, hostPort: 77, guestPort: 41000 });
      setNonBlocking(host, true);
      // Guest SHUTDOWN SEND: the host reads end of file, and can still answer.
      stream.write(new TextEncoder().encode("request"));
      stream.shutdown(VIRTIO_VSOCK_SHUTDOWN_F_SEND);
      assert.deepEqual(new TextDecoder().decode(hostRead(guest, host, 7)), "request");
      assert.ok(hostSeesEof(guest, host));
      write(host, new TextEncoder().encode("reply"));
      assert.deepEqual(new TextDecoder().decode(stream.readBytes(5)), "reply");
      // Host closes: SHUTDOWN both; the guest's SHUTDOWN is answered with RST.
      close(host);
      const last = stream.nextControl();
      assert.equal(last.header.op, VIRTIO_VSOCK_OP_SHUTDOWN);
      stream.shutdown(BOTH);
      assert.equal(stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
    } finally {
      close(listener);
    }
  });
});

Deno.test("vsock: credit: a host that stops reading stalls only its own connection", async () => {
  const TX = 8192;
  await withDaemon([], ({ guest, uds }) => {
    const listener = listenUnix(`${uds}_88`, 4);
    try {
      const slow = guestConnect(guest, { listener, hostPort: 88, guestPort: 42000 });
      const fast = guestConnect(guest, { listener, hostPort: 88, guestPort: 42001 });
      setNonBlocking(slow.host, true);
      setNonBlocking(fast.host, true);
      assert.equal(slow.stream.peerBufAlloc, TX, "buf_alloc is --tx-buffer-size");
      // Fill the slow host's socket buffer and ours: the guest runs out of credit.
      let pushed = 0;
      for (let round = 0; round < 400 && slow.stream.peerCredit > 0; round++) {
        const n = Math.min(slow.stream.peerCredit, 4096);
        slow.stream.send(VIRTIO_VSOCK_OP_RW, pattern(n, round));
        pushed += n;
        guest.drain(2).forEach((p) => guest.inbox.push(p));
        // Credit updates arrive while the kernel buffer still takes bytes.
        while (guest.inbox.some((p) => slow.stream.matches(p))) slow.stream.next(0);
      }
      assert.equal(slow.stream.peerCredit, 0, `credit exhausted after ${pushed} bytes`);
      // The other connection is unaffected.
      const data = pattern(100_000, 9);
      fast.stream.write(data);
      assert.deepEqual(hostRead(guest, fast.host, data.length), data);
      // Sending beyond credit is a protocol violation: RST.
      const over = guestConnect(guest, { listener, hostPort: 88, guestPort: 42002 });
      // (the slow one recovers first: the host drains it and credit returns)
      let drained = 0;
      pumpUntil(guest, () => {
        const chunk = readSome(slow.host);
        drained += chunk?.length ?? 0;
        return drained === pushed;
      }, { what: "draining the slow host" });
      pumpUntil(guest, () => {
        while (guest.inbox.some((p) => slow.stream.matches(p))) slow.stream.next(0);
        return slow.stream.peerCredit === TX;
      }, { what: "credit to come back" });
      close(over.host);
      close(slow.host);
      close(fast.host);
    } finally {
      close(listener);
    }
  }, { tx: TX });
});

Deno.test("vsock: packets written together reach each host stream whole and in order, also when it fills", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const listener = listenUnix(`${uds}_90`, 4);
    try {
      const a = guestConnect(guest, { listener, hostPort: 90, guestPort: 44000 });
      const b = guestConnect(guest, { listener, hostPort: 90, guestPort: 44001 });
      setNonBlocking(a.host, true);
      setNonBlocking(b.host, true);
      // Odd sizes, runs of packets per connection, and hosts that read nothing yet: the
      // device gathers each run into one write, and what a full socket refuses waits in
      // its buffer (200 KB each is within the 256 KiB of credit, beyond the socket's).
      const total = 200_000;
      const dataA = pattern(total, 1);
      const dataB = pattern(total, 2);
      let sentA = 0;
      let sentB = 0;
      for (let i = 0; sentA < total || sentB < total; i++) {
        const [stream, data, sent] = i % 5 < 3
          ? [a.stream, dataA, sentA]
          : [b.stream, dataB, sentB];
        const n = Math.min(3001 + (i % 7) * 211, total - sent);
        if (n <= 0) continue;
        stream.send(VIRTIO_VSOCK_OP_RW, data.subarray(sent, sent + n));
        if (stream === a.stream) sentA += n;
        else sentB += n;
      }
      assert.deepEqual(hostRead(guest, a.host, total), dataA);
      assert.deepEqual(hostRead(guest, b.host, total), dataB);
      close(a.host);
      close(b.host);
    } finally {
      close(listener);
    }
  });
});

Deno.test("vsock: a large host write fills many rx buffers in one go, in order", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const { stream, host } = hostConnect(guest, { uds, guestPort: 5002 });
    const out = pattern(300_000, 6);
    let written = 0;
    pumpUntil(guest, () => {
      written += write(host, out.subarray(written)) ?? 0;
      return written === out.length;
    }, { what: "the host write" });
    assert.deepEqual(stream.readBytes(out.length), out);
    close(host);
  });
});

Deno.test("vsock: credit: the device never exceeds the guest's buf_alloc", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const { stream, host } = hostConnect(guest, { uds, guestPort: 5001, bufAlloc: 10_000 });
    const out = pattern(50_000, 5);
    assert.equal(write(host, out), out.length);
    // Exactly the credit arrives, then a CREDIT_REQUEST.
    let request: Packet | null = null;
    while (request === null) {
      const p = stream.next();
      if (p.header.op === VIRTIO_VSOCK_OP_CREDIT_REQUEST) request = p;
      else assert.equal(p.header.op, VIRTIO_VSOCK_OP_RW);
    }
    assert.equal(stream.received, 10_000);
    assert.equal(guest.drain(100).filter((p) => stream.matches(p)).length, 0, "nothing more");
    // The guest app reads: CREDIT_UPDATE; the rest flows (and more requests come).
    stream.send(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
    assert.deepEqual(stream.readBytes(out.length), out);
    close(host);
  });
});

Deno.test("vsock: a guest exceeding our credit is reset", async () => {
  const log = await withDaemon([], ({ guest, uds }) => {
    const listener = listenUnix(`${uds}_89`, 4);
    try {
      const { stream, host } = guestConnect(guest, { listener, hostPort: 89, guestPort: 43000 });
      // The host never reads: 4 KiB buffer + the kernel's socket buffer, then RST.
      let reset = false;
      for (let i = 0; i < 2000 && !reset; i++) {
        stream.send(VIRTIO_VSOCK_OP_RW, new Uint8Array(4096));
        reset = guest.drain(1).some((p) => {
          if (!stream.matches(p)) return false;
          return p.header.op === VIRTIO_VSOCK_OP_RST;
        });
      }
      assert.ok(reset, "RST after the overflow");
      close(host);
    } finally {
      close(listener);
    }
  }, { tx: 4096 });
  assert.match(log, /beyond the credit/);
});

Deno.test("vsock: 64 concurrent connections, both directions, interleaved", async () => {
  await withDaemon([], ({ guest, uds }) => {
    const listener = listenUnix(`${uds}_2000`, 128);
    try {
      const conns = [];
      for (let i = 0; i < 32; i++) {
        conns.push(guestConnect(guest, { listener, hostPort: 2000, guestPort: 50000 + i }));
        conns.push(hostConnect(guest, { uds, guestPort: 3000 + i }));
      }
      conns.forEach((c) => setNonBlocking(c.host, true));
      const size = 20_000;
      // Everyone writes in both directions before anyone reads.
      conns.forEach((c, i) => {
        assert.equal(write(c.host, pattern(size, 1000 + i)), size);
        c.stream.write(pattern(size, 2000 + i), 4096);
      });
      conns.forEach((c, i) => {
        assert.deepEqual(c.stream.readBytes(size), pattern(size, 1000 + i), `conn ${i} to guest`);
        assert.deepEqual(
          hostRead(guest, c.host, size),
          pattern(size, 2000 + i),
          `conn ${i} to host`,
        );
      });
      conns.forEach((c) => close(c.host));
      for (const c of conns) {
        const p = c.stream.nextControl();
        assert.equal(p.header.op, VIRTIO_VSOCK_OP_SHUTDOWN);
        c.stream.send(VIRTIO_VSOCK_OP_RST);
      }
    } finally {
      close(listener);
    }
  });
});

Deno.test("vsock: short connections leave no descriptors behind", async () => {
  await withDaemon([], ({ guest, uds, daemon }) => {
    const listener = listenUnix(`${uds}_4000`, 128);
    try {
      const cycle = (i: number) => {
        const a = guestConnect(guest, { listener, hostPort: 4000, guestPort: 60000 + i });
        a.stream.write(new Uint8Array([i & 0xff]));
        assert.deepEqual(hostRead(guest, a.host, 1), new Uint8Array([i & 0xff]));
        a.stream.shutdown(BOTH);
        assert.equal(a.stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
        close(a.host);
        const b = hostConnect(guest, { uds, guestPort: 7000 + i });
        close(b.host);
        assert.equal(b.stream.nextControl().header.op, VIRTIO_VSOCK_OP_SHUTDOWN);
        b.stream.send(VIRTIO_VSOCK_OP_RST);
      };
      for (let i = 0; i < 20; i++) cycle(i);
      guest.drain(50);
      const before = daemon.fdCount();
      for (let i = 20; i < 220; i++) cycle(i);
      // The daemon closes the last connections on its own time: give a loaded machine a moment.
      const deadline = performance.now() + 3000;
      do guest.drain(50); while (daemon.fdCount() > before && performance.now() < deadline);
      // At most `before`: the 1 s sweep timer (a timerfd) may have been armed when it was taken.
      const after = daemon.fdCount();
      assert.ok(after <= before, `descriptors grew from ${before} to ${after} over 200 cycles`);
    } finally {
      close(listener);
    }
  });
});

Deno.test("vsock: sibling VMs in a shared group reach each other by CID; others are refused", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-sib-" });
  const vm = (cid: number, groups: string) =>
    `guest-cid=${cid},socket=${dir}/v${cid}.sock,uds-path=${dir}/u${cid},groups=${groups}`;
  const daemon = await startDaemon(
    ["--vm", vm(10, "a+b"), "--vm", vm(11, "b"), "--vm", vm(13, "c")],
    [`${dir}/v10.sock`, `${dir}/v11.sock`, `${dir}/v13.sock`],
  );
  try {
    const a = await FakeGuest.attach(`${dir}/v10.sock`);
    const b = await FakeGuest.attach(`${dir}/v11.sock`);
    const c = await FakeGuest.attach(`${dir}/v13.sock`);
    try {
      assert.deepEqual([a.cid, b.cid, c.cid], [10, 11, 13]);
      // A connects to B's port 9: B sees A's REQUEST as sent, answers, data flows.
      a.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 100, dstPort: 9, dstCid: 11 });
      const request = b.take((p) => p.header.op === VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(request.header.srcCid, 10);
      assert.equal(request.header.dstCid, 11);
      b.send({ op: VIRTIO_VSOCK_OP_RESPONSE, srcPort: 9, dstPort: 100, dstCid: 10 });
      assert.equal(a.take((p) => p.header.srcCid === 11).header.op, VIRTIO_VSOCK_OP_RESPONSE);
      // 20 KiB in one RW: B's 4 KiB rx buffers get it as several RW packets.
      const data = pattern(20_000, 7);
      a.send({ op: VIRTIO_VSOCK_OP_RW, srcPort: 100, dstPort: 9, dstCid: 11 }, data);
      const parts: Uint8Array[] = [];
      let got = 0;
      while (got < data.length) {
        const p = b.take((q) => q.header.op === VIRTIO_VSOCK_OP_RW);
        assert.equal(p.header.len, p.payload.length);
        parts.push(p.payload);
        got += p.payload.length;
      }
      assert.deepEqual(concat(parts), data);
      // C shares no group with A, and CID 99 is nobody: A's guest gets an
      // RST at once (no connect timeout), C sees nothing; both logged.
      a.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 101, dstPort: 9, dstCid: 13 });
      a.send({ op: VIRTIO_VSOCK_OP_REQUEST, srcPort: 102, dstPort: 9, dstCid: 99 });
      assert.deepEqual(c.drain(200), []);
      const refusals = a.drain(50).map((p) => [p.header.op, p.header.srcCid, p.header.dstPort]);
      assert.deepEqual(refusals, [[VIRTIO_VSOCK_OP_RST, 13, 101], [VIRTIO_VSOCK_OP_RST, 99, 102]]);
      // A's front-end goes away: B's end of their connection is reset for it.
      a.close();
      const reset = b.take((p) => p.header.op === VIRTIO_VSOCK_OP_RST);
      assert.deepEqual(
        [reset.header.srcCid, reset.header.srcPort, reset.header.dstCid, reset.header.dstPort],
        [10, 100, 11, 9],
      );
    } finally {
      a.close();
      b.close();
      c.close();
    }
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
  assert.match(daemon.log, /CID 13: no shared group/);
  assert.match(daemon.log, /unknown CID 99/);
});

Deno.test("vsock: a restarted front-end gets a fresh device; host programs wait meanwhile", async () => {
  await withDaemon([], ({ guest, uds }) => {
    guest.close();
    // No guest: a host program is turned away.
    const early = connectUnix(uds);
    setNonBlocking(early, true);
    write(early, new TextEncoder().encode("CONNECT 1\n"));
    const deadline = performance.now() + 3000;
    let eof = false;
    while (!eof && performance.now() < deadline) {
      try {
        eof = readSome(early) === null;
      } catch {
        eof = true;
      }
    }
    assert.ok(eof, "closed while no guest is attached");
    close(early);
  });
});

Deno.test("vsock: QEMU reconnecting gets a fresh device on the same socket", async () => {
  const { dir, socket, uds } = paths();
  const daemon = await startDaemon(["--socket", socket, "--uds-path", uds], [socket, uds]);
  try {
    for (let round = 0; round < 2; round++) {
      const guest = await FakeGuest.attach(socket);
      try {
        assert.equal(guest.cid, 3, "default CID");
        const { stream, host } = hostConnect(guest, { uds, guestPort: 900 + round });
        stream.write(new Uint8Array([round]));
        assert.deepEqual(hostRead(guest, host, 1), new Uint8Array([round]));
        close(host);
      } finally {
        guest.close();
      }
    }
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

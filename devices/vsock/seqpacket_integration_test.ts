// SEQPACKET through the daemon as a child process: the TypeScript front-end
// plays a Linux guest that accepted VIRTIO_VSOCK_F_SEQPACKET, host programs
// are real Unix SOCK_SEQPACKET sockets in this process.
import assert from "node:assert/strict";
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
import { bit } from "../../core/protocol/constants.ts";
import {
  VIRTIO_VSOCK_F_SEQPACKET,
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_SEQ_EOM,
  VIRTIO_VSOCK_SEQ_EOR,
  VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE,
  VIRTIO_VSOCK_SHUTDOWN_F_SEND,
  VIRTIO_VSOCK_TYPE_SEQPACKET,
} from "./packet.ts";
import { FakeGuest } from "./testing/fake_guest.ts";
import { GuestStream, hostSeesEof, pattern, pumpUntil } from "./testing/guest_stream.ts";
import { DaemonProcess } from "../../tests/integration/daemon_process.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const SEQ = VIRTIO_VSOCK_TYPE_SEQPACKET;
const EOM = VIRTIO_VSOCK_SEQ_EOM;
const EOR = VIRTIO_VSOCK_SEQ_EOR;
const FEATURE = bit(VIRTIO_VSOCK_F_SEQPACKET);
/** Message sizes both ways: 1 B to 64 KiB and beyond one rx buffer, chunk and packet. */
const SIZES = [1, 2, 100, 4095, 4096, 4097, 12_345, 65_536, 100_000];

/** Runs `body` against a daemon started with `args` (plus socket, uds-path and CID 7). */
async function withDaemon(
  args: string[],
  body: (ctx: { socket: string; uds: string }) => Promise<void> | void,
): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-seq-" });
  const socket = `${dir}/vhost.sock`;
  const uds = `${dir}/vm.vsock`;
  const env = { RUST_LOG: Deno.env.get("VSOCK_TEST_LOG") ?? "info" };
  const daemon = await DaemonProcess.start(MAIN, {
    args: ["--socket", socket, "--uds-path", uds, "--guest-cid", "7", ...args],
    waitFor: [socket, uds],
    env,
  });
  try {
    await body({ socket, uds });
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
  return daemon.log;
}

/** Receives one message on the non-blocking host socket `fd`, pumping the guest meanwhile. */
function hostMessage(guest: FakeGuest, fd: number): Uint8Array {
  const buffer = stableBuffer(1 << 20);
  let length = -1;
  pumpUntil(guest, () => {
    const got = receiveMessage(fd, buffer);
    if (got === null) return false;
    assert.equal(got.truncated, false);
    length = got.length;
    return true;
  }, { what: "a message on the host" });
  return buffer.slice(0, length);
}

/** The guest connects SEQPACKET to host port `hostPort`; returns both ends. */
function guestConnect(
  guest: FakeGuest,
  options: { listener: number; hostPort: number; guestPort: number },
): { stream: GuestStream; host: number } {
  const stream = new GuestStream(guest, {
    port: options.guestPort,
    peerPort: options.hostPort,
    type: SEQ,
  });
  stream.send(VIRTIO_VSOCK_OP_REQUEST);
  const reply = stream.next();
  assert.equal(reply.header.op, VIRTIO_VSOCK_OP_RESPONSE);
  assert.equal(reply.header.type, SEQ, "the RESPONSE is of type SEQPACKET");
  let host: number | null = null;
  pumpUntil(guest, () => (host = acceptUnix(options.listener)) !== null, { what: "accept" });
  return { stream, host: host! };
}

Deno.test("vsock seqpacket: not offered by default; a SEQPACKET REQUEST gets RST; no _seqpacket socket", async () => {
  await withDaemon([], async ({ socket, uds }) => {
    const guest = await FakeGuest.attach(socket, { features: FEATURE });
    try {
      assert.equal(guest.frontend.backendFeatures & FEATURE, 0n, "feature not offered");
      const s = new GuestStream(guest, { port: 40000, peerPort: 1, type: SEQ });
      s.send(VIRTIO_VSOCK_OP_REQUEST);
      const rst = s.next();
      assert.equal(rst.header.op, VIRTIO_VSOCK_OP_RST);
      assert.equal(rst.header.type, SEQ);
      assert.throws(() => Deno.statSync(`${uds}_seqpacket`), Deno.errors.NotFound);
    } finally {
      guest.close();
    }
  });
});

Deno.test("vsock seqpacket: offered with --seqpacket, but a driver that did not accept it gets RST", async () => {
  const log = await withDaemon(["--seqpacket"], async ({ socket, uds }) => {
    const guest = await FakeGuest.attach(socket);
    try {
      assert.notEqual(guest.frontend.backendFeatures & FEATURE, 0n, "feature offered");
      const s = new GuestStream(guest, { port: 40000, peerPort: 1, type: SEQ });
      s.send(VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(s.next().header.op, VIRTIO_VSOCK_OP_RST);
      // A SOCK_SEQPACKET host program is turned away too.
      const host = connectUnix(`${uds}_seqpacket`, { seqpacket: true });
      setNonBlocking(host, true);
      assert.ok(sendMessage(host, new TextEncoder().encode("CONNECT 5000\n")));
      assert.ok(hostSeesEof(guest, host));
      close(host);
    } finally {
      guest.close();
    }
  });
  assert.match(log, /VIRTIO_VSOCK_F_SEQPACKET was not negotiated/);
});

Deno.test("vsock seqpacket: guest → host and back, message boundaries kept (1 B to 100 KB)", async () => {
  await withDaemon(["--seqpacket"], async ({ socket, uds }) => {
    const guest = await FakeGuest.attach(socket, { features: FEATURE });
    const listener = listenUnix(`${uds}_1234`, 4, { seqpacket: true });
    const stream_ = listenUnix(`${uds}_1235`, 4);
    try {
      const { stream, host } = guestConnect(guest, { listener, hostPort: 1234, guestPort: 40000 });
      setNonBlocking(host, true);
      // Guest → host: Linux-sized packets (64 KiB) and small ones (4 KiB), EOR on some.
      for (const [i, size] of SIZES.entries()) {
        const message = pattern(size, i + 1);
        stream.writeMessage(message, { chunk: i % 2 ? 4096 : 65536, eor: i % 3 === 0 });
        assert.deepEqual(hostMessage(guest, host), message, `guest → host message of ${size}`);
      }
      // Several messages waiting at once arrive as they were sent.
      const burst = SIZES.map((size, i) => pattern(size, 100 + i));
      for (const message of burst) stream.writeMessage(message, { chunk: 8192 });
      for (const message of burst) assert.deepEqual(hostMessage(guest, host), message);
      // Host → guest: each message arrives as RW packets that fit 4 KiB buffers, EOM last.
      for (const [i, size] of SIZES.entries()) {
        const message = pattern(size, 200 + i);
        assert.ok(sendMessage(host, message));
        const got = stream.readMessage();
        assert.deepEqual(got.bytes, message, `host → guest message of ${size}`);
        assert.equal(got.flags, EOM, "EOM, no EOR: a Unix socket has no record ends");
        assert.ok(got.packets >= Math.ceil(size / 4096));
      }
      for (const message of burst) assert.ok(sendMessage(host, message));
      for (const message of burst) assert.deepEqual(stream.readMessage().bytes, message);
      // The guest closes: the host reads end of file.
      stream.shutdown(VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE | VIRTIO_VSOCK_SHUTDOWN_F_SEND);
      assert.equal(stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
      assert.ok(hostSeesEof(guest, host));
      close(host);
      // A STREAM packet on a SEQPACKET connection breaks the protocol: RST.
      const mixed = guestConnect(guest, { listener, hostPort: 1234, guestPort: 40002 });
      guest.send({ op: VIRTIO_VSOCK_OP_RW, srcPort: 40002, dstPort: 1234 }, new Uint8Array(3));
      assert.equal(mixed.stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
      assert.ok(hostSeesEof(guest, mixed.host));
      close(mixed.host);
      // A stream listener on the port does not take a SEQPACKET connection (as a vsock port).
      const s = new GuestStream(guest, { port: 40001, peerPort: 1235, type: SEQ });
      s.send(VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(s.next().header.op, VIRTIO_VSOCK_OP_RST);
    } finally {
      close(listener);
      close(stream_);
      guest.close();
    }
  });
});

Deno.test("vsock seqpacket: a host program connects through <uds>_seqpacket; CONNECT and OK are messages", async () => {
  await withDaemon(["--seqpacket"], async ({ socket, uds }) => {
    const guest = await FakeGuest.attach(socket, { features: FEATURE });
    try {
      const host = connectUnix(`${uds}_seqpacket`, { seqpacket: true });
      setNonBlocking(host, true);
      assert.ok(sendMessage(host, new TextEncoder().encode("CONNECT 5000\n")));
      const request = guest.take((p) => p.header.op === VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(request.header.type, SEQ);
      assert.equal(request.header.dstPort, 5000);
      const stream = new GuestStream(guest, {
        port: 5000,
        peerPort: request.header.srcPort,
        type: SEQ,
      });
      stream.peerBufAlloc = request.header.bufAlloc;
      stream.send(VIRTIO_VSOCK_OP_RESPONSE);
      assert.equal(new TextDecoder().decode(hostMessage(guest, host)), "OK 5000\n");
      for (const [i, size] of SIZES.entries()) {
        const message = pattern(size, 300 + i);
        assert.ok(sendMessage(host, message));
        assert.deepEqual(stream.readMessage().bytes, message);
        const back = pattern(size, 400 + i);
        stream.writeMessage(back, { chunk: 4096 });
        assert.deepEqual(hostMessage(guest, host), back);
      }
      // The host closes: the guest gets SHUTDOWN; its RST ends it.
      close(host);
      assert.equal(stream.nextControl().header.op, 4);
      stream.send(VIRTIO_VSOCK_OP_RST);
      // A stream host program on the plain socket still gets a stream connection.
      const plain = connectUnix(uds);
      setNonBlocking(plain, true);
      assert.ok(sendMessage(plain, new TextEncoder().encode("CONNECT 5001\n")));
      const streamRequest = guest.take((p) => p.header.op === VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(streamRequest.header.type, 1);
      close(plain);
    } finally {
      guest.close();
    }
  });
});

Deno.test("vsock seqpacket: caps: a guest message past its credit and a host message past a buffer are reset, with a log line", async () => {
  const TX = 16384;
  const log = await withDaemon(["--seqpacket", "--tx-buffer-size", String(TX)], async (ctx) => {
    const guest = await FakeGuest.attach(ctx.socket, { features: FEATURE });
    const listener = listenUnix(`${ctx.uds}_77`, 4, { seqpacket: true });
    try {
      // The guest gathers 3 × 8 KiB without an EOM: past the 16 KiB it was given.
      const a = guestConnect(guest, { listener, hostPort: 77, guestPort: 41000 });
      a.stream.sendPiece(pattern(8192, 1), 0);
      a.stream.sendPiece(pattern(8192, 2), 0);
      a.stream.sendPiece(pattern(8192, 3), 0);
      assert.equal(a.stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
      assert.ok(hostSeesEof(guest, a.host));
      close(a.host);
      // A host message larger than the connection's buffer cannot be carried whole.
      const b = guestConnect(guest, { listener, hostPort: 77, guestPort: 41001 });
      setNonBlocking(b.host, true);
      assert.ok(sendMessage(b.host, pattern(TX + 1, 4)));
      assert.equal(b.stream.nextControl().header.op, VIRTIO_VSOCK_OP_RST);
      close(b.host);
      // Nor one larger than the guest's whole buffer (Linux would drop what does not fit).
      const c = new GuestStream(guest, {
        port: 41002,
        peerPort: 77,
        type: SEQ,
        bufAlloc: 8192,
      });
      c.send(VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(c.next().header.op, VIRTIO_VSOCK_OP_RESPONSE);
      let host: number | null = null;
      pumpUntil(guest, () => (host = acceptUnix(listener)) !== null, { what: "accept" });
      setNonBlocking(host!, true);
      assert.ok(sendMessage(host!, pattern(8192, 5)));
      assert.equal(c.readMessage().bytes.length, 8192, "a message of buf_alloc fits");
      // The guest tells of the space it freed (Linux does once it read the message).
      c.send(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
      assert.ok(sendMessage(host!, pattern(8193, 6)));
      let end = c.nextControl();
      while (end.header.op === VIRTIO_VSOCK_OP_CREDIT_REQUEST) end = c.nextControl();
      assert.equal(end.header.op, VIRTIO_VSOCK_OP_RST);
      close(host!);
      // 3000 one-byte messages while the host reads nothing: the socket takes a few hundred,
      // the rest wait in the connection's 16 KiB (one number each), and all arrive in order.
      const e = guestConnect(guest, { listener, hostPort: 77, guestPort: 41004 });
      setNonBlocking(e.host, true);
      for (let i = 0; i < 3000; i++) e.stream.writeMessage(new Uint8Array([i & 0xff]));
      for (let i = 0; i < 3000; i++) {
        assert.deepEqual([...hostMessage(guest, e.host)], [i & 0xff], `tiny message ${i}`);
      }
      close(e.host);
      // Within the caps, a whole 16 KiB message both ways.
      const d = guestConnect(guest, { listener, hostPort: 77, guestPort: 41003 });
      setNonBlocking(d.host, true);
      const full = pattern(TX, 7);
      d.stream.writeMessage(full, { chunk: 4096 });
      assert.deepEqual(hostMessage(guest, d.host), full);
      assert.ok(sendMessage(d.host, full));
      assert.deepEqual(d.stream.readMessage().bytes, full);
      close(d.host);
    } finally {
      close(listener);
      guest.close();
    }
  });
  assert.match(log, /SEQPACKET message past its credit/);
  assert.match(log, /host message exceeds the connection's buffer/);
  assert.match(log, /host message exceeds the guest's buffer/);
});

Deno.test("vsock seqpacket: sibling guests: packets relayed with EOM/EOR on the last piece; a guest without the feature refuses", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-seq-sib-" });
  const vm = (cid: number) =>
    `guest-cid=${cid},socket=${dir}/v${cid}.sock,uds-path=${dir}/u${cid},seqpacket=on`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: ["--vm", vm(10), "--vm", vm(11), "--vm", `${vm(12)}`],
    waitFor: [`${dir}/v10.sock`, `${dir}/v11.sock`, `${dir}/v12.sock`],
    env: { RUST_LOG: "info" },
  });
  try {
    const a = await FakeGuest.attach(`${dir}/v10.sock`, { features: FEATURE });
    const b = await FakeGuest.attach(`${dir}/v11.sock`, { features: FEATURE });
    const c = await FakeGuest.attach(`${dir}/v12.sock`); // did not accept SEQPACKET
    try {
      const sibling = { type: SEQ, srcPort: 100, dstPort: 9 };
      a.send({ ...sibling, op: VIRTIO_VSOCK_OP_REQUEST, dstCid: 11 });
      const request = b.take((p) => p.header.op === VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(request.header.type, SEQ);
      b.send({ type: SEQ, op: VIRTIO_VSOCK_OP_RESPONSE, srcPort: 9, dstPort: 100, dstCid: 10 });
      assert.equal(a.take((p) => p.header.srcCid === 11).header.op, VIRTIO_VSOCK_OP_RESPONSE);
      // One 20 000-byte packet with EOM|EOR: B's 4 KiB buffers get five, flags on the last.
      const data = pattern(20_000, 7);
      a.send({ ...sibling, op: VIRTIO_VSOCK_OP_RW, dstCid: 11, flags: EOM | EOR }, data);
      const got: Uint8Array[] = [];
      const flags: number[] = [];
      for (let n = 0; n < data.length;) {
        const p = b.take((q) => q.header.op === VIRTIO_VSOCK_OP_RW);
        got.push(p.payload);
        flags.push(p.header.flags);
        n += p.payload.length;
      }
      assert.deepEqual(flags, [0, 0, 0, 0, EOM | EOR]);
      assert.deepEqual(new Uint8Array(got.flatMap((g) => [...g])), data);
      // C's driver did not accept SEQPACKET: A's REQUEST is refused at once.
      a.send({ ...sibling, srcPort: 101, op: VIRTIO_VSOCK_OP_REQUEST, dstCid: 12 });
      const refused = a.take((p) => p.header.srcCid === 12);
      assert.equal(refused.header.op, VIRTIO_VSOCK_OP_RST);
      assert.deepEqual(c.drain(100), []);
    } finally {
      a.close();
      b.close();
      c.close();
    }
  } finally {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

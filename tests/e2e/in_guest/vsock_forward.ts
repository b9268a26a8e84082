// AF_VSOCK forwarding (--forward-cid/--forward-listen), run INSIDE a guest
// whose kernel has vsock_loopback: the daemon forwards to CID 1 (the guest
// itself), the TypeScript front-end plays the inner guest, and this process
// plays the programs on the AF_VSOCK side. Never run it on the host: there
// AF_VSOCK belongs to the machine's hypervisor. tests/e2e/vsock_forward_test.ts
// boots a guest and runs it there with `deno test --no-check`.
import assert from "node:assert/strict";
import {
  acceptVsock,
  close,
  connectVsock,
  listenVsock,
  receiveMessage,
  sendMessage,
  setNonBlocking,
  shutdownWrite,
  stableBuffer,
  VMADDR_CID_LOCAL,
  write,
} from "../../../ffi/mod.ts";
import { bit } from "../../../core/protocol/constants.ts";
import {
  VIRTIO_VSOCK_F_SEQPACKET,
  VIRTIO_VSOCK_OP_REQUEST,
  VIRTIO_VSOCK_OP_RESPONSE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_SEQ_EOM,
  VIRTIO_VSOCK_SEQ_EOR,
  VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE,
  VIRTIO_VSOCK_SHUTDOWN_F_SEND,
  VIRTIO_VSOCK_TYPE_SEQPACKET,
} from "../../../devices/vsock/packet.ts";
import { FakeGuest } from "../../../devices/vsock/testing/fake_guest.ts";
import {
  GuestStream,
  hostRead,
  hostSeesEof,
  pattern,
  pumpUntil,
} from "../../../devices/vsock/testing/guest_stream.ts";
import { DaemonProcess } from "../../integration/daemon_process.ts";

const MAIN = new URL("../../../devices/vsock/main.ts", import.meta.url).pathname;
const BOTH = VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE | VIRTIO_VSOCK_SHUTDOWN_F_SEND;
const LISTEN_PORT = 9000;
const REFUSING_PORT = 9001;
const OUTSIDE_PORT = 9100;
const NOBODY_PORT = 9200;
const SEQPACKET_PORT = 9300;
const SEQPACKET_LISTEN_PORT = 9301;

/** A program on the AF_VSOCK side connects to a --forward-listen port; the inner guest accepts. */
function programConnects(guest: FakeGuest, port: number): { stream: GuestStream; fd: number } {
  const { fd } = connectVsock(VMADDR_CID_LOCAL, port);
  const request = guest.take((p) =>
    p.header.op === VIRTIO_VSOCK_OP_REQUEST && p.header.dstPort === port
  );
  const stream = new GuestStream(guest, { port, peerPort: request.header.srcPort });
  stream.peerBufAlloc = request.header.bufAlloc;
  stream.peerFwdCnt = request.header.fwdCnt;
  stream.send(VIRTIO_VSOCK_OP_RESPONSE);
  return { stream, fd };
}

Deno.test("vsock forwarding inside a guest: both directions, half-close, resets", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-fwd-" });
  const socket = `${dir}/vhost.sock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: [
      "--guest-cid",
      "3",
      "--socket",
      socket,
      "--forward-cid",
      String(VMADDR_CID_LOCAL),
      "--forward-listen",
      `${LISTEN_PORT}+${REFUSING_PORT}`,
    ],
    waitFor: [socket],
    env: { RUST_LOG: "info" },
    tempDir: dir,
    // A first `deno run` in a TCG guest compiles every module.
    startTimeoutMs: 120_000,
  });
  const listener = listenVsock(OUTSIDE_PORT);
  try {
    const guest = await FakeGuest.attach(socket);
    try {
      // 1. A program connects to CID 1 port 9000 and reaches the inner guest.
      const inbound = programConnects(guest, LISTEN_PORT);
      // Within the inner guest's 256 KiB buf_alloc: this test is about forwarding, not credit.
      const toGuest = pattern(200_000, 11);
      let offset = 0;
      pumpUntil(guest, () => {
        offset += write(inbound.fd, toGuest.subarray(offset)) ?? 0;
        return offset === toGuest.length;
      }, { what: "the program's bytes written", timeoutMs: 30_000 });
      assert.deepEqual(inbound.stream.readBytes(toGuest.length), toGuest, "program → guest");
      const fromGuest = pattern(300_000, 12);
      inbound.stream.write(fromGuest);
      assert.deepEqual(hostRead(guest, inbound.fd, fromGuest.length), fromGuest, "guest → program");

      // 2. The inner guest connects to the host's port 9100: the daemon connects
      // to (CID 1, 9100), where this process listens.
      const outbound = new GuestStream(guest, { port: 50000, peerPort: OUTSIDE_PORT });
      outbound.send(VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(outbound.nextControl().header.op, VIRTIO_VSOCK_OP_RESPONSE);
      let accepted: number | null = null;
      pumpUntil(guest, () => (accepted = acceptVsock(listener)) !== null, {
        what: "the daemon's connection to port 9100",
      });
      const program = accepted!;
      setNonBlocking(program, true);
      const up = pattern(500_000, 13);
      outbound.write(up);
      assert.deepEqual(hostRead(guest, program, up.length), up, "guest → listener");
      const down = pattern(200_000, 14);
      let sent = 0;
      pumpUntil(guest, () => {
        sent += write(program, down.subarray(sent, sent + 65536)) ?? 0;
        return sent === down.length;
      }, { what: "the listener's reply written", timeoutMs: 60_000 });
      assert.deepEqual(outbound.readBytes(down.length), down, "listener → guest");

      // 3. Half-close: the guest stops sending; the listener reads end of file
      // and can still answer; then it closes and the guest is told.
      outbound.shutdown(VIRTIO_VSOCK_SHUTDOWN_F_SEND);
      assert.ok(hostSeesEof(guest, program), "the listener sees end of file");
      const late = pattern(1000, 15);
      assert.equal(write(program, late), late.length);
      assert.deepEqual(outbound.readBytes(down.length + late.length).subarray(down.length), late);
      shutdownWrite(program);
      const end = outbound.nextControl();
      assert.ok(
        end.header.op === VIRTIO_VSOCK_OP_RST ||
          (end.header.op === VIRTIO_VSOCK_OP_SHUTDOWN &&
            (end.header.flags & VIRTIO_VSOCK_SHUTDOWN_F_SEND) !== 0),
        `the guest learns the listener stopped sending (op ${end.header.op})`,
      );
      close(program);

      // 4. Resets: nobody listens on port 9200, so the guest's connect is reset;
      // the guest refuses port 9001, so the program's connection ends.
      const refused = new GuestStream(guest, { port: 50001, peerPort: NOBODY_PORT });
      refused.send(VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(refused.nextControl().header.op, VIRTIO_VSOCK_OP_RST, "connect to no listener");
      const { fd: turnedAway } = connectVsock(VMADDR_CID_LOCAL, REFUSING_PORT);
      const request = guest.take((p) =>
        p.header.op === VIRTIO_VSOCK_OP_REQUEST && p.header.dstPort === REFUSING_PORT
      );
      guest.send({
        op: VIRTIO_VSOCK_OP_RST,
        srcPort: REFUSING_PORT,
        dstPort: request.header.srcPort,
      });
      assert.ok(hostSeesEof(guest, turnedAway), "the refused program's connection ends");
      close(turnedAway);

      // The first connection closes cleanly from the guest's side.
      inbound.stream.shutdown(BOTH);
      assert.ok(hostSeesEof(guest, inbound.fd));
      close(inbound.fd);
    } finally {
      guest.close();
    }
  } finally {
    close(listener);
    await daemon.stop();
  }
});

Deno.test("vsock forwarding inside a guest: SOCK_SEQPACKET both ways keeps messages and EOR", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-fwd-seq-" });
  const socket = `${dir}/vhost.sock`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: [
      "--guest-cid",
      "3",
      "--socket",
      socket,
      "--forward-cid",
      "1",
      "--seqpacket",
      "--forward-listen-seqpacket",
      String(SEQPACKET_LISTEN_PORT),
      // More credit for the guest than the listener's 256 KiB: messages must wait whole.
      "--tx-buffer-size",
      String(1 << 20),
    ],
    waitFor: [socket],
    env: { RUST_LOG: "info" },
    tempDir: dir,
    startTimeoutMs: 120_000,
  });
  const listener = listenVsock(SEQPACKET_PORT, { seqpacket: true });
  try {
    const guest = await FakeGuest.attach(socket, { features: bit(VIRTIO_VSOCK_F_SEQPACKET) });
    try {
      const stream = new GuestStream(guest, {
        port: 50100,
        peerPort: SEQPACKET_PORT,
        type: VIRTIO_VSOCK_TYPE_SEQPACKET,
      });
      stream.send(VIRTIO_VSOCK_OP_REQUEST);
      assert.equal(stream.nextControl().header.op, VIRTIO_VSOCK_OP_RESPONSE);
      let accepted: number | null = null;
      pumpUntil(guest, () => (accepted = acceptVsock(listener)) !== null, {
        what: "the daemon's SOCK_SEQPACKET connection",
      });
      const program = accepted!;
      const buffer = stableBuffer(128 * 1024);
      const sizes = [1, 100, 4096, 4097, 65536];
      for (const [i, size] of sizes.entries()) {
        const message = pattern(size, 20 + i);
        stream.writeMessage(message, { chunk: 4096, eor: i % 2 === 1 });
        let got: ReturnType<typeof receiveMessage> = null;
        pumpUntil(guest, () => (got = receiveMessage(program, buffer)) !== null, {
          what: `a ${size}-byte message at the listener`,
        });
        assert.equal(got!.length, size, "guest → AF_VSOCK message size");
        assert.deepEqual(buffer.subarray(0, size), message, "guest → AF_VSOCK message bytes");
        assert.equal(got!.eor, i % 2 === 1, "the guest's EOR is the listener's MSG_EOR");
      }
      // Six 60 KB messages while the listener reads nothing: its 256 KiB buffer fills
      // mid-message, where a non-blocking send would cut one; all arrive whole.
      const burst = Array.from({ length: 6 }, (_, i) => pattern(60_000, 30 + i));
      for (const message of burst) stream.writeMessage(message);
      for (let i = 0; i < 10; i++) guest.poll(50);
      for (const [i, message] of burst.entries()) {
        let got: ReturnType<typeof receiveMessage> = null;
        pumpUntil(guest, () => (got = receiveMessage(program, buffer)) !== null, {
          what: `burst message ${i}`,
        });
        assert.equal(got!.length, message.length, `burst message ${i} size`);
        assert.deepEqual(buffer.subarray(0, message.length), message, `burst message ${i}`);
      }
      for (const [i, size] of sizes.entries()) {
        const message = pattern(size, 40 + i);
        pumpUntil(guest, () => sendMessage(program, message, { eor: i % 2 === 0 }), {
          what: "room at the listener",
        });
        const got = stream.readMessage();
        assert.deepEqual(got.bytes, message, "AF_VSOCK → guest message");
        const eor = i % 2 === 0 ? VIRTIO_VSOCK_SEQ_EOR : 0;
        assert.equal(got.flags, VIRTIO_VSOCK_SEQ_EOM | eor, "MSG_EOR becomes EOR");
      }
      close(program);
      assert.equal(stream.nextControl().header.op, VIRTIO_VSOCK_OP_SHUTDOWN);
      stream.send(VIRTIO_VSOCK_OP_RST);

      // A program connects SOCK_SEQPACKET to a --forward-listen-seqpacket port.
      const { fd: inbound } = connectVsock(VMADDR_CID_LOCAL, SEQPACKET_LISTEN_PORT, {
        seqpacket: true,
      });
      const request = guest.take((p) =>
        p.header.op === VIRTIO_VSOCK_OP_REQUEST && p.header.dstPort === SEQPACKET_LISTEN_PORT
      );
      assert.equal(request.header.type, VIRTIO_VSOCK_TYPE_SEQPACKET);
      const accepted2 = new GuestStream(guest, {
        port: SEQPACKET_LISTEN_PORT,
        peerPort: request.header.srcPort,
        type: VIRTIO_VSOCK_TYPE_SEQPACKET,
      });
      accepted2.peerBufAlloc = request.header.bufAlloc;
      accepted2.send(VIRTIO_VSOCK_OP_RESPONSE);
      for (const [i, size] of sizes.entries()) {
        const message = pattern(size, 60 + i);
        pumpUntil(guest, () => sendMessage(inbound, message), { what: "room to send" });
        assert.deepEqual(accepted2.readMessage().bytes, message, "program → guest message");
        const back = pattern(size, 80 + i);
        accepted2.writeMessage(back, { chunk: 4096 });
        let got: ReturnType<typeof receiveMessage> = null;
        pumpUntil(guest, () => (got = receiveMessage(inbound, buffer)) !== null, {
          what: "the guest's answer",
        });
        assert.equal(got!.length, size);
        assert.deepEqual(buffer.subarray(0, size), back, "guest → program message");
      }
      close(inbound);
    } finally {
      guest.close();
    }
  } finally {
    close(listener);
    await daemon.stop();
  }
});

/**
 * Test helpers over {@link FakeGuest}: a guest-side stream connection with
 * Linux-like credit bookkeeping, and host-side reads that keep the guest's
 * queues moving. Used by the integration tests and inside a guest by the
 * AF_VSOCK forwarding test.
 *
 * @module
 */

import { read } from "../../../ffi/mod.ts";
import {
  VIRTIO_VSOCK_OP_CREDIT_REQUEST,
  VIRTIO_VSOCK_OP_CREDIT_UPDATE,
  VIRTIO_VSOCK_OP_RST,
  VIRTIO_VSOCK_OP_RW,
  VIRTIO_VSOCK_OP_SHUTDOWN,
  VIRTIO_VSOCK_SEQ_EOM,
  VIRTIO_VSOCK_SEQ_EOR,
  VIRTIO_VSOCK_TYPE_STREAM,
  VMADDR_CID_HOST,
} from "../packet.ts";
import type { FakeGuest, Packet } from "./fake_guest.ts";

/** Reads whatever a non-blocking fd has, up to `max` bytes; `null` at end of file. */
export function readSome(fd: number, max = 1 << 20): Uint8Array | null {
  const buffer = new Uint8Array(max);
  const n = read(fd, buffer);
  if (n === 0) return null;
  return buffer.subarray(0, n ?? 0);
}

/** Pumps guest rx while waiting for `condition`. */
export function pumpUntil(
  guest: FakeGuest,
  condition: () => boolean,
  options: { what: string; timeoutMs?: number },
): void {
  const { what, timeoutMs = 5000 } = options;
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    guest.poll(5);
  }
}

/** Host reads exactly `length` bytes from `fd`, pumping the guest meanwhile. */
export function hostRead(guest: FakeGuest, fd: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let got = 0;
  pumpUntil(guest, () => {
    const chunk = readSome(fd, length - got);
    if (chunk === null) throw new Error(`end of file after ${got} of ${length} bytes`);
    out.set(chunk, got);
    got += chunk.length;
    return got === length;
  }, { what: `${length} bytes on the host` });
  return out;
}

/** Whether `fd` reads end of file (pumping the guest). */
export function hostSeesEof(guest: FakeGuest, fd: number): boolean {
  let eof = false;
  pumpUntil(guest, () => {
    try {
      eof = readSome(fd) === null;
    } catch {
      eof = true; // ECONNRESET counts
    }
    return eof;
  }, { what: "end of file on the host" });
  return eof;
}

/** A guest-side stream connection with Linux-like credit bookkeeping. */
export class GuestStream {
  /** Payload bytes the guest sent. */
  sent = 0;
  /** Payload bytes the guest received (its `fwd_cnt`). */
  received = 0;
  /** The peer's last advertised `buf_alloc`. */
  peerBufAlloc = 0;
  /** The peer's last advertised `fwd_cnt`. */
  peerFwdCnt = 0;
  /** Payloads received, in order. */
  readonly data: Uint8Array[] = [];

  /** The guest's end of a connection between its `port` and the peer's `peerPort`. */
  constructor(
    readonly guest: FakeGuest,
    ports: { port: number; peerPort: number; bufAlloc?: number; type?: number },
  ) {
    this.port = ports.port;
    this.peerPort = ports.peerPort;
    this.bufAlloc = ports.bufAlloc ?? 256 * 1024;
    this.type = ports.type ?? VIRTIO_VSOCK_TYPE_STREAM;
  }

  /** Socket type of every packet (VIRTIO_VSOCK_TYPE_STREAM or _SEQPACKET). */
  readonly type: number;

  /** The guest's port. */
  readonly port: number;
  /** The peer's port. */
  readonly peerPort: number;
  /** The guest's receive buffer, advertised as `buf_alloc`. */
  readonly bufAlloc: number;

  /** Bytes the guest may still send (§5.10.6.3). */
  get peerCredit(): number {
    return this.peerBufAlloc - (this.sent - this.peerFwdCnt);
  }

  /** Whether `p` belongs to this connection. */
  matches(p: Packet): boolean {
    return p.header.srcCid === VMADDR_CID_HOST && p.header.srcPort === this.peerPort &&
      p.header.dstPort === this.port;
  }

  /** Sends `op` on this connection with the guest's current credit fields. */
  send(op: number, payload: Uint8Array = new Uint8Array(0)): void {
    this.#send(op, { payload, flags: 0 });
  }

  /** Sends one RW packet with `flags` (SEQPACKET's VIRTIO_VSOCK_SEQ_EOM/EOR). */
  sendPiece(payload: Uint8Array, flags: number): void {
    this.#send(VIRTIO_VSOCK_OP_RW, { payload, flags });
  }

  /**
   * SEQPACKET: sends `bytes` as one message in RW packets of at most
   * `chunk` bytes within the host's credit, EOM (and EOR if asked) on the
   * last, as Linux's virtio_transport does.
   */
  writeMessage(bytes: Uint8Array, options: { chunk?: number; eor?: boolean } = {}): void {
    const chunk = options.chunk ?? 65536;
    const end = VIRTIO_VSOCK_SEQ_EOM | (options.eor ? VIRTIO_VSOCK_SEQ_EOR : 0);
    let offset = 0;
    do {
      if (this.peerCredit <= 0 && bytes.length > 0) {
        this.next();
        continue;
      }
      const take = Math.min(chunk, this.peerCredit, bytes.length - offset);
      offset += take;
      this.sendPiece(bytes.subarray(offset - take, offset), offset === bytes.length ? end : 0);
    } while (offset < bytes.length);
  }

  /**
   * SEQPACKET: receives the next whole message (RW packets until EOM);
   * returns its bytes and the flags of its last packet.
   */
  readMessage(): { bytes: Uint8Array; flags: number; packets: number } {
    const parts: Uint8Array[] = [];
    for (let packets = 1;; packets++) {
      const p = this.next();
      if (p.header.op === VIRTIO_VSOCK_OP_CREDIT_REQUEST) this.send(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
      if (p.header.op !== VIRTIO_VSOCK_OP_RW) {
        if (p.header.op === VIRTIO_VSOCK_OP_CREDIT_UPDATE) continue;
        if (p.header.op === VIRTIO_VSOCK_OP_CREDIT_REQUEST) continue;
        throw new Error(`connection ended (op ${p.header.op}) inside a message`);
      }
      parts.push(p.payload);
      if (p.header.flags & VIRTIO_VSOCK_SEQ_EOM) {
        this.data.length = 0;
        return { bytes: concat(parts), flags: p.header.flags, packets };
      }
      if (p.header.flags !== 0) throw new Error(`flags ${p.header.flags} before the EOM`);
    }
  }

  /** Sends SHUTDOWN with `flags` (VIRTIO_VSOCK_SHUTDOWN_F_*). */
  shutdown(flags: number): void {
    this.#send(VIRTIO_VSOCK_OP_SHUTDOWN, { payload: new Uint8Array(0), flags });
  }

  #send(op: number, { payload, flags }: { payload: Uint8Array; flags: number }): void {
    this.guest.send({
      op,
      srcPort: this.port,
      dstPort: this.peerPort,
      type: this.type,
      flags,
      bufAlloc: this.bufAlloc,
      fwdCnt: this.received,
    }, payload);
    if (op === VIRTIO_VSOCK_OP_RW) this.sent += payload.length;
  }

  /** Takes the next packet of this connection, tracking credit and data. */
  next(timeoutMs = 5000): Packet {
    const p = this.guest.take((q) => this.matches(q), timeoutMs);
    this.peerBufAlloc = p.header.bufAlloc;
    this.peerFwdCnt = p.header.fwdCnt;
    if (p.header.op === VIRTIO_VSOCK_OP_RW) {
      this.received += p.payload.length;
      this.data.push(p.payload);
    }
    return p;
  }

  /** The next packet that is not a CREDIT_UPDATE (those only update credit). */
  nextControl(timeoutMs = 5000): Packet {
    for (;;) {
      const p = this.next(timeoutMs);
      if (p.header.op !== VIRTIO_VSOCK_OP_CREDIT_UPDATE) return p;
    }
  }

  /** Writes `bytes` respecting the host's credit, waiting for CREDIT_UPDATEs as needed. */
  write(bytes: Uint8Array, chunk = 16384): void {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.peerCredit <= 0) {
        this.next();
        continue;
      }
      const take = Math.min(chunk, this.peerCredit, bytes.length - offset);
      this.send(VIRTIO_VSOCK_OP_RW, bytes.subarray(offset, offset + take));
      offset += take;
    }
  }

  /** Receives until `length` bytes arrived; returns them. */
  readBytes(length: number): Uint8Array {
    while (this.received < length) {
      const p = this.next();
      if (p.header.op === VIRTIO_VSOCK_OP_SHUTDOWN || p.header.op === VIRTIO_VSOCK_OP_RST) {
        throw new Error(`connection ended after ${this.received} of ${length} bytes`);
      }
      if (p.header.op === VIRTIO_VSOCK_OP_CREDIT_REQUEST) {
        this.send(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
      }
    }
    return concat(this.data);
  }
}

/** The parts joined into one array. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `length` pseudo-random bytes (xorshift from `seed`), the same for the same seed. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Hybrid vsock over Unix sockets (Firecracker's scheme, as rust-vmm's
 * vhost-device-vsock implements it):
 * - host → guest: a host program connects to the socket at `path` and sends
 *   `CONNECT <port>\n`; once the guest accepts, it reads `OK <port>\n`
 *   (the guest port, as rust-vmm replies; Firecracker sends the host-side
 *   port) and then the stream is the connection;
 * - guest → host: a guest connecting to CID 2 port P reaches the listener
 *   at `<path>_P`.
 *
 * SOCK_SEQPACKET (our extension, when the VM offers it): host programs
 * connect a SOCK_SEQPACKET socket to `<path>_seqpacket` and send the
 * CONNECT line as one message (the reply is one message too), and a guest
 * SEQPACKET connection to port P connects a SOCK_SEQPACKET socket to
 * `<path>_P` (a Unix listener takes only its own socket type, as a vsock
 * port does). Every later message is one guest message.
 *
 * @module
 */

import {
  acceptUnix,
  close,
  connectUnix,
  listenUnix,
  peek,
  read,
  receiveMessage,
  stableBuffer,
} from "../../ffi/mod.ts";
import type { EventLoop, Timer } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import {
  type HostBackend,
  type HostConnectHandler,
  type HostStream,
  SocketStream,
} from "./host.ts";
import { removeStaleSocket } from "../../core/daemon.ts";

/** Longest `CONNECT <port>\n` line accepted. */
export const MAX_CONNECT_LINE = 64;
/** How long a host program may take to send its CONNECT line. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Listen backlog of the host socket. */
export const UDS_BACKLOG = 128;

/**
 * Parses a `CONNECT <port>` line (keyword case-insensitive, fields split by
 * whitespace, as rust-vmm). Returns the port, or `null` if malformed.
 */
export function parseConnectLine(line: string): number | null {
  const fields = line.trim().split(/\s+/);
  if (fields.length !== 2 || fields[0].toUpperCase() !== "CONNECT") return null;
  if (!/^[0-9]{1,10}$/.test(fields[1])) return null;
  const port = Number(fields[1]);
  return port <= 0xffffffff ? port : null;
}

/** The suffix of the SOCK_SEQPACKET socket host programs connect to: `<path>_seqpacket`. */
export const SEQPACKET_SUFFIX = "_seqpacket";

/** A host program that connected and has not finished its CONNECT line. */
interface Handshake {
  readonly fd: number;
  /** It came in on the SOCK_SEQPACKET socket: the line is one message. */
  readonly seqpacket: boolean;
  line: string;
  /** When it is given up (performance.now() ms). */
  readonly deadline: number;
}

/** How often waiting handshakes are checked against their deadline. */
const HANDSHAKE_SWEEP_MS = 1000;

/** The Unix-socket host side of one VM. */
export class UnixHostBackend implements HostBackend {
  /** The host socket path. */
  readonly path: string;
  /** The SOCK_SEQPACKET host socket path, or `null` if SEQPACKET is not offered. */
  readonly seqpacketPath: string | null;
  readonly description: string;
  readonly #loop: EventLoop;
  readonly #log: Logger;
  readonly #handshakes = new Set<Handshake>();
  readonly #peeked = new Uint8Array(MAX_CONNECT_LINE + 1);
  readonly #message = stableBuffer(MAX_CONNECT_LINE + 1);
  #sweepTimer: Timer | null = null;
  #listener: number | null = null;
  #seqpacketListener: number | null = null;
  #handler: HostConnectHandler | null = null;

  /**
   * A backend for the socket at `path` (and `<path>_seqpacket` with
   * `seqpacket`); nothing is bound until {@link start}.
   */
  constructor(path: string, options: { loop: EventLoop; log: Logger; seqpacket?: boolean }) {
    this.path = path;
    this.seqpacketPath = options.seqpacket ? `${path}${SEQPACKET_SUFFIX}` : null;
    this.description = `unix:${path}` + (this.seqpacketPath ? ` (+${SEQPACKET_SUFFIX})` : "");
    this.#loop = options.loop;
    this.#log = options.log;
  }

  /** Binds `path` (replacing a stale socket) and accepts host programs. */
  start(handler: HostConnectHandler): void {
    this.#handler = handler;
    removeStaleSocket(this.path);
    const fd = listenUnix(this.path, UDS_BACKLOG);
    this.#listener = fd;
    this.#loop.watch(fd, () => this.#accept(fd, { seqpacket: false }));
    this.#log.info(`hybrid vsock: host programs connect to ${this.path}`);
    if (this.seqpacketPath !== null) {
      removeStaleSocket(this.seqpacketPath);
      const seq = listenUnix(this.seqpacketPath, UDS_BACKLOG, { seqpacket: true });
      this.#seqpacketListener = seq;
      this.#loop.watch(seq, () => this.#accept(seq, { seqpacket: true }));
      this.#log.info(`hybrid vsock: SOCK_SEQPACKET host programs connect to ${this.seqpacketPath}`);
    }
  }

  /** Firecracker's and rust-vmm's hybrid vsock answer to `CONNECT <port>`. */
  confirmation(port: number): Uint8Array {
    return new TextEncoder().encode(`OK ${port}\n`);
  }

  /** Connects to `<path>_<port>`; a SOCK_SEQPACKET socket with `seqpacket`. */
  connect(port: number, options: { seqpacket?: boolean } = {}): HostStream {
    const seqpacket = options.seqpacket ?? false;
    return new SocketStream(
      connectUnix(`${this.path}_${port}`, { nonBlocking: true, seqpacket }),
      { seqpacket },
    );
  }

  /** Stops listening and removes the socket file; `unwatch: false` once the loop is closed. */
  close(options: { unwatch?: boolean } = {}): void {
    const unwatch = options.unwatch ?? true;
    for (const handshake of this.#handshakes) this.#endHandshake(handshake, { unwatch });
    if (unwatch) this.#sweepTimer?.cancel();
    this.#sweepTimer = null;
    if (this.#listener !== null) {
      if (unwatch) this.#loop.unwatch(this.#listener);
      close(this.#listener);
      this.#listener = null;
      try {
        Deno.removeSync(this.path);
      } catch {
        // Already gone.
      }
    }
    if (this.#seqpacketListener !== null) {
      if (unwatch) this.#loop.unwatch(this.#seqpacketListener);
      close(this.#seqpacketListener);
      this.#seqpacketListener = null;
      try {
        Deno.removeSync(this.seqpacketPath!);
      } catch {
        // Already gone.
      }
    }
    this.#handler = null;
  }

  #accept(listener: number, options: { seqpacket: boolean }): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptUnix(listener);
      } catch (error) {
        this.#log.error(
          `${this.path}: accept failed: ${error instanceof Error ? error.message : error}`,
        );
        return;
      }
      if (fd === null) return;
      const handshake: Handshake = {
        fd,
        seqpacket: options.seqpacket,
        line: "",
        deadline: performance.now() + HANDSHAKE_TIMEOUT_MS,
      };
      this.#handshakes.add(handshake);
      this.#loop.watch(fd, () => this.#readLine(handshake));
      this.#scheduleSweep();
    }
  }

  /** One timer for all waiting handshakes, not a timerfd each: connection set-up stays cheap. */
  #scheduleSweep(): void {
    if (this.#sweepTimer !== null) return;
    this.#sweepTimer = this.#loop.setTimer(HANDSHAKE_SWEEP_MS, () => {
      this.#sweepTimer = null;
      const now = performance.now();
      for (const handshake of this.#handshakes) {
        if (handshake.deadline > now) continue;
        this.#log.info(`${this.path}: a host program sent no CONNECT line in time`);
        this.#endHandshake(handshake, { unwatch: true });
      }
      if (this.#handshakes.size > 0) this.#scheduleSweep();
    });
  }

  /**
   * Reads the CONNECT line. The bytes after it belong to the guest, so the
   * line is looked at with MSG_PEEK and only it is taken: two system calls
   * where a byte at a time took one per character.
   */
  #readLine(handshake: Handshake): void {
    if (handshake.seqpacket) {
      this.#readLineMessage(handshake);
      return;
    }
    let n: number | null;
    try {
      n = peek(handshake.fd, this.#peeked);
    } catch {
      n = 0;
    }
    if (n === null) return;
    if (n === 0) {
      this.#endHandshake(handshake, { unwatch: true });
      return;
    }
    const end = this.#peeked.subarray(0, n).indexOf(0x0a);
    // Without a newline every byte is the line's: take them (or the fd stays readable).
    const take = end < 0 ? n : end + 1;
    const bytes = new Uint8Array(take);
    try {
      if (read(handshake.fd, bytes) !== take) throw new Error("short read");
    } catch {
      this.#endHandshake(handshake, { unwatch: true });
      return;
    }
    handshake.line += String.fromCharCode(...bytes.subarray(0, end < 0 ? take : end));
    if (handshake.line.length > MAX_CONNECT_LINE) {
      this.#log.info(`${this.path}: CONNECT line too long; closing`);
      this.#endHandshake(handshake, { unwatch: true });
      return;
    }
    if (end < 0) return;
    this.#connectTo(handshake);
  }

  /** SEQPACKET: the CONNECT line is the first message (its newline optional). */
  #readLineMessage(handshake: Handshake): void {
    let got;
    try {
      got = receiveMessage(handshake.fd, this.#message);
    } catch {
      got = { length: 0, truncated: false, eor: false };
    }
    if (got === null) return;
    if (got.length === 0 || got.truncated) {
      if (got.truncated) this.#log.info(`${this.seqpacketPath}: CONNECT line too long; closing`);
      this.#endHandshake(handshake, { unwatch: true });
      return;
    }
    handshake.line = String.fromCharCode(...this.#message.subarray(0, got.length));
    this.#connectTo(handshake);
  }

  /** The CONNECT line is complete: hand the stream to the guest's port. */
  #connectTo(handshake: Handshake): void {
    const port = parseConnectLine(handshake.line);
    this.#handshakes.delete(handshake);
    this.#loop.unwatch(handshake.fd);
    if (port === null) {
      this.#log.info(`${this.path}: bad request ${JSON.stringify(handshake.line)}; closing`);
      close(handshake.fd);
      return;
    }
    const stream = new SocketStream(handshake.fd, { seqpacket: handshake.seqpacket });
    if (!this.#handler?.(stream, port)) {
      this.#log.debug(`${this.path}: no guest to take a connection to port ${port}; closing`);
      stream.close();
    }
  }

  #endHandshake(handshake: Handshake, options: { unwatch: boolean }): void {
    if (!this.#handshakes.delete(handshake)) return;
    // Once the loop is closed its fds die with the process.
    if (options.unwatch) this.#loop.unwatch(handshake.fd);
    close(handshake.fd);
  }
}

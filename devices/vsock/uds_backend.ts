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
 * @module
 */

import { acceptUnix, close, connectUnix, listenUnix, peek, read } from "../../ffi/mod.ts";
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

/** A host program that connected and has not finished its CONNECT line. */
interface Handshake {
  readonly fd: number;
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
  readonly description: string;
  readonly #loop: EventLoop;
  readonly #log: Logger;
  readonly #handshakes = new Set<Handshake>();
  readonly #peeked = new Uint8Array(MAX_CONNECT_LINE + 1);
  #sweepTimer: Timer | null = null;
  #listener: number | null = null;
  #handler: HostConnectHandler | null = null;

  /** A backend for the socket at `path`; nothing is bound until {@link start}. */
  constructor(path: string, options: { loop: EventLoop; log: Logger }) {
    this.path = path;
    this.description = `unix:${path}`;
    this.#loop = options.loop;
    this.#log = options.log;
  }

  /** Binds `path` (replacing a stale socket) and accepts host programs. */
  start(handler: HostConnectHandler): void {
    this.#handler = handler;
    removeStaleSocket(this.path);
    const fd = listenUnix(this.path, UDS_BACKLOG);
    this.#listener = fd;
    this.#loop.watch(fd, () => this.#accept(fd));
    this.#log.info(`hybrid vsock: host programs connect to ${this.path}`);
  }

  /** Firecracker's and rust-vmm's hybrid vsock answer to `CONNECT <port>`. */
  confirmation(port: number): Uint8Array {
    return new TextEncoder().encode(`OK ${port}\n`);
  }

  connect(port: number): HostStream {
    return new SocketStream(connectUnix(`${this.path}_${port}`, { nonBlocking: true }));
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
    this.#handler = null;
  }

  #accept(listener: number): void {
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
    const port = parseConnectLine(handshake.line);
    this.#handshakes.delete(handshake);
    this.#loop.unwatch(handshake.fd);
    if (port === null) {
      this.#log.info(`${this.path}: bad request ${JSON.stringify(handshake.line)}; closing`);
      close(handshake.fd);
      return;
    }
    const stream = new SocketStream(handshake.fd);
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

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

import { acceptUnix, close, connectUnix, listenUnix, read } from "../../ffi/mod.ts";
import type { EventLoop } from "../../core/event_loop.ts";
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
  readonly timer: { cancel(): void };
}

/** The Unix-socket host side of one VM. */
export class UnixHostBackend implements HostBackend {
  /** The host socket path. */
  readonly path: string;
  readonly description: string;
  readonly #loop: EventLoop;
  readonly #log: Logger;
  readonly #handshakes = new Set<Handshake>();
  readonly #byte = new Uint8Array(1);
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
        timer: this.#loop.setTimer(HANDSHAKE_TIMEOUT_MS, () => {
          this.#log.info(`${this.path}: a host program sent no CONNECT line in time`);
          this.#endHandshake(handshake, { unwatch: true });
        }),
      };
      this.#handshakes.add(handshake);
      this.#loop.watch(fd, () => this.#readLine(handshake));
    }
  }

  /** Reads the CONNECT line a byte at a time: the bytes after it belong to the guest. */
  #readLine(handshake: Handshake): void {
    for (;;) {
      let n: number | null;
      try {
        n = read(handshake.fd, this.#byte);
      } catch {
        n = 0;
      }
      if (n === null) return;
      if (n === 0) {
        this.#endHandshake(handshake, { unwatch: true });
        return;
      }
      const char = String.fromCharCode(this.#byte[0]);
      if (char !== "\n") {
        handshake.line += char;
        if (handshake.line.length > MAX_CONNECT_LINE) {
          this.#log.info(`${this.path}: CONNECT line too long; closing`);
          this.#endHandshake(handshake, { unwatch: true });
          return;
        }
        continue;
      }
      const port = parseConnectLine(handshake.line);
      this.#handshakes.delete(handshake);
      handshake.timer.cancel();
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
      return;
    }
  }

  #endHandshake(handshake: Handshake, options: { unwatch: boolean }): void {
    if (!this.#handshakes.delete(handshake)) return;
    // Once the loop is closed its fds (the timer's too) die with the process.
    if (options.unwatch) {
      handshake.timer.cancel();
      this.#loop.unwatch(handshake.fd);
    }
    close(handshake.fd);
  }
}

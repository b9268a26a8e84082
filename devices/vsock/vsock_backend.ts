/**
 * The AF_VSOCK host side (rust-vmm's `--forward-cid`/`--forward-listen`):
 * a guest connecting to the host on port P is forwarded to `(forwardCid,
 * P)` (typically CID 1, this host through vsock_loopback); a host program
 * connecting to AF_VSOCK port P (any local CID) of a `--forward-listen`
 * port reaches the guest's port P. With SEQPACKET, a guest SEQPACKET
 * connection goes out as an AF_VSOCK SOCK_SEQPACKET one, and the
 * `--forward-listen-seqpacket` ports listen with SOCK_SEQPACKET (a vsock
 * port is bound by one socket type at a time, so they are separate ports).
 * Their messages are sent from a helper thread: a non-blocking AF_VSOCK
 * SOCK_SEQPACKET send can cut a message when the peer's credit runs out.
 *
 * @module
 */

import { acceptVsock, close, connectVsock, listenVsock } from "../../ffi/mod.ts";
import type { EventLoop } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import type { HostBackend, HostConnectHandler, HostStream } from "./host.ts";
import { SocketStream } from "./host.ts";

/** The AF_VSOCK host side of one VM. */
export class VsockHostBackend implements HostBackend {
  readonly description: string;
  readonly #forwardCid: number;
  readonly #ports: readonly number[];
  readonly #seqpacketPorts: readonly number[];
  readonly #loop: EventLoop;
  readonly #log: Logger;
  readonly #listeners: number[] = [];

  /** Forwards to `forwardCid`, listening on `listenPorts` (and SOCK_SEQPACKET on `seqpacketPorts`). */
  constructor(
    target: {
      forwardCid: number;
      listenPorts: readonly number[];
      seqpacketPorts?: readonly number[];
    },
    options: { loop: EventLoop; log: Logger },
  ) {
    this.#forwardCid = target.forwardCid;
    this.#ports = target.listenPorts;
    this.#seqpacketPorts = target.seqpacketPorts ?? [];
    this.#loop = options.loop;
    this.#log = options.log;
    this.description = `vsock: forward to CID ${target.forwardCid}, listen on ` +
      (target.listenPorts.length ? target.listenPorts.join("+") : "no port") +
      (this.#seqpacketPorts.length ? `, SOCK_SEQPACKET on ${this.#seqpacketPorts.join("+")}` : "");
  }

  start(handler: HostConnectHandler): void {
    for (const port of this.#ports) {
      const fd = listenVsock(port);
      this.#listeners.push(fd);
      this.#loop.watch(fd, () => this.#accept(fd, { port, handler, seqpacket: false }));
    }
    for (const port of this.#seqpacketPorts) {
      const fd = listenVsock(port, { seqpacket: true });
      this.#listeners.push(fd);
      this.#loop.watch(fd, () => this.#accept(fd, { port, handler, seqpacket: true }));
    }
  }

  /** An AF_VSOCK program connected to a plain port: its stream carries only the guest's bytes. */
  confirmation(): null {
    return null;
  }

  /** AF_VSOCK SOCK_SEQPACKET to the forward CID for a guest SEQPACKET connection. */
  connect(port: number, options: { seqpacket?: boolean } = {}): HostStream {
    const seqpacket = options.seqpacket ?? false;
    const { fd, pending } = connectVsock(this.#forwardCid, port, { seqpacket });
    return new SocketStream(fd, { pending, seqpacket, helperThreadSends: seqpacket });
  }

  close(options: { unwatch?: boolean } = {}): void {
    for (const fd of this.#listeners) {
      if (options.unwatch ?? true) this.#loop.unwatch(fd);
      close(fd);
    }
    this.#listeners.length = 0;
  }

  #accept(
    listener: number,
    target: { port: number; handler: HostConnectHandler; seqpacket: boolean },
  ): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptVsock(listener);
      } catch (error) {
        this.#log.error(`vsock port ${target.port}: accept failed: ${error}`);
        return;
      }
      if (fd === null) return;
      const seqpacket = target.seqpacket;
      const stream = new SocketStream(fd, { seqpacket, helperThreadSends: seqpacket });
      if (!target.handler(stream, target.port)) stream.close();
    }
  }
}

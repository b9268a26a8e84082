/**
 * The daemon's lifecycle: listen on each socket, serve one front-end at a
 * time per socket, and after it hangs up reset the device and wait for the
 * next (a restarted QEMU reconnects to a live back-end). SIGINT and SIGTERM
 * end it cleanly, removing the socket files it created.
 *
 * @module
 */

import { SyscallError } from "../ffi/errno.ts";
import { close, setNonBlocking } from "../ffi/fd.ts";
import { acceptUnix, listenUnix } from "../ffi/socket.ts";
import { Backend } from "./backend.ts";
import type { VirtioDevice } from "./device.ts";
import { EventLoop, type WaitPolicy } from "./event_loop.ts";
import type { Logger } from "./log.ts";

/** Where one instance listens: a path to bind, or an inherited listening fd. */
export type ListenAddress = { readonly path: string } | { readonly fd: number };

/**
 * The socket paths for `count` instances. `indexed` appends the instance
 * number to the path (`<path>0 … <path>N-1`, even for one instance, as the
 * Rust rng, gpio and i2c daemons do); otherwise the path is used as given
 * and `count` must be 1.
 */
export function socketPaths(path: string, options: { count: number; indexed: boolean }): string[] {
  if (!options.indexed) {
    if (options.count !== 1) {
      throw new RangeError("--socket-count above 1 needs indexed socket paths");
    }
    return [path];
  }
  return Array.from({ length: options.count }, (_, i) => `${path}${i}`);
}

/** Options for {@link Daemon}. */
export interface DaemonOptions {
  /** The daemon's logger. */
  readonly log: Logger;
  /** Builds a fresh device for each connection on listener `index`. */
  readonly createDevice: (index: number) => VirtioDevice;
  /** Exit after the first front-end hangs up (rust-vmm's scsi and gpu do). */
  readonly serveOnce?: boolean;
  /** How the event loop waits (default `hybrid`); see {@link WaitPolicy}. */
  readonly waitPolicy?: WaitPolicy;
  /** Cap of the adaptive poll window in µs (default `DEFAULT_POLL_MICROS`; 0: never poll); see {@link EventLoop}. */
  readonly pollMicros?: number;
}

/** One listening socket and the connection it serves, if any. */
class Listener {
  readonly fd: number;
  readonly path: string | null;
  readonly index: number;
  backend: Backend | null = null;

  constructor(fd: number, path: string | null, index: number) {
    this.fd = fd;
    this.path = path;
    this.index = index;
  }
}

/**
 * Removes a stale socket file at `path` before binding it, refusing to
 * delete anything that is not a socket.
 */
export function removeStaleSocket(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) throw new Error(`${path} exists and is not a socket`);
  Deno.removeSync(path);
}

/** Serves vhost-user front-ends on a set of sockets until a signal or {@link stop}. */
export class Daemon {
  /** The event loop everything runs on. */
  readonly loop: EventLoop;
  readonly #log: Logger;
  readonly #options: DaemonOptions;
  readonly #listeners: Listener[] = [];
  #served = 0;

  /** A daemon with no sockets yet. */
  constructor(options: DaemonOptions) {
    this.#log = options.log;
    this.#options = options;
    this.loop = new EventLoop(options.log, {
      policy: options.waitPolicy,
      pollMicros: options.pollMicros,
    });
  }

  /** Starts listening on `address`; the instance number is the order of calls. */
  listen(address: ListenAddress): void {
    const index = this.#listeners.length;
    let listener: Listener;
    if ("path" in address) {
      removeStaleSocket(address.path);
      listener = new Listener(listenUnix(address.path), address.path, index);
      this.#log.info(`listening on ${address.path}`);
    } else {
      // An inherited socket may be blocking; accept must never wait.
      setNonBlocking(address.fd, true);
      listener = new Listener(address.fd, null, index);
      this.#log.info(`serving the listening socket on fd ${address.fd}`);
    }
    this.#listeners.push(listener);
    this.loop.watch(listener.fd, () => this.#accept(listener));
  }

  /** Serves until SIGINT, SIGTERM or {@link stop}, then cleans up. */
  async run(): Promise<void> {
    const stop = () => this.stop();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    try {
      await this.loop.run();
    } finally {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      this.#shutdown();
    }
  }

  /** Ends {@link run} after the current pass of the loop. */
  stop(): void {
    this.loop.stop();
  }

  #accept(listener: Listener): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptUnix(listener.fd);
      } catch (error) {
        // EMFILE and the like: log, and let the next readiness retry.
        this.#log.error(`accept failed: ${error instanceof SyscallError ? error.message : error}`);
        return;
      }
      if (fd === null) return;
      if (listener.backend) {
        this.#log.warn(
          `socket ${this.#name(listener)}: a front-end is already connected; refusing another`,
        );
        close(fd);
        continue;
      }
      this.#serve(listener, fd);
    }
  }

  #serve(listener: Listener, fd: number): void {
    this.#served++;
    const log = this.#listeners.length > 1 ? this.#log.child(`socket${listener.index}`) : this.#log;
    log.info(`front-end connected on ${this.#name(listener)}`);
    const device = this.#options.createDevice(listener.index);
    listener.backend = new Backend(fd, device, {
      loop: this.loop,
      log,
      onClose: () => {
        listener.backend = null;
        if (this.#options.serveOnce) this.stop();
        else log.info(`waiting for a front-end on ${this.#name(listener)}`);
      },
    });
  }

  #name(listener: Listener): string {
    return listener.path ?? `fd ${listener.fd}`;
  }

  #shutdown(): void {
    for (const listener of this.#listeners) {
      listener.backend?.close("the daemon is stopping");
      this.loop.unwatch(listener.fd);
      close(listener.fd);
      if (listener.path !== null) {
        try {
          Deno.removeSync(listener.path);
        } catch {
          // Already gone: nothing to clean.
        }
      }
    }
    this.#listeners.length = 0;
    this.loop.close();
    this.#log.info(`stopped after serving ${this.#served} connection(s)`);
  }
}

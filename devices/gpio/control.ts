/**
 * The control socket of the simulated chips (`--sim-control <PATH>`): the
 * outside world of a chip that exists only in software. A test, or a
 * developer without hardware, connects to the Unix stream socket and sends
 * one command per line; each gets one reply line.
 *
 * | command                    | reply                       | meaning                                        |
 * | -------------------------- | --------------------------- | ---------------------------------------------- |
 * | `set <chip> <line> <0\|1>` | `ok`                        | drive the line from outside (a pull up / down) |
 * | `get <chip> <line>`        | `<value> <direction> <edges>` | the line now: `1 out none`, `0 in both`…     |
 * | `lines <chip>`             | `<count>`                   | the chip's number of lines                     |
 *
 * `<chip>` is the chip's position in `--device-list` (socket `<path><chip>`).
 * A mistake gets `error <reason>`. An input line follows `set` at once and
 * the edge reaches the guest as an interrupt if it asked for one; an output
 * keeps what the guest drives (`get` shows it). For example:
 *
 * ```sh
 * echo "set 0 3 1" | socat - UNIX-CONNECT:/tmp/gpio-sim.sock
 * ```
 *
 * @module
 */

import type { EventLoop } from "../../core/event_loop.ts";
import type { Logger } from "../../core/log.ts";
import { acceptUnix, close, EPOLLIN, listenUnix, read, write } from "../../ffi/mod.ts";
import { removeStaleSocket } from "../../core/daemon.ts";
import type { SimulatedChip } from "./sim_chip.ts";

/** Longest command line accepted; a longer one closes the connection. */
export const MAX_COMMAND_LENGTH = 256;
/** Most clients connected at once; more are refused. */
export const MAX_CLIENTS = 16;

const DIRECTIONS = ["none", "out", "in"] as const;

/** Runs one command against `chips`; returns the reply line (without newline). */
export function runCommand(line: string, chips: ReadonlyMap<number, SimulatedChip>): string {
  const words = line.trim().split(/\s+/);
  const [verb, ...args] = words;
  const number = (text: string | undefined, what: string): number => {
    if (text === undefined || !/^[0-9]+$/.test(text)) throw new Error(`${what} is not a number`);
    return Number(text);
  };
  try {
    const chipOf = (text: string | undefined): SimulatedChip => {
      const index = number(text, "chip");
      const chip = chips.get(index);
      if (!chip) throw new Error(`no simulated chip ${index}`);
      return chip;
    };
    const lineOf = (chip: SimulatedChip, text: string | undefined): number => {
      const offset = number(text, "line");
      if (offset >= chip.numLines) {
        throw new Error(`line ${offset} is past the chip's ${chip.numLines}`);
      }
      return offset;
    };
    switch (verb) {
      case "set": {
        if (args.length !== 3) throw new Error("usage: set <chip> <line> <0|1>");
        const chip = chipOf(args[0]);
        const offset = lineOf(chip, args[1]);
        if (args[2] !== "0" && args[2] !== "1") throw new Error("the level is 0 or 1");
        chip.drive(offset, args[2] === "1" ? 1 : 0);
        return "ok";
      }
      case "get": {
        if (args.length !== 2) throw new Error("usage: get <chip> <line>");
        const chip = chipOf(args[0]);
        const state = chip.state(lineOf(chip, args[1]));
        return `${state.value} ${DIRECTIONS[state.direction]} ${state.edges}`;
      }
      case "lines": {
        if (args.length !== 1) throw new Error("usage: lines <chip>");
        return String(chipOf(args[0]).numLines);
      }
      default:
        throw new Error(`unknown command '${verb ?? ""}' (set, get, lines)`);
    }
  } catch (error) {
    return `error ${error instanceof Error ? error.message : error}`;
  }
}

/** The control socket, served on the daemon's event loop. */
export class SimControlServer {
  readonly #loop: EventLoop;
  readonly #log: Logger;
  readonly #chips: ReadonlyMap<number, SimulatedChip>;
  readonly #path: string;
  readonly #listener: number;
  readonly #clients = new Map<number, string>();

  /** Listens at `path` (a stale socket there is replaced) for commands on `chips`. */
  constructor(
    path: string,
    options: { loop: EventLoop; log: Logger; chips: ReadonlyMap<number, SimulatedChip> },
  ) {
    this.#loop = options.loop;
    this.#log = options.log;
    this.#chips = options.chips;
    this.#path = path;
    removeStaleSocket(path);
    this.#listener = listenUnix(path, 8);
    this.#loop.watch(this.#listener, () => this.#accept());
    this.#log.info(`simulated chips' control socket on ${path}`);
  }

  /** Closes the clients and the socket, and removes its file. */
  close(): void {
    for (const fd of [...this.#clients.keys()]) this.#drop(fd);
    this.#loop.unwatch(this.#listener);
    close(this.#listener);
    try {
      Deno.removeSync(this.#path);
    } catch {
      // Already gone.
    }
  }

  #accept(): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptUnix(this.#listener);
      } catch (error) {
        this.#log.error(
          `control socket: accept failed: ${error instanceof Error ? error.message : error}`,
        );
        return;
      }
      if (fd === null) return;
      if (this.#clients.size >= MAX_CLIENTS) {
        this.#log.warn(`control socket: ${MAX_CLIENTS} clients already; refusing another`);
        close(fd);
        continue;
      }
      this.#clients.set(fd, "");
      this.#loop.watch(fd, () => this.#serve(fd), { events: EPOLLIN });
    }
  }

  #serve(fd: number): void {
    const buffer = new Uint8Array(4096);
    let pending = this.#clients.get(fd) ?? "";
    let replies = "";
    let end = false;
    try {
      for (;;) {
        const n = read(fd, buffer);
        if (n === null) break;
        if (n === 0) {
          end = true;
          break;
        }
        pending += new TextDecoder().decode(buffer.subarray(0, n));
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          const command = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (command.trim() === "") continue;
          const reply = runCommand(command, this.#chips);
          if (reply.startsWith("error")) this.#log.warn(`control socket: '${command}': ${reply}`);
          else this.#log.debug(`control socket: '${command}' -> ${reply}`);
          replies += reply + "\n";
        }
        if (pending.length > MAX_COMMAND_LENGTH) {
          this.#log.warn(
            `control socket: a command longer than ${MAX_COMMAND_LENGTH} bytes; closing`,
          );
          end = true;
          break;
        }
      }
      if (replies !== "" && !this.#send(fd, replies)) end = true;
    } catch (error) {
      this.#log.warn(`control socket: ${error instanceof Error ? error.message : error}`);
      end = true;
    }
    if (end) this.#drop(fd);
    else this.#clients.set(fd, pending);
  }

  /** Writes all of `text`; false if the client does not read (it is then dropped). */
  #send(fd: number, text: string): boolean {
    const bytes = new TextEncoder().encode(text);
    let sent = 0;
    while (sent < bytes.length) {
      const n = write(fd, bytes.subarray(sent));
      if (n === null) {
        this.#log.warn("control socket: a client does not read its replies; closing it");
        return false;
      }
      sent += n;
    }
    return true;
  }

  #drop(fd: number): void {
    this.#clients.delete(fd);
    if (this.#loop.watching(fd)) this.#loop.unwatch(fd);
    close(fd);
  }
}

/**
 * The Deno floor of the core benchmark: the same eventfd ping-pong as
 * `eventfd_pingpong.c`, between two Deno processes using this project's FFI
 * wrappers and the same calls the benchmark's front-end and the daemon make
 * per request (front-end: write the kick, block reading the call; daemon:
 * epoll_wait on the edge-triggered kick, write the call), with no vhost-user
 * or ring work. The gap from the C floor is the runtime's and epoll's; the
 * gap above it is ours.
 *
 * Run as `deno run -A deno_pingpong.ts child <socket>`; the benchmark imports
 * {@link denoPingPong} for the parent side.
 *
 * @module
 */

import {
  acceptUnix,
  close,
  connectUnix,
  createEventFd,
  Epoll,
  EPOLLET,
  EPOLLIN,
  listenUnix,
  read,
  receiveWithFds,
  sendWithFds,
  setNonBlocking,
  signalEventFd,
} from "../../ffi/mod.ts";

/** Measures `rounds` round trips against a child pinned to `cpu`; returns µs per round trip. */
export async function denoPingPong(
  dir: string,
  options: { rounds: number; cpu: number },
): Promise<number> {
  const path = `${dir}/pingpong.sock`;
  const listener = listenUnix(path);
  const kick = createEventFd();
  const call = createEventFd({ blocking: true });
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      String(options.cpu),
      Deno.execPath(),
      "run",
      "-A",
      import.meta.filename!,
      "child",
      path,
      String(options.rounds),
    ],
  }).spawn();
  let connection: number | null;
  while ((connection = acceptUnix(listener)) === null) await new Promise((r) => setTimeout(r, 5));
  setNonBlocking(connection, false);
  sendWithFds(connection, new Uint8Array(1), { fds: [kick, call] });
  const counter = new Uint8Array(8);
  const start = performance.now();
  for (let i = 0; i < options.rounds; i++) {
    signalEventFd(kick);
    read(call, counter);
  }
  const micros = (performance.now() - start) * 1000 / options.rounds;
  await child.status;
  for (const fd of [connection, listener, kick, call]) close(fd);
  Deno.removeSync(path);
  return micros;
}

if (import.meta.main && Deno.args[0] === "child") {
  const socket = connectUnix(Deno.args[1]);
  const received = receiveWithFds(socket, new Uint8Array(1))!;
  const [kick, call] = received.fds;
  const epoll = new Epoll(1);
  epoll.add(kick, { events: EPOLLIN | EPOLLET, token: 0 });
  for (let i = 0; i < Number(Deno.args[2]); i++) {
    epoll.wait(1000);
    signalEventFd(call);
  }
}

/**
 * A test tool: records a PipeWire sink's monitor (48 kHz stereo S16) into a
 * raw file, losslessly on a loaded host. `pw-record` keeps PipeWire's
 * default two buffers, and its main thread, late by two quanta, made the
 * graph drop a quantum (in the PipeWire test, at load 10 on two cores,
 * `pw-record` lost quanta the guest's stream had delivered: a second
 * `pw-record` on the same monitor lost others). This recorder asks for
 * {@link BUFFERS} buffers, so it may fall behind by that many quanta, and
 * runs PipeWire's data thread with real-time priority where allowed
 * (`client-rt.conf`, as `pw-record` does; ffi/pipewire.ts).
 *
 * `deno run -A devices/sound/monitor_recorder.ts <SINK> <OUT.raw>`: prints
 * `streaming` once linked; on SIGINT writes everything it recorded to
 * `OUT.raw` and exits.
 *
 * @module
 */

import { Epoll, EPOLLIN } from "../../ffi/epoll.ts";
import {
  PipeWireLoop,
  PipeWireStream,
  PW_DIRECTION_INPUT,
  PW_STREAM_STATE_ERROR,
  PW_STREAM_STATE_STREAMING,
  SPA_AUDIO_FORMAT_S16_LE,
} from "../../ffi/pipewire.ts";

/** Buffers asked for: the recorder may fall this many quanta behind the graph. */
const BUFFERS = 32;

async function main(args: string[]): Promise<number> {
  const [sink, out] = args;
  if (!sink || !out) {
    console.error("usage: monitor_recorder.ts <SINK> <OUT.raw>");
    return 2;
  }
  const loop = new PipeWireLoop();
  const chunks: Uint8Array[] = [];
  let failed: string | null = null;
  const stream = PipeWireStream.connect(loop, {
    direction: PW_DIRECTION_INPUT,
    properties: [
      "media.type=Audio",
      "media.category=Capture",
      "node.name=monitor-recorder",
      "stream.capture.sink=true",
      `target.object=${sink}`,
      "node.latency=2048/48000",
    ].join(" "),
    format: { format: SPA_AUDIO_FORMAT_S16_LE, rate: 48000, channels: 2, positions: [3, 4] },
    buffers: BUFFERS,
  }, {
    process: () => {
      for (let buffer = stream.dequeue(); buffer; buffer = stream.dequeue()) {
        chunks.push(PipeWireStream.filled(buffer).slice());
        stream.queue(buffer);
      }
    },
    stateChanged: (state, error) => {
      if (state === PW_STREAM_STATE_STREAMING) console.log("streaming");
      if (state === PW_STREAM_STATE_ERROR) failed = error ?? "stream error";
    },
  });
  stream.setActive(true);
  let stopped = false;
  const stop = () => stopped = true;
  Deno.addSignalListener("SIGINT", stop);
  const epoll = new Epoll();
  epoll.add(loop.fd, { events: EPOLLIN, token: 1 });
  while (!stopped && failed === null) {
    await epoll.waitAsync(100);
    loop.iterate();
  }
  Deno.removeSignalListener("SIGINT", stop);
  stream.destroy();
  loop.close();
  epoll.close();
  const bytes = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  await Deno.writeFile(out, bytes);
  if (failed !== null) console.error(`monitor_recorder: ${failed}`);
  return failed === null ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

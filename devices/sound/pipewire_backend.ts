/**
 * `--backend pipewire`: one PipeWire stream per virtio stream, on one
 * PipeWire loop whose fd sits in the daemon's epoll set and which is
 * iterated on the daemon's thread (ffi/pipewire.ts). PipeWire's graph pulls
 * playback and pushes capture at its own clock, so the guest is paced by
 * the sound server: a played buffer returns once PipeWire has taken it.
 * When the guest has nothing queued, PipeWire gets silence (not stale data).
 *
 * If PipeWire is not running, or goes away (restarted, crashed), the stream
 * falls back to the daemon's timer: the guest plays into silence and
 * records silence at the real rate, and its next PCM_PREPARE (its next
 * `aplay`) tries PipeWire again.
 *
 * @module
 */

import {
  type AudioFormat,
  PipeWireLoop,
  PipeWireStream,
  PW_DIRECTION_INPUT,
  PW_DIRECTION_OUTPUT,
  PW_STREAM_STATE_ERROR,
  PW_STREAM_STATE_STREAMING,
  PW_STREAM_STATE_UNCONNECTED,
  SPA_AUDIO_FORMAT_S16_LE,
  SPA_AUDIO_FORMAT_S24_32_LE,
  SPA_AUDIO_FORMAT_S32_LE,
  SPA_AUDIO_FORMAT_U8,
} from "../../ffi/pipewire.ts";
import { armTimerFd, close, createTimerFd, drainEventFd } from "../../ffi/mod.ts";
import type { AudioBackend, HostEnvironment, HostStream, StreamPort } from "./backend.ts";
import { ClockedStream, MIN_XRUN_GRACE_MS } from "./clocked_stream.ts";
import {
  bytesPerSecond,
  DEFAULT_CAPABILITIES,
  frameBytes,
  type PcmParams,
  type StreamCapabilities,
} from "./pcm.ts";
import {
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U8,
} from "./spec.ts";

const SPA_FORMATS: ReadonlyMap<number, number> = new Map([
  [VIRTIO_SND_PCM_FMT_U8, SPA_AUDIO_FORMAT_U8],
  [VIRTIO_SND_PCM_FMT_S16, SPA_AUDIO_FORMAT_S16_LE],
  [VIRTIO_SND_PCM_FMT_S24, SPA_AUDIO_FORMAT_S24_32_LE],
  [VIRTIO_SND_PCM_FMT_S32, SPA_AUDIO_FORMAT_S32_LE],
]);

/** The shortest PipeWire quantum asked for, in seconds (4096 frames at 48 kHz). */
const MIN_QUANTUM_SECONDS = 4096 / 48000;

/** How long a released playback stream lives on to play what PipeWire had queued. */
const DRAIN_MS = 500;

/**
 * How much guest audio a playback stream keeps queued in PipeWire ahead of
 * its graph. PipeWire's data thread takes one queued buffer per cycle on its
 * own; refilling happens on the daemon's loop, so a loop late by up to this
 * long (a loaded host) no longer makes PipeWire play a quantum of silence.
 */
const AHEAD_SECONDS = 0.25;

/** PipeWire buffers per stream (its default is 2): room to queue {@link AHEAD_SECONDS}. */
const BUFFERS = 16;

/** `SPA_AUDIO_CHANNEL_*` for 1 to 6 channels, in ALSA's (and the guest's) order. */
const POSITIONS: readonly (readonly number[])[] = [
  [],
  [2], // MONO
  [3, 4], // FL FR
  [3, 4, 5], // FL FR FC
  [3, 4, 12, 13], // FL FR RL RR
  [3, 4, 5, 12, 13], // FL FR FC RL RR
  [3, 4, 5, 6, 12, 13], // FL FR FC LFE RL RR
];

/** One virtio stream on a PipeWire stream. */
class PipeWireHostStream implements HostStream {
  readonly #port: StreamPort;
  readonly #environment: HostEnvironment;
  readonly #loop: () => PipeWireLoop;
  #stream: PipeWireStream | null = null;
  #clock: ClockedStream | null = null;
  #params: PcmParams | null = null;
  #running = false;
  #streamed = false;
  #starvedAt: number | null = null;
  #xrunSent = false;
  /** Frames PipeWire takes per cycle (its quantum), learned from `pw_buffer.requested`. */
  #quantum = 0;
  /** A timerfd that tops up a running playback stream between PipeWire's requests. */
  #topUp: number | null = null;

  constructor(port: StreamPort, environment: HostEnvironment, loop: () => PipeWireLoop) {
    this.#port = port;
    this.#environment = environment;
    this.#loop = loop;
  }

  prepare(params: PcmParams): void {
    this.release();
    this.#params = params;
    const format = SPA_FORMATS.get(params.format.code);
    if (format === undefined) throw new Error(`no PipeWire format for ${params.format.name}`);
    const audio: AudioFormat = {
      format,
      rate: params.rate,
      channels: params.channels,
      positions: POSITIONS[params.channels] ?? [],
    };
    const output = this.#port.direction === "output";
    // A quantum of a guest period, but at least ~85 ms (4096 frames at 48 kHz): the stream's
    // process callback runs on the daemon's loop, which on a loaded host missed 21 ms cycles
    // (PipeWire then drops the late buffer: whole quanta were missing from the sink).
    const frames = Math.max(
      Math.round(params.periodBytes / frameBytes(params)),
      Math.ceil(params.rate * MIN_QUANTUM_SECONDS),
    );
    this.#quantum = frames;
    const properties = [
      "media.type=Audio",
      `media.category=${output ? "Playback" : "Capture"}`,
      "media.role=Game",
      `node.name=vhost-device-sound.${output ? "output" : "input"}`,
      `node.description=vhost-device-sound-${output ? "output" : "input"}`,
      `node.latency=${frames}/${params.rate}`,
    ].join(" ");
    try {
      // Callbacks belong to this stream: a released one may still be draining.
      let created: PipeWireStream | null = null;
      created = PipeWireStream.connect(this.#loop(), {
        direction: output ? PW_DIRECTION_OUTPUT : PW_DIRECTION_INPUT,
        properties,
        format: audio,
        buffers: BUFFERS,
      }, {
        process: () => {
          if (created !== null && created === this.#stream) this.#process(created);
        },
        stateChanged: (state, error) => {
          if (created !== null && created === this.#stream) this.#stateChanged(state, error);
        },
      });
      this.#stream = created;
    } catch (error) {
      this.#environment.log.error(
        `PipeWire stream failed (${
          error instanceof Error ? error.message : error
        }): the guest plays into silence until it prepares the stream again`,
      );
      this.#useClock(params);
    }
  }

  start(): void {
    this.#running = true;
    this.#starvedAt = null;
    this.#xrunSent = false;
    if (this.#clock) this.#clock.start();
    else {
      this.#stream?.setActive(true);
      this.#scheduleTopUp();
    }
  }

  stop(): void {
    this.#running = false;
    this.#stopTopUp();
    this.#clock?.stop();
    // Playback keeps flowing (silence from now on) so what PipeWire queued still plays.
    if (this.#port.direction === "input") this.#stream?.setActive(false);
  }

  release(): void {
    this.#running = false;
    this.#stopTopUp();
    this.#clock?.close();
    this.#clock = null;
    const stream = this.#stream;
    this.#stream = null;
    this.#streamed = false;
    if (!stream) return;
    // The guest's last buffers returned when PipeWire took them; PipeWire keeps a few
    // quanta queued: let them play before the stream goes.
    if (this.#port.direction === "output") {
      this.#environment.loop.setTimer(DRAIN_MS, () => stream.destroy());
    } else stream.destroy();
  }

  wake(): void {
    this.#clock?.wake();
    if (this.#running && this.#stream && this.#port.direction === "output") {
      this.#fill(this.#stream, { starving: false });
    }
  }

  /**
   * PipeWire's share of the latency: its graph's delay to the device
   * (`pw_time.delay`) plus, for playback, the frames queued in the stream.
   */
  delayBytes(): number {
    const params = this.#params;
    if (!this.#stream || !params) return 0;
    try {
      const time = this.#stream.time();
      const queued = this.#port.direction === "output" ? time.queued : 0;
      return Math.max(0, Math.round(time.delaySeconds * params.rate) + queued) *
        frameBytes(params);
    } catch {
      return 0;
    }
  }

  close(): void {
    this.release();
    if (this.#topUp === null) return;
    this.#environment.loop.unwatch(this.#topUp);
    close(this.#topUp);
    this.#topUp = null;
  }

  #useClock(params: PcmParams): void {
    this.#clock = new ClockedStream(this.#port, this.#environment, {});
    this.#clock.prepare(params, { newParams: false });
  }

  #stateChanged(state: number, error: string | null): void {
    if (state === PW_STREAM_STATE_STREAMING) this.#streamed = true;
    const lost = state === PW_STREAM_STATE_ERROR ||
      (state === PW_STREAM_STATE_UNCONNECTED && this.#streamed);
    if (!lost || !this.#params) return;
    this.#environment.log.error(
      `PipeWire stream ended (${
        error ?? "disconnected"
      }): the guest plays into silence until it prepares the stream again`,
    );
    const params = this.#params;
    const running = this.#running;
    // Destroying the stream inside its own callback is not allowed: do it after this pass.
    const stream = this.#stream;
    this.#stream = null;
    this.#stopTopUp();
    this.#environment.loop.defer(() => stream?.destroy());
    this.#useClock(params);
    if (running) this.#clock?.start();
  }

  #process(stream: PipeWireStream): void {
    const params = this.#params;
    if (!params) return;
    if (this.#port.direction === "output") {
      this.#fill(stream, { starving: true });
      return;
    }
    // Capture: every buffer the graph filled since the last pass, in order.
    for (let buffer = stream.dequeue(); buffer; buffer = stream.dequeue()) {
      const data = PipeWireStream.filled(buffer);
      const taken = this.#running ? this.#port.write(data) : 0;
      stream.queue(buffer);
      this.#track(taken < data.length);
    }
  }

  /**
   * Playback: queues guest audio, a quantum per buffer, until
   * {@link AHEAD_SECONDS} are queued or the guest has less than a quantum.
   * `starving` (PipeWire asked): if nothing is queued, a buffer goes anyway,
   * what the guest has then silence, never stale data (upstream #984); so do
   * the guest's last frames once PipeWire's queue is down to one buffer.
   */
  #fill(stream: PipeWireStream, options: { starving: boolean }): void {
    const params = this.#params;
    if (!params) return;
    const frame = frameBytes(params);
    const time = stream.time();
    let queued = time.queued;
    let starving = options.starving && time.queuedBuffers === 0;
    // At most the buffer PipeWire takes next is queued: the guest's last frames (the end of a
    // drain, or a guest running late) go now, padded with silence, rather than after the
    // quantum of silence PipeWire would play once the queue ran dry.
    const low = time.queuedBuffers <= 1;
    const target = Math.max(2 * this.#quantum, Math.ceil(AHEAD_SECONDS * params.rate));
    while (queued < target) {
      const guest = this.#running ? Math.floor(this.#port.queuedBytes() / frame) : 0;
      if (guest < this.#quantum && !starving && !(low && guest > 0)) break;
      const buffer = stream.dequeue();
      if (!buffer) break;
      if (buffer.requested > 0) this.#quantum = buffer.requested;
      const frames = Math.min(this.#quantum, Math.floor(buffer.bytes.length / frame));
      const bytes = buffer.bytes.subarray(0, frames * frame);
      const read = this.#running ? this.#port.read(bytes) : 0;
      bytes.fill(params.format.unsigned ? 0x80 : 0, read);
      stream.queue(buffer, { size: bytes.length, stride: frame });
      queued += frames;
      this.#track(read < bytes.length);
      starving = false;
    }
  }

  /**
   * Arms the top-up timer: a quantum from now (between 10 and 100 ms), while
   * the playback stream runs. One timerfd per stream, made on first use.
   */
  #scheduleTopUp(): void {
    const params = this.#params;
    if (!params || this.#port.direction !== "output") return;
    if (this.#topUp === null) {
      const fd = createTimerFd();
      this.#environment.loop.watch(fd, () => {
        drainEventFd(fd);
        const stream = this.#stream;
        if (!this.#running || !stream) return;
        this.#fill(stream, { starving: false });
        this.#scheduleTopUp();
      });
      this.#topUp = fd;
    }
    armTimerFd(this.#topUp, Math.min(Math.max(this.#quantum / params.rate * 1000, 10), 100));
  }

  #stopTopUp(): void {
    if (this.#topUp !== null) armTimerFd(this.#topUp, 0);
  }

  /** PCM_XRUN once the guest has left a running stream short for a period (at least 50 ms). */
  #track(short: boolean): void {
    if (!short || !this.#running) {
      this.#starvedAt = null;
      this.#xrunSent = false;
      return;
    }
    const now = performance.now();
    this.#starvedAt ??= now;
    const params = this.#params!;
    const grace = Math.max(params.periodBytes / bytesPerSecond(params) * 1000, MIN_XRUN_GRACE_MS);
    if (!this.#xrunSent && now - this.#starvedAt >= grace) {
      this.#xrunSent = true;
      this.#port.xrun();
    }
  }
}

/** The PipeWire back-end. */
export class PipeWireBackend implements AudioBackend {
  readonly name = "pipewire";
  #loop: PipeWireLoop | null = null;

  capabilities(): StreamCapabilities {
    return DEFAULT_CAPABILITIES;
  }

  openStream(port: StreamPort, environment: HostEnvironment): HostStream {
    return new PipeWireHostStream(port, environment, () => this.#pipewireLoop(environment));
  }

  /** Daemon shutdown: the event loop is already closed, so only PipeWire's goes. */
  close(): void {
    this.#loop?.close();
    this.#loop = null;
  }

  /** The PipeWire loop, made on first use and watched by the daemon's loop. */
  #pipewireLoop(environment: HostEnvironment): PipeWireLoop {
    if (this.#loop) return this.#loop;
    const loop = new PipeWireLoop();
    environment.loop.watch(loop.fd, () => loop.iterate());
    this.#loop = loop;
    return loop;
  }
}

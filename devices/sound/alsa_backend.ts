/**
 * `--backend alsa`: each virtio stream plays or records through an ALSA PCM
 * (`--device`, default `default`) opened non-blocking through alsa-lib.
 * The PCM's poll descriptors sit in the daemon's epoll set, so the sound
 * card's own clock paces the guest: a played buffer returns once ALSA has
 * taken it, a captured one once ALSA has filled it.
 *
 * Two cases fall back to the daemon's timer (as the `null` back-end): PCMs
 * whose descriptors epoll refuses (alsa-lib's `null` and `file` plugins
 * poll /dev/null, which has no poll method; they are never "busy" either,
 * so the timer is the only clock they have), and a PCM that failed beyond
 * recovery (a USB card unplugged): the guest keeps running on silence, and
 * the next PCM_PREPARE tries ALSA again.
 *
 * @module
 */

import { SyscallError } from "../../ffi/mod.ts";
import {
  AlsaPcm,
  EAGAIN,
  POLLERR,
  POLLIN,
  POLLOUT,
  SND_PCM_FORMAT_S16_LE,
  SND_PCM_FORMAT_S24_LE,
  SND_PCM_FORMAT_S32_LE,
  SND_PCM_FORMAT_U8,
  SND_PCM_STATE_PREPARED,
  SND_PCM_STATE_RUNNING,
  SND_PCM_STREAM_CAPTURE,
  SND_PCM_STREAM_PLAYBACK,
} from "../../ffi/alsa.ts";
import type { AudioBackend, HostEnvironment, HostStream, StreamPort } from "./backend.ts";
import type { Timer } from "../../core/event_loop.ts";
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

const ALSA_FORMATS: ReadonlyMap<number, number> = new Map([
  [VIRTIO_SND_PCM_FMT_U8, SND_PCM_FORMAT_U8],
  [VIRTIO_SND_PCM_FMT_S16, SND_PCM_FORMAT_S16_LE],
  [VIRTIO_SND_PCM_FMT_S24, SND_PCM_FORMAT_S24_LE],
  [VIRTIO_SND_PCM_FMT_S32, SND_PCM_FORMAT_S32_LE],
]);

/** Host buffer bounds: at least 100 ms (two PipeWire quanta through its ALSA plugin), at most 500 ms. */
const MIN_LATENCY_US = 100_000;
const MAX_LATENCY_US = 500_000;
const EPERM = 1;

/** One virtio stream on an ALSA PCM. */
class AlsaStream implements HostStream {
  readonly #port: StreamPort;
  readonly #environment: HostEnvironment;
  readonly #device: string;
  #pcm: AlsaPcm | null = null;
  #watched: number[] = [];
  #events = 0;
  /** Timer pacing, for a PCM that cannot be polled or is gone. */
  #clock: ClockedStream | null = null;
  #params: PcmParams | null = null;
  #running = false;
  #scratch = new Uint8Array(0);
  #overrun = false;
  #starvedAt: number | null = null;
  #starveTimer: Timer | null = null;
  #xrunSent = false;

  constructor(port: StreamPort, environment: HostEnvironment, device: string) {
    this.#port = port;
    this.#environment = environment;
    this.#device = device;
  }

  prepare(params: PcmParams): void {
    this.release();
    this.#params = params;
    const format = ALSA_FORMATS.get(params.format.code);
    if (format === undefined) throw new Error(`no ALSA format for ${params.format.name}`);
    // Two guest periods: enough to ride out scheduling, and little to lose at a stop.
    const latency = Math.round(2 * params.periodBytes / bytesPerSecond(params) * 1e6);
    const pcm = AlsaPcm.open(this.#device, {
      stream: this.#port.direction === "output" ? SND_PCM_STREAM_PLAYBACK : SND_PCM_STREAM_CAPTURE,
      format,
      channels: params.channels,
      rate: params.rate,
      latencyMicros: Math.min(Math.max(latency, MIN_LATENCY_US), MAX_LATENCY_US),
    });
    this.#pcm = pcm;
    if (!this.#watch(pcm)) {
      this.#environment.log.info(
        `ALSA PCM ${this.#device} cannot be polled: the daemon's timer paces it`,
      );
      this.#useClock(params, pcm);
    }
  }

  start(): void {
    this.#running = true;
    this.#overrun = false;
    this.#starvedAt = null;
    this.#xrunSent = false;
    // After a STOP the PCM is draining or stopped: start over from prepared.
    const pcm = this.#pcm;
    if (pcm && pcm.state() !== SND_PCM_STATE_PREPARED) {
      pcm.drop();
      pcm.prepare();
    }
    if (this.#clock) {
      if (this.#port.direction === "input") this.#pcm?.start();
      this.#clock.start();
      return;
    }
    if (this.#port.direction === "input") this.#pcm?.start();
    else this.#pump();
    this.#interest(this.#port.direction === "output" ? POLLOUT : POLLIN);
  }

  stop(): void {
    this.#running = false;
    this.#starveTimer?.cancel();
    this.#starveTimer = null;
    this.#clock?.stop();
    this.#interest(0);
    try {
      // The guest's buffers returned when ALSA took them: let ALSA play them out.
      if (this.#port.direction === "output") this.#pcm?.drain();
      else this.#pcm?.drop();
    } catch (error) {
      this.#lost(error);
    }
  }

  release(): void {
    this.#running = false;
    this.#starveTimer?.cancel();
    this.#starveTimer = null;
    this.#clock?.close();
    this.#clock = null;
    for (const fd of this.#watched) this.#environment.loop.unwatch(fd);
    this.#watched = [];
    this.#events = 0;
    const pcm = this.#pcm;
    this.#pcm = null;
    if (!pcm) return;
    // Closing drops what is still draining: close once it has played.
    const left = this.#params ? pcm.delayFrames() / this.#params.rate * 1000 : 0;
    if (this.#port.direction === "output" && left > 0) {
      this.#environment.loop.setTimer(left + 10, () => pcm.close());
    } else pcm.close();
  }

  wake(): void {
    this.#xrunSent = false;
    if (this.#clock) this.#clock.wake();
    else if (this.#running && this.#port.direction === "output") {
      this.#pump();
      this.#interest(POLLOUT);
    }
  }

  delayBytes(): number {
    if (!this.#pcm || !this.#params) return 0;
    return this.#pcm.delayFrames() * frameBytes(this.#params);
  }

  close(): void {
    this.release();
  }

  /** Puts the PCM's descriptors in the loop; false if epoll refuses them. */
  #watch(pcm: AlsaPcm): boolean {
    for (const { fd } of pcm.pollDescriptors()) {
      try {
        this.#environment.loop.watch(fd, (flags) => this.#ready(fd, flags), { events: 0 });
      } catch (error) {
        if (error instanceof SyscallError && error.errno === EPERM) {
          for (const watched of this.#watched) this.#environment.loop.unwatch(watched);
          this.#watched = [];
          return false;
        }
        throw error;
      }
      this.#watched.push(fd);
    }
    return true;
  }

  #interest(events: number): void {
    if (events === this.#events) return;
    this.#events = events;
    for (const fd of this.#watched) this.#environment.loop.rewatch(fd, events);
  }

  #useClock(params: PcmParams, pcm: AlsaPcm | null): void {
    const frame = frameBytes(params);
    this.#clock = new ClockedStream(this.#port, this.#environment, {
      consume: pcm
        ? (bytes) => {
          this.#check(pcm.write(bytes, Math.floor(bytes.length / frame)));
          // Fewer frames than the start threshold never start a playback PCM by themselves.
          if (pcm.state() === SND_PCM_STATE_PREPARED) pcm.start();
        }
        : undefined,
      produce: pcm
        ? (into) => {
          const read = pcm.read(into, Math.floor(into.length / frame));
          into.fill(params.format.unsigned ? 0x80 : 0, Math.max(read, 0) * frame);
          this.#check(read);
        }
        : undefined,
    });
    this.#clock.prepare(params, { newParams: false });
  }

  #ready(fd: number, flags: number): void {
    const pcm = this.#pcm;
    if (!pcm || !this.#running) return;
    try {
      const revents = pcm.revents(fd, flags);
      if (revents & POLLERR) this.#check(pcm.avail());
      if (this.#port.direction === "output") this.#pump();
      else this.#capture();
    } catch (error) {
      this.#lost(error);
    }
  }

  /** Writes as much queued guest audio as ALSA takes. */
  #pump(): void {
    const pcm = this.#pcm;
    const params = this.#params;
    if (!pcm || !params) return;
    const frame = frameBytes(params);
    for (;;) {
      let avail = pcm.avail();
      if (avail < 0) {
        this.#check(avail);
        avail = pcm.avail();
        if (avail < 0) return;
      }
      const frames = Math.min(avail, Math.floor(this.#port.queuedBytes() / frame));
      if (frames === 0) {
        if (this.#port.queuedBytes() < frame) {
          // Nothing queued: stop asking for POLLOUT until the guest sends more.
          this.#interest(0);
          this.#starving(params);
        }
        return;
      }
      this.#starvedAt = null;
      const bytes = this.#buffer(frames * frame);
      const read = this.#port.read(bytes);
      let written = pcm.write(bytes, read / frame);
      if (written < 0) {
        // The guest's buffers are already returned: recover and write the same frames again.
        this.#check(written);
        written = pcm.write(bytes, read / frame);
        if (written < 0) {
          this.#check(written);
          return;
        }
      }
      if (pcm.state() !== SND_PCM_STATE_RUNNING) pcm.start();
    }
  }

  /**
   * The guest left the running stream empty: PCM_XRUN once that has lasted a
   * period (at least 50 ms, as the timer-paced streams do). A host-side xrun
   * while the guest had audio queued is the host's hiccup and is only recovered.
   */
  #starving(params: PcmParams): void {
    if (!this.#running) return;
    const now = performance.now();
    this.#starvedAt ??= now;
    const grace = Math.max(params.periodBytes / bytesPerSecond(params) * 1000, MIN_XRUN_GRACE_MS);
    if (now - this.#starvedAt < grace) {
      this.#starveTimer ??= this.#environment.loop.setTimer(grace, () => {
        this.#starveTimer = null;
        if (this.#port.queuedBytes() === 0) this.#starving(params);
      });
      return;
    }
    if (!this.#xrunSent) {
      this.#xrunSent = true;
      this.#port.xrun();
    }
  }

  /** Reads what ALSA captured into the guest's buffers. */
  #capture(): void {
    const pcm = this.#pcm;
    const params = this.#params;
    if (!pcm || !params) return;
    const frame = frameBytes(params);
    const avail = pcm.avail();
    if (avail <= 0) {
      this.#check(avail);
      return;
    }
    const bytes = this.#buffer(avail * frame);
    const read = pcm.read(bytes, avail);
    if (read < 0) {
      this.#check(read);
      return;
    }
    const taken = this.#port.write(bytes.subarray(0, read * frame));
    if (taken < read * frame && !this.#overrun) {
      // The guest left no room: the rest is lost, as on a real card.
      this.#overrun = true;
      this.#port.xrun();
    } else if (taken === read * frame) this.#overrun = false;
  }

  /** Recovers from an xrun (telling the guest), throws on anything else. */
  #check(result: number): void {
    if (result >= 0 || !this.#pcm) return;
    if (result === -EAGAIN) return;
    this.#pcm.recover(result);
  }

  /** The PCM failed beyond recovery: keep the guest running on the timer. */
  #lost(error: unknown): void {
    const params = this.#params;
    this.#environment.log.error(
      `ALSA PCM ${this.#device} failed (${
        error instanceof Error ? error.message : error
      }): playing silence until the guest prepares the stream again`,
    );
    const running = this.#running;
    this.release();
    if (!params) return;
    this.#params = params;
    this.#useClock(params, null);
    if (running) {
      this.#running = true;
      this.#clock?.start();
    }
  }

  #buffer(size: number): Uint8Array {
    if (this.#scratch.length < size) this.#scratch = new Uint8Array(size);
    return this.#scratch.subarray(0, size);
  }
}

/** The ALSA back-end. */
export class AlsaBackend implements AudioBackend {
  readonly name = "alsa";
  readonly #device: string;

  /** Plays and records through the PCM named `device`. */
  constructor(device: string) {
    this.#device = device;
  }

  capabilities(): StreamCapabilities {
    return DEFAULT_CAPABILITIES;
  }

  openStream(port: StreamPort, environment: HostEnvironment): HostStream {
    return new AlsaStream(port, environment, this.#device);
  }

  close(): void {}
}

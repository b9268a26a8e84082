// The pipewire back-end against a real, headless PipeWire started here: a
// minimal daemon config (a dummy driver, a null sink and a null source, no
// desktop), WirePlumber on a private D-Bus to link streams, and pw-record
// taking the sink's monitor. The guest side is the TypeScript front-end.
import assert from "node:assert/strict";
import { setParamsRequest, SoundDriver, startSoundDaemon, statusOf, u32s } from "./testing.ts";

const OK = 0x8000;
const PERIOD = 4800; // 25 ms of 48 kHz stereo S16
const PARAMS = { bufferBytes: PERIOD * 4, periodBytes: PERIOD, channels: 2, format: 5, rate: 7 };

const CONFIG = `
context.properties = {
  core.daemon = true
  core.name = pipewire-0
  default.clock.rate = 48000
  # 43 ms cycles: every client (the daemon, pw-record) has a generous deadline on a loaded
  # test machine, where 21 ms cycles lost whole quanta.
  default.clock.quantum = 2048
  default.clock.min-quantum = 2048
  default.clock.max-quantum = 2048
  support.dbus = false
  mem.mlock-all = false
}
context.spa-libs = {
  audio.convert.* = audioconvert/libspa-audioconvert
  support.*       = support/libspa-support
}
context.modules = [
  { name = libpipewire-module-protocol-native }
  { name = libpipewire-module-access args = { } }
  { name = libpipewire-module-metadata }
  { name = libpipewire-module-spa-node-factory }
  { name = libpipewire-module-client-node }
  { name = libpipewire-module-adapter }
  { name = libpipewire-module-link-factory }
]
context.objects = [
  { factory = spa-node-factory
    args = { factory.name = support.node.driver node.name = Dummy-Driver
             node.group = pipewire.dummy priority.driver = 20000 } }
  { factory = adapter
    args = { factory.name = support.null-audio-sink node.name = vhost-test-sink
             media.class = Audio/Sink audio.position = [ FL FR ] audio.rate = 48000
             node.driver = true priority.driver = 30000 object.linger = true } }
  { factory = adapter
    args = { factory.name = support.null-audio-sink node.name = vhost-test-source
             media.class = Audio/Source/Virtual audio.position = [ FL FR ] audio.rate = 48000
             object.linger = true } }
]
`;

function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A process the test started; stopped (and awaited) on dispose. */
class Child {
  readonly process: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;

  constructor(command: string, args: string[], env: Record<string, string>) {
    this.process = new Deno.Command(command, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#status = this.process.status;
  }

  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    try {
      this.process.kill(signal);
    } catch {
      // Already gone.
    }
    await this.#status;
    await this.process.stdout.cancel().catch(() => {});
  }
}

/** PipeWire, a private D-Bus and WirePlumber, all under `dir`. */
class SoundServer {
  readonly env: Record<string, string>;
  #children: Child[] = [];

  constructor(dir: string) {
    this.env = {
      XDG_RUNTIME_DIR: `${dir}/run`,
      XDG_STATE_HOME: `${dir}/state`,
      XDG_CONFIG_HOME: `${dir}/config`,
    };
    Deno.mkdirSync(`${dir}/run`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/pipewire.conf`, CONFIG);
  }

  async start(dir: string): Promise<void> {
    const pipewire = new Child("pipewire", ["-c", `${dir}/pipewire.conf`], this.env);
    this.#children.push(pipewire);
    await until(() => exists(`${this.env.XDG_RUNTIME_DIR}/pipewire-0`), "PipeWire's socket");
    const bus = new Child("dbus-daemon", ["--session", "--nofork", "--print-address=1"], this.env);
    this.#children.push(bus);
    const reader = bus.process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value: address = "" } = await reader.read();
    reader.releaseLock();
    const wireplumber = new Child("wireplumber", [], {
      ...this.env,
      DBUS_SESSION_BUS_ADDRESS: address.trim(),
    });
    this.#children.push(wireplumber);
    // WirePlumber has configured the sink once its monitor ports exist.
    await until(async () => (await this.ports()).includes("vhost-test-sink:monitor_FL"), "ports");
  }

  async ports(): Promise<string> {
    const { stdout } = await new Deno.Command("pw-link", {
      args: ["-o"],
      env: this.env,
      stderr: "null",
    }).output();
    return new TextDecoder().decode(stdout);
  }

  /** Records the sink's monitor into `path` until the returned function is called. */
  async record(path: string): Promise<() => Promise<Uint8Array>> {
    const recorder = new Child(
      "pw-record",
      [
        "-P",
        "{ stream.capture.sink = true }",
        "--latency",
        "2048",
        "--target",
        "vhost-test-sink",
        path,
      ],
      this.env,
    );
    await until(async () => (await this.ports()).includes("pw-record"), "pw-record's ports");
    await delay(300);
    return async () => {
      await recorder.stop("SIGINT");
      return wavData(await Deno.readFile(path));
    };
  }

  /** Waits until WirePlumber has linked a stream whose ports match `source` to the sink. */
  async linked(source = /\|<- vhost-device-sound\.output:/): Promise<void> {
    let links = "";
    await until(async () => {
      const { stdout } = await new Deno.Command("pw-link", {
        args: ["-l"],
        env: this.env,
        stderr: "null",
      }).output();
      links = new TextDecoder().decode(stdout);
      return source.test(links);
    }, () => `a link matching ${source} in:\n${links}`);
  }

  async stop(): Promise<void> {
    for (const child of this.#children.splice(0).reverse()) await child.stop();
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function until(
  test: () => boolean | Promise<boolean>,
  what: string | (() => string),
): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await test())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    }
    await delay(50);
  }
}

/** The `data` chunk of a WAV file. */
function wavData(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 12;
  while (at + 8 <= bytes.length) {
    const size = view.getUint32(at + 4, true);
    if (String.fromCharCode(...bytes.subarray(at, at + 4)) === "data") {
      return bytes.subarray(at + 8, Math.min(bytes.length, at + 8 + size));
    }
    at += 8 + size + (size & 1);
  }
  throw new Error("no data chunk");
}

/**
 * Checks that `audio` reached the sink's monitor in order, 4096-byte block by
 * block (each block sample-exact). On an idle machine every block arrives; on
 * the loaded 2-core test machine (load 10+) PipeWire's own clients (pw-cat
 * into pw-record) lost about 5 % of their quanta, so 75 % is the bar.
 */
function assertArrived(
  recorded: Uint8Array,
  audio: Uint8Array,
  what: string,
  options: { share?: number } = {},
): void {
  const blocks = Math.floor(audio.length / 4096);
  let found = 0;
  let from = 0;
  for (let b = 0; b < blocks; b++) {
    const block = audio.subarray(b * 4096, (b + 1) * 4096);
    const at = indexOf(recorded, block, from);
    if (at >= 0) {
      found++;
      from = at + block.length;
    }
  }
  console.log(`${what}: ${found} of ${blocks} blocks of the guest's audio at the sink, in order`);
  const share = options.share ?? 0.75;
  assert.ok(found >= blocks * share, `${what}: only ${found} of ${blocks} blocks reached the sink`);
}

/**
 * Plays `audio` (whole periods) through stream 0 and waits until every
 * buffer is back. Between PREPARE and START it awaits `ready` (WirePlumber
 * linking the new stream), so no frame plays before the sink hears it.
 */
async function play(
  driver: SoundDriver,
  audio: Uint8Array,
  ready: () => Promise<void> = () => Promise.resolve(),
): Promise<void> {
  const pcm = (code: number) => statusOf(driver.control(u32s(code, 0)));
  assert.equal(statusOf(driver.control(setParamsRequest(0, PARAMS))), OK);
  assert.equal(pcm(0x102), OK);
  await ready();
  const count = audio.length / PERIOD;
  // Eight periods (200 ms) ahead, as the guest's ALSA keeps its buffer full.
  let submitted = 0;
  let returned = 0;
  const submit = () =>
    driver.submit(2, {
      readable: [u32s(0), audio.subarray(submitted * PERIOD, ++submitted * PERIOD)],
      writable: [8],
      indirect: true,
    });
  while (submitted < Math.min(8, count)) submit();
  assert.equal(pcm(0x104), OK);
  while (returned < count) {
    const used = driver.collect(2, 1, 5000);
    assert.ok(used.length > 0, `buffer ${returned} not returned`);
    for (const buffer of used) {
      assert.equal(statusOf(buffer.data), OK);
      returned++;
      if (submitted < count) submit();
    }
  }
  assert.equal(pcm(0x105), OK);
  assert.equal(pcm(0x103), OK);
}

Deno.test("sound pipewire: the guest's samples reach a PipeWire sink sample-exact; the daemon outlives a PipeWire restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sound-pw-" });
  const server = new SoundServer(dir);
  await server.start(dir);
  const daemon = await startSoundDaemon(["--backend", "pipewire"], {
    env: server.env,
  });
  let driver: SoundDriver | null = null;
  try {
    driver = await SoundDriver.connect(daemon.socket);
    const first = noise(PERIOD * 40, 7); // 1 s
    let stopRecording = await server.record(`${dir}/first.wav`);
    const started = performance.now();
    await play(driver, first, () => server.linked());
    const elapsed = performance.now() - started;
    assert.ok(elapsed > 700, `1 s of audio returned in ${elapsed.toFixed(0)} ms`);
    await delay(800); // what PipeWire had queued plays out
    let recorded = await stopRecording();
    assertArrived(recorded, first, "first");

    // PipeWire goes away: the guest keeps playing (into silence, at the real rate).
    await server.stop();
    const blind = noise(PERIOD * 8, 9);
    await play(driver, blind);
    await daemon.waitForLog("plays into silence");
    assert.ok(daemon.running);

    // PipeWire comes back: the next prepare reaches it.
    await server.start(dir);
    const second = noise(PERIOD * 20, 11);
    stopRecording = await server.record(`${dir}/second.wav`);
    await play(driver, second, () => server.linked());
    await delay(800);
    recorded = await stopRecording();
    assertArrived(recorded, second, "after the PipeWire restart");
  } catch (error) {
    console.error(`test failed: ${error instanceof Error ? error.stack : error}`);
    throw error;
  } finally {
    driver?.close();
    const status = await daemon.stop();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
    const log = daemon.log.split("\n").filter((l) => !/ (GET|SET|ADD)_/.test(l)).join("\n");
    assert.equal(status.code, 0, log);
  }
});

Deno.test("sound alsa over pipewire: a pollable PCM (PipeWire's ALSA plugin) paces the guest; samples reach the sink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sound-pw-alsa-" });
  const server = new SoundServer(dir);
  await server.start(dir);
  // pipewire-alsa's plugin: its poll descriptor is an eventfd, so the daemon's epoll waits on it.
  const daemon = await startSoundDaemon(["--backend", "alsa", "--device", "pipewire"], {
    env: server.env,
  });
  let driver: SoundDriver | null = null;
  try {
    driver = await SoundDriver.connect(daemon.socket);
    const audio = noise(PERIOD * 40, 13);
    const stopRecording = await server.record(`${dir}/alsa.wav`);
    const started = performance.now();
    await play(driver, audio, () => server.linked(/\|<- ALSA Playback:/));
    const elapsed = performance.now() - started;
    assert.ok(elapsed > 700, `1 s of audio returned in ${elapsed.toFixed(0)} ms`);
    await delay(800);
    const recorded = await stopRecording();
    // This proves the poll path (the plugin's eventfd in our epoll) carries the guest's audio.
    // Two buffers in a row (ALSA's, then PipeWire's) under load 10 lost up to a quarter of the
    // blocks to host-side xruns (each recovery drops what ALSA held): half is the bar here.
    assertArrived(recorded, audio, "through ALSA", { share: 0.5 });
    assert.doesNotMatch(daemon.log, /cannot be polled/);
  } catch (error) {
    console.error(daemon.log.split("\n").filter((l) => !/ (GET|SET|ADD)_/.test(l)).join("\n"));
    throw error;
  } finally {
    driver?.close();
    const status = await daemon.stop();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
    assert.equal(
      status.code,
      0,
      daemon.log.split("\n").filter((l) => !/ (GET|SET|ADD)_/.test(l)).join("\n"),
    );
  }
});

/** The first frame-aligned index of `block` in `haystack` at or after `from`, or -1. */
function indexOf(haystack: Uint8Array, block: Uint8Array, from: number): number {
  outer: for (let i = from - from % 4; i + block.length <= haystack.length; i += 4) {
    for (let j = 0; j < block.length; j++) if (haystack[i + j] !== block[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * End-to-end guest rig: boots Debian's kernel under QEMU (TCG) with an
 * initramfs built from busybox, the requested kernel modules and host tools,
 * runs a shell script in the guest and collects its result markers.
 *
 * @module
 */

const PROJECT_DIR = new URL("../../", import.meta.url).pathname;
const SCRIPTS_DIR = `${PROJECT_DIR}scripts/`;
const DEFAULT_KIT = "/var/cache/vhost-device-deno/guest-kit";
const DEFAULT_AARCH64_KIT = "/var/cache/vhost-device-deno/guest-kit-aarch64";
const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_TIMEOUT_MS = 180_000;

/** The guest's architecture: x86_64 (q35) or aarch64 (virt, for devices x86 QEMU lacks). */
export type GuestArch = "x86_64" | "aarch64";

/** Paths of a built guest kit, any architecture. */
export interface KitFiles {
  /** Its architecture. */
  arch: GuestArch;
  /** Kit (cache) directory. */
  dir: string;
  /** Guest kernel image. */
  kernel: string;
  /** Kernel release, e.g. `6.12.95+deb12-amd64`. */
  kernelVersion: string;
  /** `lib/modules/<kernelVersion>` with `modules.dep` and `modules.builtin`. */
  modulesDir: string;
  /** Out-of-tree modules (gpio-virtio.ko, i2c-virtio.ko), inside `modulesDir`. */
  extraModulesDir: string;
  /** Static busybox binary. */
  busybox: string;
  /** Its applets, one path a line, when the binary cannot run on this host; else null. */
  busyboxList: string | null;
}

/** Paths of the built x86 guest kit (see `scripts/build_guest_kit.sh`). */
export interface GuestKit extends KitFiles {
  /** Bookworm's QEMU 7.2 (unpacked in the kit), for `GuestOptions.qemu`. */
  qemu72: QemuBinary;
}

/** A QEMU other than the one on PATH, and the environment it needs. */
export interface QemuBinary {
  /** The `qemu-system-x86_64` executable. */
  path: string;
  /** Environment variables for it. */
  env: Record<string, string>;
  /** Arguments it needs before the rig's own (firmware paths). */
  args: string[];
}

/** Options of {@linkcode startGuest} and {@linkcode bootGuest}. */
export interface GuestOptions {
  /** Shell script the guest's busybox `sh` runs as the test, in `/tmp`. */
  script: string;
  /** Modules to load before the script, e.g. `["virtio_rng"]`; dependencies are added, built-ins skipped. */
  modules?: string[];
  /**
   * Host binaries (names on PATH or absolute paths) copied into the guest with
   * their shared libraries; an absolute directory path is copied whole (e.g.
   * `/usr/share/alsa`).
   */
  tools?: string[];
  /** Files for this run only, by absolute guest path (e.g. a test's audio). */
  files?: Record<string, Uint8Array>;
  /** Extra QEMU arguments, e.g. a vhost-user chardev and device. */
  qemuArgs?: string[];
  /** Extra kernel command line arguments. */
  kernelArgs?: string[];
  /**
   * Copies the host's `deno` and this project's files (`/project` in the
   * guest, as git lists them, untracked ones included) into the guest, so a
   * daemon and the TypeScript front-end can run there against the guest
   * kernel's real devices. The guest has no network: the project's npm
   * packages come from the host's cache (`deno install` fills it first).
   * Default memory becomes 1024 MiB.
   */
  deno?: boolean;
  /** Guest memory, shared through a memfd; default 256 (1024 with `deno`). */
  memoryMiB?: number;
  /** Guest vCPUs; default 1. */
  cpus?: number;
  /** QEMU is killed after this long; default 180000. */
  timeoutMs?: number;
  /** Aborting kills QEMU. */
  signal?: AbortSignal;
  /** The QEMU to run; default `qemu-system-x86_64` on PATH (QEMU 10), or e.g. `kit.qemu72`. */
  qemu?: QemuBinary;
  /**
   * The guest's architecture; default x86_64. aarch64 boots `-M virt` with
   * the kit of `scripts/build_guest_kit_aarch64.sh` and busybox only (no `tools`).
   */
  arch?: GuestArch;
  /**
   * aarch64 only: devicetree source appended to QEMU's own devicetree for
   * this machine (e.g. a `/firmware` node), compiled with dtc.
   */
  devicetree?: string;
}

/** Why the guest run ended. */
export type GuestStopReason =
  /** The guest printed `@@DONE` and QEMU exited. */
  | "done"
  /** QEMU exited without `@@DONE` (crash, panic, killed from outside). */
  | "exited"
  /** `timeoutMs` elapsed. */
  | "timeout"
  /** `signal` was aborted. */
  | "aborted"
  /** {@linkcode Guest.kill} was called. */
  | "killed";

/** Outcome of one guest run. */
export interface GuestResult {
  /** Exit code of the test script from `@@DONE`, or null when it never came. */
  exitCode: number | null;
  /** Why the run ended. */
  stopReason: GuestStopReason;
  /** `@@RESULT <name> <value>` lines; the last value of a name wins. */
  results: Record<string, string>;
  /** insmod exit code per loaded module (`@@MODULE <name> <code>`). */
  modules: Record<string, number>;
  /** Full serial console text. */
  console: string;
  /** QEMU's stderr. */
  qemuStderr: string;
  /** QEMU's exit status. */
  qemuStatus: Deno.CommandStatus;
  /** Time to build the initramfs, in ms. */
  initramfsMs: number;
  /** From QEMU start until the guest began the script (`@@START`), or null. */
  bootMs: number | null;
  /** From QEMU start until QEMU exited. */
  totalMs: number;
}

/** A running guest. */
export interface Guest extends AsyncDisposable {
  /** QEMU's process id. */
  readonly pid: number;
  /** Console text so far. */
  readonly console: string;
  /** Settles when QEMU has exited; rejects only on rig errors. */
  readonly result: Promise<GuestResult>;
  /**
   * Resolves with the first console line (present or future) matching
   * `pattern`; rejects if QEMU exits or `timeoutMs` (default 60000) passes
   * first.
   */
  waitFor(pattern: string | RegExp, options?: { timeoutMs?: number }): Promise<string>;
  /** Sends `signal` (default SIGKILL) to QEMU; the result's stopReason becomes "killed". */
  kill(signal?: Deno.Signal): void;
}

let kitPromise: Promise<GuestKit> | undefined;
let aarch64KitPromise: Promise<KitFiles> | undefined;

/**
 * Makes sure QEMU and the host tools are installed and the guest kit is built,
 * running `scripts/install_qemu.sh` and `scripts/build_guest_kit.sh` only when
 * needed (both need root then). Memoized per process.
 */
export function ensureGuestKit(): Promise<GuestKit> {
  kitPromise ??= buildKit().catch((error) => {
    kitPromise = undefined;
    throw error;
  });
  return kitPromise;
}

/**
 * Makes sure qemu-system-aarch64, dtc and the aarch64 guest kit are there,
 * running `scripts/build_guest_kit_aarch64.sh` only when needed (root then).
 * Memoized per process.
 */
export function ensureAarch64Kit(): Promise<KitFiles> {
  aarch64KitPromise ??= buildAarch64Kit().catch((error) => {
    aarch64KitPromise = undefined;
    throw error;
  });
  return aarch64KitPromise;
}

async function buildAarch64Kit(): Promise<KitFiles> {
  const kitDir = Deno.env.get("VHOST_GUEST_KIT_AARCH64") ?? DEFAULT_AARCH64_KIT;
  const hostTools = ["qemu-system-aarch64", "dtc", "cpio", "gzip", "xz"];
  if (!exists(`${kitDir}/.stamp-all`) || hostTools.some((t) => findOnPath(t) === undefined)) {
    await runScript("build_guest_kit_aarch64.sh");
  }
  return await kitFiles(kitDir, { arch: "aarch64", busyboxList: `${kitDir}/busybox.list` });
}

async function buildKit(): Promise<GuestKit> {
  const hostTools = [
    "qemu-system-x86_64",
    "cpio",
    "gzip",
    "xz",
    "depmod",
    "i2cdetect",
    "gpiomon",
    "aplay",
    "pipewire",
  ];
  if (hostTools.some((tool) => findOnPath(tool) === undefined)) {
    await runScript("install_qemu.sh");
  }
  const kitDir = Deno.env.get("VHOST_GUEST_KIT") ?? DEFAULT_KIT;
  const stamps = ["all", "qemu72", "gpiosim"];
  if (stamps.some((stamp) => !exists(`${kitDir}/.stamp-${stamp}`))) {
    await runScript("build_guest_kit.sh");
  }
  return {
    ...await kitFiles(kitDir, { arch: "x86_64", busyboxList: null }),
    qemu72: {
      path: `${kitDir}/qemu-7.2/usr/bin/qemu-system-x86_64`,
      // Its accelerator modules, not QEMU 10's in the system module directory.
      env: { QEMU_MODULE_DIR: `${kitDir}/qemu-7.2/usr/lib/x86_64-linux-gnu/qemu` },
      // Debian's 7.2 does not search SeaBIOS's directory by itself.
      args: ["-L", "/usr/share/seabios", "-L", "/usr/share/qemu"],
    },
  };
}

/** The files of the kit built in `kitDir` (both builders lay it out alike). */
async function kitFiles(
  kitDir: string,
  options: { arch: GuestArch; busyboxList: string | null },
): Promise<KitFiles> {
  const kernelVersion = (await Deno.readTextFile(`${kitDir}/kernel-version`)).trim();
  const modulesDir = `${kitDir}/lib/modules/${kernelVersion}`;
  return {
    arch: options.arch,
    dir: kitDir,
    kernel: `${kitDir}/vmlinuz`,
    kernelVersion,
    modulesDir,
    extraModulesDir: `${modulesDir}/extra`,
    busybox: `${kitDir}/busybox`,
    busyboxList: options.busyboxList,
  };
}

async function runScript(name: string): Promise<void> {
  const { success, stderr } = await new Deno.Command("bash", {
    args: [SCRIPTS_DIR + name],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(`scripts/${name} failed:\n${new TextDecoder().decode(stderr)}`);
  }
}

/**
 * Boots a guest and waits for it to finish. Resolves whatever the guest did;
 * check the result with {@linkcode assertGuestSucceeded}.
 */
export async function bootGuest(options: GuestOptions): Promise<GuestResult> {
  await using guest = await startGuest(options);
  return await guest.result;
}

/**
 * Builds the initramfs and starts QEMU, returning a handle as soon as QEMU
 * runs, so a test can act mid-run (wait for a console line, kill QEMU).
 * Disposing the handle kills QEMU if still running and waits for it.
 */
export async function startGuest(options: GuestOptions): Promise<Guest> {
  const kit = options.arch === "aarch64" ? await ensureAarch64Kit() : await ensureGuestKit();
  const built = performance.now();
  const tmp = await Deno.makeTempDir({ prefix: "guest-" });
  try {
    const initrd = `${tmp}/initrd.cpio.gz`;
    await writeInitramfs(kit, options, tmp, initrd);
    const dtb = kit.arch === "aarch64" ? await devicetreeBlob(kit, options) : null;
    const initramfsMs = performance.now() - built;
    return spawnQemu(kit, options, { initrd, dtb, initramfsMs, tmp });
  } catch (error) {
    await Deno.remove(tmp, { recursive: true });
    throw error;
  }
}

/** The machine part of QEMU's command line: the same for the devicetree dump and the boot. */
function machineArgs(kit: KitFiles, options: GuestOptions): string[] {
  const memory = options.memoryMiB ?? (options.deno ? 1024 : 256);
  return [
    "-machine",
    `${kit.arch === "aarch64" ? "virt" : "q35"},accel=tcg,memory-backend=mem`,
    "-cpu",
    "max",
    "-smp",
    String(options.cpus ?? 1),
    "-m",
    `${memory}M`,
    "-object",
    `memory-backend-memfd,id=mem,size=${memory}M,share=on`,
  ];
}

function qemuBinary(kit: KitFiles, options: GuestOptions): string {
  return options.qemu?.path ??
    (kit.arch === "aarch64" ? "qemu-system-aarch64" : "qemu-system-x86_64");
}

/**
 * QEMU's own devicetree for this machine with `options.devicetree`
 * appended, cached in the kit. A dtc round trip: the raw `dumpdtb` output
 * passed to `-dtb` hangs the guest.
 */
async function devicetreeBlob(kit: KitFiles, options: GuestOptions): Promise<string> {
  const machine = machineArgs(kit, options);
  const key = [qemuBinary(kit, options), ...machine, options.devicetree ?? ""].join("\n");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  const hash = Array.from(
    new Uint8Array(digest).slice(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const dir = `${kit.dir}/dtb`;
  const path = `${dir}/virt-${hash}.dtb`;
  if (exists(path)) return path;
  await Deno.mkdir(dir, { recursive: true });
  const work = await Deno.makeTempDir({ dir, prefix: ".dtb-" });
  try {
    const [head, ...rest] = machine;
    await runTool(qemuBinary(kit, options), [
      head,
      `${rest[0]},dumpdtb=${work}/qemu.dtb`,
      ...rest.slice(1),
      "-nographic",
      "-nodefaults",
    ]);
    const source = await runTool("dtc", ["-q", "-I", "dtb", "-O", "dts", `${work}/qemu.dtb`]);
    await Deno.writeTextFile(`${work}/guest.dts`, `${source}\n${options.devicetree ?? ""}\n`);
    await runTool("dtc", [
      "-q",
      "-I",
      "dts",
      "-O",
      "dtb",
      "-o",
      `${work}/guest.dtb`,
      `${work}/guest.dts`,
    ]);
    await Deno.rename(`${work}/guest.dtb`, path);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
  return path;
}

async function runTool(tool: string, args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(tool, { args, stdin: "null" })
    .output();
  if (!success) {
    throw new Error(`${tool} ${args.join(" ")} failed: ${new TextDecoder().decode(stderr)}`);
  }
  return new TextDecoder().decode(stdout);
}

function qemuArgs(
  kit: KitFiles,
  options: GuestOptions,
  boot: { initrd: string; dtb: string | null },
): string[] {
  const console = kit.arch === "aarch64" ? "console=ttyAMA0" : "console=ttyS0";
  // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
  // check can fail and panic the boot ("IO-APIC + timer doesn't work").
  const append = [console, "quiet", "panic=-1", "no_timer_check", ...(options.kernelArgs ?? [])];
  return [
    ...(options.qemu?.args ?? []),
    ...machineArgs(kit, options),
    ...(boot.dtb ? ["-dtb", boot.dtb] : []),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-kernel",
    kit.kernel,
    "-initrd",
    boot.initrd,
    "-append",
    append.join(" "),
    ...(options.qemuArgs ?? []),
  ];
}

function spawnQemu(
  kit: KitFiles,
  options: GuestOptions,
  run: { initrd: string; dtb: string | null; initramfsMs: number; tmp: string },
): Guest {
  const { initramfsMs, tmp } = run;
  const started = performance.now();
  const child = new Deno.Command(qemuBinary(kit, options), {
    env: options.qemu?.env,
    args: qemuArgs(kit, options, run),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let consoleText = "";
  let stopReason: GuestStopReason | undefined;
  let bootMs: number | null = null;
  let exited = false;
  const waiters = new Set<{ test: (line: string) => boolean; resolve: (line: string) => void }>();
  const lines: string[] = [];

  const stop = (reason: GuestStopReason, signal: Deno.Signal = "SIGKILL"): void => {
    if (exited) return;
    stopReason ??= reason;
    try {
      child.kill(signal);
    } catch {
      // QEMU exited between the check and the kill.
    }
  };
  const timer = setTimeout(() => stop("timeout"), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const onAbort = (): void => stop("aborted");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  const onLine = (line: string): void => {
    lines.push(line);
    if (bootMs === null && line.startsWith("@@START")) bootMs = performance.now() - started;
    for (const waiter of waiters) {
      if (waiter.test(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  };

  const readConsole = async (): Promise<void> => {
    let partial = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      consoleText += chunk;
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const part of parts) onLine(part.replace(/\r$/, ""));
    }
    if (partial) onLine(partial);
  };
  const readStderr = async (): Promise<string> => {
    let text = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
    return text;
  };

  const exitWaiters = new Set<(error: Error) => void>();
  const result = (async (): Promise<GuestResult> => {
    try {
      const [status, , qemuStderr] = await Promise.all([child.status, readConsole(), readStderr()]);
      const totalMs = performance.now() - started;
      const markers = parseMarkers(lines);
      return {
        ...markers,
        stopReason: stopReason ?? (markers.exitCode === null ? "exited" : "done"),
        console: consoleText,
        qemuStderr,
        qemuStatus: status,
        initramfsMs,
        bootMs,
        totalMs,
      };
    } finally {
      exited = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      for (const reject of exitWaiters) reject(new Error("QEMU exited"));
      await Deno.remove(tmp, { recursive: true });
    }
  })();

  const waitFor = (
    pattern: string | RegExp,
    waitOptions: { timeoutMs?: number } = {},
  ): Promise<string> => {
    const test = typeof pattern === "string"
      ? (line: string) => line.includes(pattern)
      : (line: string) => pattern.test(line);
    const seen = lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    if (exited) return Promise.reject(new Error(`QEMU exited before ${pattern}`));
    return new Promise((resolve, reject) => {
      const fail = (error: Error): void => {
        clearTimeout(waitTimer);
        waiters.delete(waiter);
        exitWaiters.delete(fail);
        reject(new Error(`${error.message} before ${pattern}\n${consoleTail(consoleText)}`));
      };
      const waiter = {
        test,
        resolve: (line: string) => {
          clearTimeout(waitTimer);
          exitWaiters.delete(fail);
          resolve(line);
        },
      };
      const waitTimer = setTimeout(
        () => fail(new Error(`timed out`)),
        waitOptions.timeoutMs ?? 60_000,
      );
      waiters.add(waiter);
      exitWaiters.add(fail);
    });
  };

  return {
    pid: child.pid,
    get console(): string {
      return consoleText;
    },
    result,
    waitFor,
    kill: (signal: Deno.Signal = "SIGKILL"): void => stop("killed", signal),
    async [Symbol.asyncDispose](): Promise<void> {
      stop("killed");
      await result.catch(() => {});
    },
  };
}

function parseMarkers(
  lines: string[],
): Pick<GuestResult, "exitCode" | "results" | "modules"> {
  let exitCode: number | null = null;
  const results: Record<string, string> = {};
  const modules: Record<string, number> = {};
  for (const line of lines) {
    const match = /^@@(DONE|RESULT|MODULE) (\S+)(?: (.*))?$/.exec(line.trim());
    if (!match) continue;
    const [, kind, key, value = ""] = match;
    if (kind === "DONE") exitCode = Number(key);
    else if (kind === "RESULT") results[key] = value;
    else modules[key] = Number(value);
  }
  return { exitCode, results, modules };
}

/** The last `count` lines of `text`, for failure messages. */
export function consoleTail(text: string, count = 40): string {
  return text.replace(/\r/g, "").trimEnd().split("\n").slice(-count).join("\n");
}

/**
 * Throws an error describing the run (reason, QEMU status and stderr, console
 * tail) unless the guest script exited 0 and every module loaded.
 */
export function assertGuestSucceeded(result: GuestResult): void {
  const failedModules = Object.entries(result.modules).filter(([, code]) => code !== 0);
  if (result.exitCode === 0 && failedModules.length === 0) return;
  const status = result.qemuStatus;
  throw new Error(
    [
      `guest failed: stopReason=${result.stopReason} exitCode=${result.exitCode}` +
      ` qemu code=${status.code} signal=${status.signal}`,
      ...failedModules.map(([name, code]) => `module ${name}: insmod exited ${code}`),
      result.qemuStderr.trim() && `QEMU stderr:\n${result.qemuStderr.trim()}`,
      `last console lines:\n${consoleTail(result.console)}`,
    ].filter(Boolean).join("\n"),
  );
}

// ---- initramfs -------------------------------------------------------------

// The guest's /init. Module loading stops at the first failure, skipping the
// script, so a test never runs against a half-loaded driver stack.
const INIT = `#!/bin/sh
export PATH=${GUEST_PATH}
export DENO_DIR=/var/deno DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ip link set lo up
code=0
if [ -f /etc/modules.load ]; then
  while read -r name path; do
    insmod "$path"
    rc=$?
    echo "@@MODULE $name $rc"
    if [ "$rc" != 0 ]; then code=125; break; fi
  done < /etc/modules.load
fi
if [ "$code" = 0 ]; then
  echo "@@START $(cut -d' ' -f1 /proc/uptime)"
  cd /tmp && sh /test.sh </dev/null
  code=$?
fi
echo "@@DONE $code"
sync
poweroff -f
`;

async function writeInitramfs(
  kit: KitFiles,
  options: GuestOptions,
  tmp: string,
  initrd: string,
): Promise<void> {
  const cacheDir = `${kit.dir}/initramfs`;
  await Deno.mkdir(cacheDir, { recursive: true });
  const parts = [
    await cachedPart(
      cacheDir,
      "base",
      [INIT, kit.arch, await fileStamp(kit.busybox)],
      (dir) => stageBase(kit, dir),
    ),
  ];
  const modules = resolveModules(kit, options.modules ?? []);
  if (modules.length > 0) {
    parts.push(
      await cachedPart(
        cacheDir,
        "modules",
        [kit.kernelVersion, ...modules],
        (dir) => stageModules(kit, modules, dir),
      ),
    );
  }
  if (options.tools?.length) {
    if (kit.arch !== "x86_64") throw new Error(`host tools cannot run in an ${kit.arch} guest`);
    const files = await resolveTools(options.tools);
    const stamps = await Promise.all(files.map(async (file) => `${file} ${await fileStamp(file)}`));
    parts.push(await cachedPart(cacheDir, "tools", stamps, (dir) => stageFiles(files, dir)));
  }
  if (options.deno) {
    if (kit.arch !== "x86_64") {
      throw new Error(`the host's deno cannot run in an ${kit.arch} guest`);
    }
    const deno = await resolveTools([Deno.execPath()]);
    const stamps = await Promise.all(deno.map(async (file) => `${file} ${await fileStamp(file)}`));
    parts.push(
      await cachedPart(cacheDir, "deno", stamps, async (dir) => {
        await stageFiles(deno, dir);
        await Deno.mkdir(`${dir}/usr/local/bin`, { recursive: true });
        await Deno.symlink(Deno.execPath(), `${dir}/usr/local/bin/deno`);
      }),
    );
    parts.push(`${tmp}/project.cpio.gz`);
    await stageProject(`${tmp}/project`);
    await packCpio(`${tmp}/project`, parts.at(-1)!);
  }
  const scriptDir = `${tmp}/script`;
  await Deno.mkdir(scriptDir);
  await Deno.writeTextFile(`${scriptDir}/test.sh`, options.script);
  for (const [path, data] of Object.entries(options.files ?? {})) {
    await Deno.mkdir(dirname(scriptDir + path), { recursive: true });
    await Deno.writeFile(scriptDir + path, data);
  }
  parts.push(`${tmp}/script.cpio.gz`);
  await packCpio(scriptDir, parts.at(-1)!);

  // The kernel unpacks concatenated gzip'd cpio archives in order.
  for (const part of parts) {
    await Deno.writeFile(initrd, await Deno.readFile(part), { append: true });
  }
}

/** Returns the cached archive for `key`, staging and packing it on a miss. */
async function cachedPart(
  cacheDir: string,
  kind: string,
  key: string[],
  stage: (dir: string) => Promise<void>,
): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key.join("\n")));
  const hash = Array.from(
    new Uint8Array(digest).slice(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const path = `${cacheDir}/${kind}-${hash}.cpio.gz`;
  if (exists(path)) return path;
  const dir = await Deno.makeTempDir({ dir: cacheDir, prefix: `.${kind}-` });
  try {
    await stage(`${dir}/root`);
    await packCpio(`${dir}/root`, `${dir}/out.cpio.gz`);
    // Rename is atomic, so concurrent builders never see a partial archive.
    await Deno.rename(`${dir}/out.cpio.gz`, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return path;
}

async function stageBase(kit: KitFiles, root: string): Promise<void> {
  for (const dir of ["bin", "dev", "etc", "proc", "sys", "tmp", "run", "root"]) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  await Deno.copyFile(kit.busybox, `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  // Applet links made here rather than with `busybox --install` at boot, so
  // tools in later archives replace them.
  const applets = kit.busyboxList
    ? await Deno.readTextFile(kit.busyboxList)
    : new TextDecoder().decode(
      (await new Deno.Command(kit.busybox, { args: ["--list-full"] }).output()).stdout,
    );
  for (const applet of applets.split("\n").filter(Boolean)) {
    const link = `${root}/${applet}`;
    await Deno.mkdir(dirname(link), { recursive: true });
    if (!exists(link)) await Deno.symlink("/bin/busybox", link);
  }
  await Deno.writeTextFile(`${root}/init`, INIT, { mode: 0o755 });
}

async function stageModules(kit: KitFiles, modules: string[], root: string): Promise<void> {
  const load: string[] = [];
  for (const path of modules) {
    const target = `/lib/modules/${kit.kernelVersion}/${path.replace(/\.(xz|zst|gz)$/, "")}`;
    await Deno.mkdir(dirname(root + target), { recursive: true });
    await decompress(`${kit.modulesDir}/${path}`, root + target);
    load.push(`${moduleName(path)} ${target}`);
  }
  await Deno.mkdir(`${root}/etc`, { recursive: true });
  await Deno.writeTextFile(`${root}/etc/modules.load`, load.join("\n") + "\n");
}

async function decompress(source: string, target: string): Promise<void> {
  const tools: Record<string, string> = { xz: "xz", zst: "zstd", gz: "gzip" };
  const tool = tools[source.split(".").pop()!];
  if (!tool) return await Deno.copyFile(source, target);
  const { success, stdout, stderr } = await new Deno.Command(tool, {
    args: ["-dc", source],
  }).output();
  if (!success) {
    throw new Error(
      `${tool} -dc ${source} failed: ${new TextDecoder().decode(stderr)}`,
    );
  }
  await Deno.writeFile(target, stdout);
}

/** Copies files (symlinks dereferenced) to the same paths under `root`. */
async function stageFiles(files: string[], root: string): Promise<void> {
  for (const file of files) {
    await Deno.mkdir(dirname(root + file), { recursive: true });
    await Deno.copyFile(file, root + file);
  }
}

/**
 * This project's files, as git lists them (untracked ones too), under
 * `root/project`, and the npm packages of its `deno.json` under the guest's
 * `DENO_DIR` (`/var/deno`).
 */
async function stageProject(root: string): Promise<void> {
  const install = await new Deno.Command(Deno.execPath(), {
    args: ["install", "--quiet"],
    cwd: PROJECT_DIR,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!install.success) {
    throw new Error(`deno install failed: ${new TextDecoder().decode(install.stderr)}`);
  }
  await Deno.mkdir(`${root}/var/deno`, { recursive: true });
  const copy = await new Deno.Command("cp", {
    args: ["-a", `${await denoDir()}/npm`, `${root}/var/deno/`],
    stderr: "piped",
  }).output();
  if (!copy.success) {
    throw new Error(`copying the npm cache failed: ${new TextDecoder().decode(copy.stderr)}`);
  }
  const { success, stdout, stderr } = await new Deno.Command("git", {
    args: ["-C", PROJECT_DIR, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`git ls-files failed: ${new TextDecoder().decode(stderr)}`);
  for (const file of new TextDecoder().decode(stdout).split("\0").filter(Boolean)) {
    // A deleted file that git still tracks has nothing to copy.
    if (!exists(PROJECT_DIR + file)) continue;
    await Deno.mkdir(dirname(`${root}/project/${file}`), { recursive: true });
    await Deno.copyFile(PROJECT_DIR + file, `${root}/project/${file}`);
  }
}

/** The host's `DENO_DIR`, as `deno info` reports it. */
async function denoDir(): Promise<string> {
  const { stdout } = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] })
    .output();
  return JSON.parse(new TextDecoder().decode(stdout)).denoDir;
}

async function packCpio(dir: string, out: string): Promise<void> {
  const { success, stderr } = await new Deno.Command("sh", {
    args: [
      "-c",
      'cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1 > "$2"',
      "pack",
      dir,
      out,
    ],
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`packing ${dir} failed: ${new TextDecoder().decode(stderr)}`);
}

// ---- modules ---------------------------------------------------------------

function moduleName(path: string): string {
  return path.split("/").pop()!.replace(/\.ko(\.\w+)?$/, "").replaceAll("-", "_");
}

/**
 * Module paths (relative to modulesDir) in load order: dependencies first,
 * built-in modules left out.
 */
function resolveModules(kit: KitFiles, names: string[]): string[] {
  if (names.length === 0) return [];
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of Deno.readTextFileSync(`${kit.modulesDir}/modules.dep`).split("\n")) {
    const [path, rest] = line.split(":");
    if (rest === undefined) continue;
    deps.set(moduleName(path), { path, deps: rest.trim().split(/\s+/).filter(Boolean) });
  }
  const builtin = new Set(
    Deno.readTextFileSync(`${kit.modulesDir}/modules.builtin`).split("\n").filter(Boolean).map(
      moduleName,
    ),
  );
  const order: string[] = [];
  const visit = (path: string): void => {
    if (order.includes(path)) return;
    for (const dep of deps.get(moduleName(path))?.deps ?? []) visit(dep);
    order.push(path);
  };
  for (const requested of names) {
    const name = moduleName(requested);
    const entry = deps.get(name);
    if (entry) visit(entry.path);
    else if (!builtin.has(name)) {
      throw new Error(
        `module ${requested} is neither in modules.dep nor built in (${kit.kernelVersion})`,
      );
    }
  }
  return order;
}

// ---- host tools ------------------------------------------------------------

/** Tool binaries plus every shared library and loader `ldd` reports for them. */
async function resolveTools(tools: string[]): Promise<string[]> {
  const files = new Set<string>();
  for (const tool of tools) {
    const path = tool.startsWith("/") ? tool : findOnPath(tool);
    if (!path || !exists(path)) throw new Error(`guest tool ${tool} not found on the host`);
    if (Deno.statSync(path).isDirectory) {
      for (const file of filesUnder(path)) files.add(file);
      continue;
    }
    files.add(path);
    const ldd = await new Deno.Command("ldd", { args: [path], stderr: "null" }).output();
    // Static binaries make ldd fail; they need nothing more.
    if (!ldd.success) continue;
    for (const line of new TextDecoder().decode(ldd.stdout).split("\n")) {
      const lib = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1];
      if (lib) files.add(lib);
    }
  }
  return [...files].sort();
}

/** Every file under `dir`, symlinks followed. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    const info = Deno.statSync(path);
    if (info.isDirectory) out.push(...filesUnder(path));
    else if (info.isFile) out.push(path);
  }
  return out;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

// ---- small fs helpers ------------------------------------------------------

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Size and mtime, enough to notice a changed host file. */
async function fileStamp(path: string): Promise<string> {
  const info = await Deno.stat(path);
  return `${info.size} ${info.mtime?.getTime()}`;
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

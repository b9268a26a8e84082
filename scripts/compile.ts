/**
 * `deno task compile`: compiles each `devices/<name>/main.ts` to
 * `dist/vhost-device-<name>` with only the permissions that device needs,
 * and each tool of {@link TOOLS} (vhost-user-check) to `dist/<tool>`.
 *
 * Run: deno run --allow-all scripts/compile.ts [--target <triple>] [device or tool…]
 *
 * `deno compile` embeds its `denort` runtime, downloaded from dl.deno.land
 * unless `DENORT_BIN` names a local copy; without network access that
 * download fails, and this script says so in one line.
 *
 * @module
 */

import { parseArgs } from "node:util";

/**
 * Deno permissions per device. `--allow-ffi` is needed for every daemon (libc
 * through Deno.dlopen) and is a permission in name only: native code can do
 * anything the process can. The rest still documents intent and guards the
 * JavaScript side. `--allow-read`/`--allow-write`: stat and remove socket
 * files (and stat the rng source); `--allow-env=RUST_LOG`: the log filter.
 */
export const DEVICE_PERMISSIONS: Readonly<Record<string, readonly string[]>> = {
  rng: ["--allow-ffi", "--allow-read", "--allow-write", "--allow-env=RUST_LOG"],
  // Reads --config and removes socket files; the yaml package reads LOG_TOKENS and LOG_STREAM.
  vsock: [
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env=RUST_LOG,LOG_TOKENS,LOG_STREAM",
  ],
  // Reads adapter names in /sys/bus/i2c/devices; /dev/i2c-N is opened through libc.
  i2c: ["--allow-ffi", "--allow-read", "--allow-write", "--allow-env=RUST_LOG"],
  // Reads IIO sysfs files (any path given with -d iio,path=…) and removes its socket file.
  scmi: ["--allow-ffi", "--allow-read", "--allow-write", "--allow-env=RUST_LOG"],
  // libgpiod through Deno.dlopen; socket files (vhost-user and --sim-control).
  gpio: ["--allow-ffi", "--allow-read", "--allow-write", "--allow-env=RUST_LOG"],
  // Stats and resolves the image paths (realpath for their serial numbers); removes its socket.
  scsi: ["--allow-ffi", "--allow-read", "--allow-write", "--allow-env=RUST_LOG"],
  // Reads --input and writes --output WAV files; libasound/libpipewire are loaded through FFI;
  // PIPEWIRE_CONFIG_NAME picks PipeWire's real-time client config unless the user set one.
  sound: [
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env=RUST_LOG,PIPEWIRE_CONFIG_NAME",
  ],
};

/**
 * Tools compiled beside the devices: entry module and permissions.
 * vhost-user-check starts the back-end it checks (`--exec`) through
 * `/bin/sh`, so it needs `--allow-run=/bin/sh`, which in practice lets it
 * run anything; `--allow-read`/`--allow-write` for temp directories,
 * reproducers and `/proc/PID` (fd counts, RSS).
 */
export const TOOLS: Readonly<
  Record<string, { readonly entry: string; readonly permissions: readonly string[] }>
> = {
  "vhost-user-check": {
    entry: "tools/vhost_user_check/main.ts",
    permissions: ["--allow-ffi", "--allow-read", "--allow-write", "--allow-run=/bin/sh"],
  },
};

/**
 * The Deno permission flags of device `name`, the one table both the compiled
 * binaries and the container images (scripts/container.ts) use. Throws for a
 * device without an entry, so a new device must declare its needs.
 */
export function devicePermissions(name: string): readonly string[] {
  const permissions = DEVICE_PERMISSIONS[name];
  if (!permissions) {
    throw new Error(`devices/${name} has no entry in DEVICE_PERMISSIONS (scripts/compile.ts)`);
  }
  return permissions;
}

/** Options of {@link compileArgs}. */
export interface CompileOptions {
  /** Target triple (`deno compile --target`), e.g. `aarch64-unknown-linux-gnu`; default: the host. */
  readonly target?: string;
  /** Output directory; default `dist`. */
  readonly outDir?: string;
}

/**
 * The `deno` argv compiling device `name`. Type checking stays on (no
 * `--no-check`): a release binary should not skip it, and it costs seconds.
 * No `--include`: the daemons import everything statically. Throws for a
 * device without a permission entry, so a new device must declare its needs.
 */
export function compileArgs(name: string, options: CompileOptions = {}): string[] {
  return [
    "compile",
    ...devicePermissions(name),
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    `${options.outDir ?? "dist"}/vhost-device-${name}`,
    `devices/${name}/main.ts`,
  ];
}

/** The `deno` argv compiling tool `name` (an entry of {@link TOOLS}) to `<outDir>/<name>`. */
export function compileToolArgs(name: string, options: CompileOptions = {}): string[] {
  const tool = TOOLS[name];
  if (!tool) throw new Error(`${name} is not a tool of TOOLS (scripts/compile.ts)`);
  return [
    "compile",
    ...tool.permissions,
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    `${options.outDir ?? "dist"}/${name}`,
    tool.entry,
  ];
}

/** Whether `deno compile`'s stderr says it could not download its denort runtime. */
export function isDenortDownloadFailure(stderr: string): boolean {
  return /error sending request for url \(\S*denort/.test(stderr) ||
    (stderr.includes("Setting up base binary") && /dns error|Connect|timed out/.test(stderr));
}

/** Device folders under `root/devices` that have a `main.ts`, sorted. */
export function discoverDevices(root: string): string[] {
  const names: string[] = [];
  for (const entry of Deno.readDirSync(`${root}/devices`)) {
    if (!entry.isDirectory) continue;
    try {
      if (Deno.statSync(`${root}/devices/${entry.name}/main.ts`).isFile) names.push(entry.name);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return names.sort();
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname;
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string" } },
    allowPositionals: true,
  });
  const names = positionals.length > 0
    ? positionals
    : [...discoverDevices(root), ...Object.keys(TOOLS)];
  let failed = false;
  for (const name of names) {
    const args = name in TOOLS
      ? compileToolArgs(name, { target: values.target })
      : compileArgs(name, { target: values.target });
    console.error(`deno ${args.join(" ")}`);
    const out = await new Deno.Command(Deno.execPath(), { args, cwd: root, stderr: "piped" })
      .output();
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.success) continue;
    if (isDenortDownloadFailure(stderr)) {
      console.error(
        "compile: deno compile could not download its denort runtime from dl.deno.land " +
          "(no network access?); set DENORT_BIN to a local denort binary of the same Deno version",
      );
      Deno.exit(1);
    }
    console.error(stderr.trimEnd());
    failed = true;
  }
  if (failed) Deno.exit(1);
}

/**
 * `deno task container`: builds one OCI image per device with podman,
 * `localhost/vhost-device-<name>:<version>` (and `:latest`), from a Debian
 * base made by mmdebstrap, without a container registry.
 *
 * Run (root, podman and mmdebstrap installed: scripts/install_qemu.sh):
 * deno run --allow-all scripts/container.ts [--no-cache] [--refresh-base] [--save DIR] [device…]
 *
 * Every `devices/<name>/main.ts` gets an image, with the Deno permissions
 * `scripts/compile.ts` gives it. With `DENORT_BIN` set, the image holds the
 * `deno compile`d binary instead of deno and the sources, behind the same
 * entrypoint.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { VERSION } from "../core/cli.ts";
import {
  compileArgs,
  devicePermissions,
  discoverDevices,
  isDenortDownloadFailure,
} from "./compile.ts";

/** The repository's root directory. */
export const ROOT: string = new URL("..", import.meta.url).pathname;
/** The base image's name; its tag is a hash of how it was made. */
export const BASE_IMAGE = "localhost/vhost-device-base";
/** Where the base root filesystem tarballs are kept between runs. */
export const DEFAULT_CACHE_DIR = "/var/cache/vhost-device-deno/container-base";
/** The Debian release of the base image. */
export const SUITE = "bookworm";
/** The user (and group) the daemons run as in the images; not root. */
export const CONTAINER_UID = 65532;
/** Where the sources live in a `source` image. */
export const APP_DIR = "/opt/vhost-device";

/**
 * Debian packages a device's image needs beyond the base (shared libraries
 * it opens with `Deno.dlopen`), one line per device. They are taken as
 * listed, without their dependencies (the base has libc6 and libgcc-s1), in
 * the version apt on the building host would install, so a package only in
 * bookworm-backports comes from there (scripts/install_qemu.sh configures
 * it).
 */
export const DEVICE_DEBIAN_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  // libgpiod.so.3 (libgpiod v2) needs only libc; the package's libstdc++6 dependency is for
  // the C++ binding beside it, which the device does not load.
  gpio: ["libgpiod3"],
};

/** The image of device `name`, without a tag. */
export function imageName(name: string): string {
  return `localhost/vhost-device-${name}`;
}

/** The Debian archives the base image comes from. */
export interface DebianSources {
  /** The main archive, e.g. `http://deb.debian.org/debian`. */
  readonly debian: string;
  /** The security archive, e.g. `http://deb.debian.org/debian-security`. */
  readonly security: string;
}

/** Debian's own archives: used when the host's apt sources name none. */
export const DEFAULT_SOURCES: DebianSources = {
  debian: "http://deb.debian.org/debian",
  security: "http://deb.debian.org/debian-security",
};

/**
 * The archives the host's apt already uses, from the text of its
 * `sources.list` and `*.sources` (deb822) files, so the base image comes
 * from the same mirror. Entries for other distributions (no `debian` in the
 * URI) are ignored.
 */
export function debianSources(files: readonly string[]): DebianSources {
  const uris: string[] = [];
  for (const text of files) {
    for (const line of text.split("\n")) {
      const deb822 = /^URIs:\s*(.+)$/i.exec(line.trim());
      if (deb822) uris.push(...deb822[1].trim().split(/\s+/));
      const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(line.trim());
      if (oneLine) uris.push(oneLine[1]);
    }
  }
  const debian = uris.filter((uri) => /^https?:\/\//.test(uri) && /debian/.test(uri));
  return {
    debian: debian.find((uri) => !uri.includes("security")) ?? DEFAULT_SOURCES.debian,
    security: debian.find((uri) => uri.includes("security")) ?? DEFAULT_SOURCES.security,
  };
}

/** {@link debianSources} of this host's `/etc/apt/sources.list{,.d/*}`. */
export function hostDebianSources(): DebianSources {
  const files: string[] = [];
  const read = (path: string): void => {
    try {
      files.push(Deno.readTextFileSync(path));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  };
  read("/etc/apt/sources.list");
  try {
    for (const entry of Deno.readDirSync("/etc/apt/sources.list.d")) {
      if (/\.(list|sources)$/.test(entry.name)) read(`/etc/apt/sources.list.d/${entry.name}`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return debianSources(files);
}

/**
 * The base root filesystem's extract hook (run by mmdebstrap with the
 * root as `$1`): adds dash as `/bin/sh` for the launchers (without its
 * dependencies on dpkg and debianutils, which a launcher does not use),
 * drops documentation, locales and iconv modules (Deno uses none), and adds
 * the unprivileged user and the socket directory.
 */
export const EXTRACT_HOOK: string = [
  "set -e",
  'cd "$1/tmp"',
  'APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download --quiet=2 dash',
  'dpkg-deb --extract dash_*.deb "$1"',
  "rm -f dash_*.deb",
  'rm -rf "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/locale "$1"/usr/share/lintian ' +
  '"$1"/usr/lib/*/gconv',
  `printf 'root:x:0:0:root:/root:/bin/sh\\nvhost:x:${CONTAINER_UID}:${CONTAINER_UID}:` +
  `vhost-device:/nonexistent:/usr/sbin/nologin\\n' > "$1/etc/passwd"`,
  `printf 'root:x:0:\\nvhost:x:${CONTAINER_UID}:\\n' > "$1/etc/group"`,
  'mkdir -p "$1/run/vhost" "$1/var/cache/deno"',
  `chown ${CONTAINER_UID}:${CONTAINER_UID} "$1/run/vhost"`,
  'chmod 1777 "$1/tmp"',
].join("\n");

/**
 * The mmdebstrap argv writing the base root filesystem to `target` (a
 * tarball): Debian's libc6 and libgcc-s1 (what `deno` and `denort` link
 * against) and dash, extracted, not installed: no apt, no dpkg, no
 * coreutils in the image.
 */
export function mmdebstrapArgs(target: string, sources: DebianSources): string[] {
  return [
    "--quiet",
    "--variant=extract",
    "--format=tar",
    "--include=libc6,libgcc-s1",
    `--extract-hook=${EXTRACT_HOOK}`,
    SUITE,
    target,
    `deb ${sources.debian} ${SUITE} main`,
    `deb ${sources.debian} ${SUITE}-updates main`,
    `deb ${sources.security} ${SUITE}-security main`,
  ];
}

/** The base image's tag: the first 12 hex digits of a SHA-256 of its mmdebstrap argv. */
export async function baseTag(sources: DebianSources): Promise<string> {
  const text = mmdebstrapArgs("-", sources).join("\0");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
    .join("").slice(0, 12);
}

/** Options of {@link ensureBaseImage}. */
export interface BaseOptions {
  /**
   * Where root filesystem tarballs are cached; default `VHOST_CONTAINER_CACHE`,
   * else {@link DEFAULT_CACHE_DIR}.
   */
  readonly cacheDir?: string;
  /** Make the root filesystem again (new security updates) even if cached. */
  readonly refresh?: boolean;
}

/** What {@link ensureBaseImage} did. */
export interface BaseImage {
  /** `localhost/vhost-device-base:<hash>`. */
  readonly image: string;
  /** `made` (mmdebstrap ran), `imported` (a cached tarball) or `present` (already in podman). */
  readonly source: "made" | "imported" | "present";
  /** Seconds it took. */
  readonly seconds: number;
}

/**
 * Makes sure the base image exists in podman's storage: present already,
 * imported from the cached tarball, or made with mmdebstrap (5-20 s) and
 * cached. Tagged `:latest` too.
 */
export async function ensureBaseImage(options: BaseOptions = {}): Promise<BaseImage> {
  const started = performance.now();
  const sources = hostDebianSources();
  const tag = await baseTag(sources);
  const image = `${BASE_IMAGE}:${tag}`;
  const seconds = (): number => (performance.now() - started) / 1000;
  if (!options.refresh && await succeeds("podman", ["image", "exists", image])) {
    return { image, source: "present", seconds: seconds() };
  }
  const cacheDir = options.cacheDir ?? Deno.env.get("VHOST_CONTAINER_CACHE") ?? DEFAULT_CACHE_DIR;
  const tarball = `${cacheDir}/rootfs-${tag}.tar`;
  let source: BaseImage["source"] = "imported";
  if (options.refresh || !exists(tarball)) {
    Deno.mkdirSync(cacheDir, { recursive: true });
    const partial = `${tarball}.${Deno.pid}.partial`;
    await run("mmdebstrap", mmdebstrapArgs(partial, sources));
    Deno.renameSync(partial, tarball);
    source = "made";
  }
  await run("podman", ["import", "--quiet", tarball, image]);
  await run("podman", ["tag", image, `${BASE_IMAGE}:latest`]);
  return { image, source, seconds: seconds() };
}

/**
 * The `/bin/sh` launcher that is a `source` image's entrypoint for device
 * `name`: `deno run` from the image's DENO_DIR only (`--cached-only`,
 * `--frozen` lockfile, never a prompt), with that device's permissions.
 */
export function launcherScript(name: string): string {
  const args = [
    "/usr/local/bin/deno",
    "run",
    "--cached-only",
    "--frozen",
    "--no-prompt",
    ...devicePermissions(name),
    `${APP_DIR}/devices/${name}/main.ts`,
  ];
  for (const arg of args) {
    // No quoting needed, and none attempted: refuse anything a shell would interpret.
    if (!/^[A-Za-z0-9_=,.:/+-]+$/.test(arg)) throw new Error(`unsafe launcher argument ${arg}`);
  }
  return [
    "#!/bin/sh",
    `# vhost-device-${name}: deno with the device's sources and cached dependencies only,`,
    "# and the permissions scripts/compile.ts gives the device.",
    `exec ${args.join(" ")} "$@"`,
    "",
  ].join("\n");
}

/** The image variants, as stages of the Containerfile. */
export type Variant = "source" | "compiled";

/** Options of {@link podmanBuildArgs}. */
export interface PodmanBuildOptions {
  /** The staged build context directory. */
  readonly context: string;
  /** `source` (deno + sources) or `compiled` (the `deno compile`d binary). */
  readonly variant: Variant;
  /** The base image reference. */
  readonly base: string;
  /** Rebuild every layer. */
  readonly noCache?: boolean;
  /** Tags; default `<image>:<VERSION>` and `<image>:latest`. */
  readonly tags?: readonly string[];
}

/**
 * The `podman build` argv for device `name`. No network inside the build
 * (`--network none`) and no registry (`--pull=never`: the base is local).
 * The labels are flags, not Containerfile steps: a step after the shared
 * layers is one more commit per device.
 */
export function podmanBuildArgs(name: string, options: PodmanBuildOptions): string[] {
  const tags = options.tags ?? [`${imageName(name)}:${VERSION}`, `${imageName(name)}:latest`];
  const labels = {
    "org.opencontainers.image.title": `vhost-device-${name}`,
    "org.opencontainers.image.version": VERSION,
    "org.opencontainers.image.description": `vhost-user ${name} device back-end on Deno` +
      (options.variant === "compiled" ? " (deno compile)" : ""),
  };
  return [
    "build",
    "--file",
    `${ROOT}Containerfile`,
    "--target",
    options.variant,
    "--network",
    "none",
    "--pull=never",
    "--build-arg",
    `BASE=${options.base}`,
    ...Object.entries(labels).flatMap(([key, value]) => ["--label", `${key}=${value}`]),
    ...(options.noCache ? ["--no-cache"] : []),
    ...tags.flatMap((tag) => ["--tag", tag]),
    options.context,
  ];
}

/** Where the device's entrypoint goes in a build context (`root/` is copied over `/`). */
const CONTEXT_BIN = "root/usr/local/bin";

/**
 * The `deno compile` command for device `name` of a `compiled` image:
 * {@link compileArgs} (the same permissions) writing into the context's
 * `root/usr/local/bin/`, with `DENORT_BIN` passed on.
 */
export function compileCommand(
  name: string,
  options: { context: string; denortBin: string },
): { args: string[]; env: Record<string, string> } {
  return {
    args: compileArgs(name, { outDir: `${options.context}/${CONTEXT_BIN}` }),
    env: { DENORT_BIN: options.denortBin },
  };
}

/**
 * Stages a `source` build context for device `name` in `context`: the
 * deno binary as `deno`, and in `root/` the local modules of the device's
 * graph (`deno info`) with deno.json and deno.lock, its npm dependencies in
 * the image's DENO_DIR, and the launcher.
 */
export async function stageSource(name: string, context: string): Promise<void> {
  try {
    Deno.linkSync(Deno.execPath(), `${context}/deno`);
  } catch {
    Deno.copyFileSync(Deno.execPath(), `${context}/deno`); // another file system
  }
  const entry = `${ROOT}devices/${name}/main.ts`;
  const info = JSON.parse(await output(Deno.execPath(), ["info", "--json", entry])) as {
    modules: { specifier: string }[];
  };
  const files = ["deno.json", "deno.lock"];
  for (const { specifier } of info.modules) {
    if (!specifier.startsWith("file://")) continue;
    const path = decodeURIComponent(new URL(specifier).pathname);
    if (!path.startsWith(ROOT)) throw new Error(`${path} is outside the repository`);
    files.push(path.slice(ROOT.length));
  }
  const app = `${context}/root${APP_DIR}`;
  for (const file of files) {
    const target = `${app}/${file}`;
    Deno.mkdirSync(target.slice(0, target.lastIndexOf("/")), { recursive: true });
    Deno.copyFileSync(`${ROOT}${file}`, target);
  }
  const denoDir = `${context}/root/var/cache/deno`;
  Deno.mkdirSync(denoDir, { recursive: true });
  // npm packages come from the npm registry here, on the host: the build itself has no network.
  await run(Deno.execPath(), ["cache", "--frozen", "--quiet", `${app}/devices/${name}/main.ts`], {
    env: { DENO_DIR: denoDir },
  });
  // Only the downloads: the analysis and transpile caches there are keyed by this host's paths.
  for (const entry of Deno.readDirSync(denoDir)) {
    if (entry.name !== "npm" && entry.name !== "remote") {
      Deno.removeSync(`${denoDir}/${entry.name}`, { recursive: true });
    }
  }
  Deno.mkdirSync(`${context}/${CONTEXT_BIN}`, { recursive: true });
  Deno.writeTextFileSync(`${context}/${CONTEXT_BIN}/vhost-device-${name}`, launcherScript(name), {
    mode: 0o755,
  });
  Deno.symlinkSync(`vhost-device-${name}`, `${context}/${CONTEXT_BIN}/vhost-device`);
}

/**
 * Unpacks device `name`'s {@link DEVICE_DEBIAN_PACKAGES} into the context's
 * `root/`, documentation left out.
 */
export async function stageDebianPackages(name: string, context: string): Promise<void> {
  Deno.mkdirSync(`${context}/root`, { recursive: true });
  const packages = DEVICE_DEBIAN_PACKAGES[name] ?? [];
  if (packages.length === 0) return;
  const debs = `${context}/debs`;
  Deno.mkdirSync(debs);
  try {
    const download = ["download", "--quiet=2", ...packages];
    if (!await succeeds("apt-get", download, { cwd: debs })) {
      // A machine whose package lists were never fetched (or were cleaned) knows no packages.
      await run("apt-get", ["update", "--quiet=2"]);
      await run("apt-get", download, { cwd: debs });
    }
    for (const entry of Deno.readDirSync(debs)) {
      await run("dpkg-deb", ["--extract", `${debs}/${entry.name}`, `${context}/root`]);
    }
    Deno.removeSync(`${context}/root/usr/share/doc`, { recursive: true });
  } finally {
    Deno.removeSync(debs, { recursive: true });
  }
}

/**
 * Stages a `compiled` build context for device `name` in `context`: the
 * binary at `binary` (from {@link compileCommand}) as
 * `root/usr/local/bin/vhost-device-<name>`, and the entrypoint symlink.
 */
export function stageCompiled(name: string, context: string, binary: string): void {
  const bin = `${context}/${CONTEXT_BIN}`;
  Deno.mkdirSync(bin, { recursive: true });
  const target = `${bin}/vhost-device-${name}`;
  if (binary !== target) Deno.copyFileSync(binary, target);
  Deno.chmodSync(target, 0o755);
  Deno.symlinkSync(`vhost-device-${name}`, `${bin}/vhost-device`);
}

/** Options of {@link buildImage}. */
export interface BuildOptions {
  /** The base image (from {@link ensureBaseImage}). */
  readonly base: string;
  /** A `denort` binary: build the `compiled` variant with `deno compile`. */
  readonly denortBin?: string;
  /** An already compiled binary: build the `compiled` variant from it. */
  readonly compiledBinary?: string;
  /** Rebuild every layer. */
  readonly noCache?: boolean;
  /** Tags; default `<image>:<VERSION>` and `<image>:latest`. */
  readonly tags?: readonly string[];
}

/** What {@link buildImage} built. */
export interface BuiltImage {
  /** The first tag. */
  readonly image: string;
  /** The variant built. */
  readonly variant: Variant;
  /** Seconds to stage the context and build. */
  readonly seconds: number;
}

/** Stages a context and builds device `name`'s image; the context is removed after. */
export async function buildImage(name: string, options: BuildOptions): Promise<BuiltImage> {
  const started = performance.now();
  const context = await Deno.makeTempDir({ prefix: `vhost-device-${name}-image-` });
  try {
    await stageDebianPackages(name, context);
    let variant: Variant = "source";
    if (options.compiledBinary !== undefined) {
      variant = "compiled";
      stageCompiled(name, context, options.compiledBinary);
    } else if (options.denortBin !== undefined) {
      variant = "compiled";
      const { args, env } = compileCommand(name, { context, denortBin: options.denortBin });
      const out = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, env, stderr: "piped" })
        .output();
      const stderr = new TextDecoder().decode(out.stderr);
      if (!out.success) {
        throw new Error(
          isDenortDownloadFailure(stderr)
            ? `deno compile could not use DENORT_BIN=${options.denortBin}: ${stderr.trim()}`
            : `deno ${args.join(" ")} failed:\n${stderr.trim()}`,
        );
      }
      stageCompiled(name, context, `${context}/${CONTEXT_BIN}/vhost-device-${name}`);
    } else {
      await stageSource(name, context);
    }
    const tags = options.tags ?? [`${imageName(name)}:${VERSION}`, `${imageName(name)}:latest`];
    await run("podman", podmanBuildArgs(name, { ...options, context, variant, tags }));
    return { image: tags[0], variant, seconds: (performance.now() - started) / 1000 };
  } finally {
    await Deno.remove(context, { recursive: true });
  }
}

/** The size of `image` in podman's storage, in bytes (its layers, shared ones included). */
export async function imageSize(image: string): Promise<number> {
  return Number(await output("podman", ["image", "inspect", "--format", "{{.Size}}", image]));
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function succeeds(
  command: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<boolean> {
  const { success } = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  return success;
}

async function output(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(command, { ...options, args, stdin: "null" }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${command} is not installed (scripts/install_qemu.sh installs it)`);
    }
    throw error;
  }
  if (!result.success) {
    const stderr = new TextDecoder().decode(result.stderr).trim();
    throw new Error(`${command} ${args.join(" ")} failed (${result.code}):\n${stderr}`);
  }
  return new TextDecoder().decode(result.stdout).trim();
}

async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<void> {
  await output(command, args, options);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      "no-cache": { type: "boolean" },
      "refresh-base": { type: "boolean" },
      save: { type: "string" },
    },
    allowPositionals: true,
  });
  const devices = positionals.length > 0 ? positionals : discoverDevices(ROOT);
  const base = await ensureBaseImage({ refresh: values["refresh-base"] });
  console.error(`${base.image}: ${base.source} in ${base.seconds.toFixed(1)} s`);
  for (const name of devices) {
    const built = await buildImage(name, {
      base: base.image,
      denortBin: Deno.env.get("DENORT_BIN"),
      noCache: values["no-cache"],
    });
    const size = await imageSize(built.image);
    console.error(
      `${built.image} (${built.variant}): ${(size / 1e6).toFixed(1)} MB, ` +
        `built in ${built.seconds.toFixed(1)} s`,
    );
    if (values.save) {
      Deno.mkdirSync(values.save, { recursive: true });
      const file = `${values.save}/vhost-device-${name}-${VERSION}.tar`;
      await run("podman", ["save", "--quiet", "--format", "oci-archive", "-o", file, built.image]);
      console.error(`saved ${file} (podman load -i ${file})`);
    }
  }
}

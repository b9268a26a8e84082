// The pure parts of scripts/container.ts; tests/e2e/container_test.ts builds and runs the images.
import assert from "node:assert/strict";
import { VERSION } from "../core/cli.ts";
import { compileArgs, DEVICE_PERMISSIONS, discoverDevices } from "./compile.ts";
import {
  APP_DIR,
  baseTag,
  compileCommand,
  debianSources,
  DEFAULT_SOURCES,
  DEVICE_DEBIAN_PACKAGES,
  EXTRACT_HOOK,
  launcherScript,
  mmdebstrapArgs,
  podmanBuildArgs,
  ROOT,
} from "./container.ts";

Deno.test("container: the host's Debian mirror from deb822 and one-line sources", () => {
  const deb822 = `Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`;
  const nodesource = `Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
`;
  assert.deepEqual(debianSources([nodesource, deb822]), {
    debian: "http://mirror.example/debian",
    security: "http://mirror.example/debian-security",
  });
  assert.deepEqual(
    debianSources(["deb [arch=amd64] http://ftp.example/debian bookworm main\n"]),
    { debian: "http://ftp.example/debian", security: DEFAULT_SOURCES.security },
  );
  assert.deepEqual(debianSources([]), DEFAULT_SOURCES);
});

Deno.test("container: the base is libc6 and libgcc-s1 extracted, dash added, from bookworm", async () => {
  const args = mmdebstrapArgs("/tmp/rootfs.tar", DEFAULT_SOURCES);
  assert.ok(args.includes("--variant=extract"));
  assert.ok(args.includes("--format=tar"));
  assert.ok(args.includes("--include=libc6,libgcc-s1"));
  assert.deepEqual(args.slice(-5), [
    "bookworm",
    "/tmp/rootfs.tar",
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
  ]);
  assert.match(EXTRACT_HOOK, /apt-get download --quiet=2 dash/);
  assert.match(EXTRACT_HOOK, /vhost:x:65532:65532:/);
  // The tag follows the inputs, so a changed hook or mirror makes a new base.
  const tag = await baseTag(DEFAULT_SOURCES);
  assert.match(tag, /^[0-9a-f]{12}$/);
  assert.equal(await baseTag(DEFAULT_SOURCES), tag);
  assert.notEqual(await baseTag({ ...DEFAULT_SOURCES, debian: "http://other/debian" }), tag);
});

Deno.test("container: each launcher runs deno from the cache only, with compile.ts's permissions", () => {
  assert.equal(
    launcherScript("rng").split("\n").at(-2),
    "exec /usr/local/bin/deno run --cached-only --frozen --no-prompt " +
      `--allow-ffi --allow-read --allow-write --allow-env=RUST_LOG ${APP_DIR}/devices/rng/main.ts "$@"`,
  );
  for (const name of discoverDevices(ROOT)) {
    const exec = launcherScript(name).split("\n").at(-2) ?? "";
    assert.ok(exec.includes(` ${DEVICE_PERMISSIONS[name].join(" ")} `), name);
    assert.ok(!/--allow-(all|net|run)|\s-A\s/.test(exec), exec);
  }
  assert.throws(() => launcherScript("mystery"), /devices\/mystery has no entry/);
});

Deno.test("container: podman build has no network, pulls nothing and picks the stage", () => {
  const args = podmanBuildArgs("vsock", {
    context: "/tmp/ctx",
    variant: "source",
    base: "localhost/vhost-device-base:abc",
  });
  assert.deepEqual(args, [
    "build",
    "--file",
    `${ROOT}Containerfile`,
    "--target",
    "source",
    "--network",
    "none",
    "--pull=never",
    "--build-arg",
    "BASE=localhost/vhost-device-base:abc",
    "--label",
    "org.opencontainers.image.title=vhost-device-vsock",
    "--label",
    `org.opencontainers.image.version=${VERSION}`,
    "--label",
    "org.opencontainers.image.description=vhost-user vsock device back-end on Deno",
    "--tag",
    `localhost/vhost-device-vsock:${VERSION}`,
    "--tag",
    "localhost/vhost-device-vsock:latest",
    "/tmp/ctx",
  ]);
  const compiled = podmanBuildArgs("rng", {
    context: "/c",
    variant: "compiled",
    base: "b",
    noCache: true,
    tags: ["t"],
  });
  assert.deepEqual(compiled.slice(3, 5), ["--target", "compiled"]);
  assert.ok(compiled.some((arg) => arg.endsWith("back-end on Deno (deno compile)")));
  assert.deepEqual(compiled.slice(-4), ["--no-cache", "--tag", "t", "/c"]);
});

Deno.test("container: with DENORT_BIN, deno compile is compile.ts's command into the context", () => {
  const { args, env } = compileCommand("rng", { context: "/tmp/ctx", denortBin: "/opt/denort" });
  assert.deepEqual(args, compileArgs("rng", { outDir: "/tmp/ctx/root/usr/local/bin" }));
  assert.deepEqual(args.slice(-3), [
    "--output",
    "/tmp/ctx/root/usr/local/bin/vhost-device-rng",
    "devices/rng/main.ts",
  ]);
  assert.deepEqual(env, { DENORT_BIN: "/opt/denort" });
});

Deno.test("container: the Containerfile's stages share one entrypoint", () => {
  const text = Deno.readTextFileSync(`${ROOT}Containerfile`);
  assert.match(text, /^FROM \$\{BASE\} AS common$/m);
  assert.match(text, /^FROM common AS source$/m);
  assert.match(text, /^FROM common AS compiled$/m);
  assert.equal(text.match(/^ENTRYPOINT /gm)?.length, 1);
  assert.equal(text.match(/^USER 65532:65532$/gm)?.length, 2);
});

Deno.test("container: extra Debian packages are plain package names (apt-get download)", () => {
  for (const [name, packages] of Object.entries(DEVICE_DEBIAN_PACKAGES)) {
    for (const pkg of packages) assert.match(pkg, /^[a-z0-9][a-z0-9+.-]+(\/[a-z-]+)?$/, name);
  }
  assert.deepEqual(DEVICE_DEBIAN_PACKAGES.gpio, ["libgpiod3"]);
});

// The container images (scripts/container.ts, Containerfile) serving a real Linux guest: every
// device's image is built from the repository (the Debian base made by mmdebstrap, cached),
// answers --print-capabilities and --help as its command; the rng and vsock images run with
// --network none, a read-only root and the socket directory bind-mounted, as the unprivileged
// user, and serve one guest booted by QEMU on the host (/dev/hwrng; vsock data both ways); then
// `podman stop` ends them cleanly (SIGTERM handled, exit 0, sockets removed).
// Run: deno test --allow-all tests/e2e/container_test.ts (root; installs podman if missing)
import assert from "node:assert/strict";
import { discoverDevices } from "../../scripts/compile.ts";
import {
  buildImage,
  CONTAINER_UID,
  ensureBaseImage,
  imageName,
  imageSize,
  ROOT,
} from "../../scripts/container.ts";
import { assertGuestSucceeded, consoleTail, type GuestResult, startGuest } from "./guest.ts";

// This machine kind's podman needs runc (crun 1.8.1 refuses its hybrid cgroup layout) and
// ulimits it may set without CAP_SYS_RESOURCE. Hosts that run the images do not: this file is
// the test's own, never the README's.
const TEST_CONTAINERS_CONF = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
`;

const KIB = 1024;
const VSOCK_BYTES = 256 * KIB;

async function podman(args: string[], options: { check?: boolean } = {}): Promise<string> {
  const out = await new Deno.Command("podman", { args, stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success && options.check !== false) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`podman ${args.join(" ")} failed (${out.code}):\n${stderr}\n${text}`);
  }
  return text;
}

/** Installs podman, mmdebstrap and runc through the project's setup when one is missing. */
async function ensurePodman(): Promise<void> {
  const missing = async (): Promise<boolean> => {
    for (const tool of ["podman", "mmdebstrap", "runc"]) {
      const found = await new Deno.Command("sh", {
        args: ["-c", `command -v ${tool}`],
        stdout: "null",
      }).output();
      if (!found.success) return true;
    }
    return false;
  };
  if (!(await missing())) return;
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}scripts/install_qemu.sh`],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success || await missing()) {
    throw new Error(
      `scripts/install_qemu.sh did not install podman, mmdebstrap and runc:\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
}

/** A container's output: podman logs writes its stderr to stderr. */
async function logs(container: string): Promise<string> {
  const out = await new Deno.Command("podman", { args: ["logs", container], stdin: "null" })
    .output();
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

async function waitForPath(path: string, container: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      Deno.statSync(path);
      return;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${container} did not create ${path} within ${timeoutMs} ms:\n${await logs(container)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function readAll(conn: Deno.Conn): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buffer = new Uint8Array(64 * KIB);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

Deno.test("container e2e: every device's image builds; rng and vsock serve a guest from podman, then stop cleanly", async () => {
  await ensurePodman();
  const work = await Deno.makeTempDir({ prefix: "container-e2e-" });
  const previousConf = Deno.env.get("CONTAINERS_CONF");
  Deno.env.set("CONTAINERS_CONF", `${work}/containers.conf`);
  await Deno.writeTextFile(`${work}/containers.conf`, TEST_CONTAINERS_CONF);
  const containers: string[] = [];
  const listeners: Deno.UnixListener[] = [];
  const compiledImage = `localhost/vhost-device-e2e-compiled-${Deno.pid}:latest`;
  const report: string[] = [];
  try {
    // 1. Images: the base from its cache (or mmdebstrap), then one per device folder.
    const base = await ensureBaseImage();
    report.push(`base ${base.source} in ${base.seconds.toFixed(1)} s`);
    for (const name of discoverDevices(ROOT)) {
      const built = await buildImage(name, { base: base.image });
      const size = await imageSize(built.image);
      report.push(`${name} built in ${built.seconds.toFixed(1)} s, ${(size / 1e6).toFixed(1)} MB`);
      // The container's command is the device's: --print-capabilities and --help.
      const capabilities = JSON.parse(
        await podman(["run", "--rm", "--network", "none", built.image, "--print-capabilities"]),
      );
      assert.equal(typeof capabilities.type, "string", `${name}: ${JSON.stringify(capabilities)}`);
      const help = await podman(["run", "--rm", "--network", "none", built.image, "--help"]);
      assert.match(help, new RegExp(`Usage: vhost-device-${name} `), `${name} --help`);
      assert.equal(
        await podman(["image", "inspect", "--format", "{{.Config.User}}", built.image]),
        `${CONTAINER_UID}:${CONTAINER_UID}`,
      );
    }

    // 2. The compiled variant's image, from a stand-in binary (denort cannot be downloaded
    // here): the same entrypoint and user as the source image, the arguments passed through.
    const standIn = `${work}/stand-in`;
    await Deno.writeTextFile(standIn, '#!/bin/sh\necho "compiled $0 $*"\n', { mode: 0o755 });
    await buildImage("rng", { base: base.image, compiledBinary: standIn, tags: [compiledImage] });
    assert.equal(
      await podman(["run", "--rm", "--network", "none", compiledImage, "--print-capabilities"]),
      "compiled /usr/local/bin/vhost-device --print-capabilities",
    );
    const config = "{{json .Config.Entrypoint}} {{.Config.User}} {{json .Config.Cmd}}";
    assert.equal(
      await podman(["image", "inspect", "--format", config, compiledImage]),
      await podman(["image", "inspect", "--format", config, `${imageName("rng")}:latest`]),
    );

    // 3. rng and vsock serve a guest from their containers, through /run/vhost.
    const dir = `${work}/run-vhost`;
    await Deno.mkdir(dir, { mode: 0o700 });
    await Deno.chown(dir, CONTAINER_UID, CONTAINER_UID);
    const run = async (name: string, args: string[], socket: string): Promise<string> => {
      const container = `vhost-e2e-${name}-${Deno.pid}`;
      const started = performance.now();
      containers.push(container);
      await podman([
        "run",
        "--detach",
        "--name",
        container,
        "--network",
        "none",
        "--read-only",
        "--volume",
        `${dir}:/run/vhost`,
        `${imageName(name)}:latest`,
        "--log-level",
        "info",
        ...args,
      ]);
      await waitForPath(`${dir}/${socket}`, container);
      // Made by the daemon, running as the image's unprivileged user.
      assert.equal(Deno.statSync(`${dir}/${socket}`).uid, CONTAINER_UID, socket);
      report.push(`${name}: podman run to listening ${seconds(performance.now() - started)}`);
      return container;
    };
    const rng = await run("rng", ["--socket-path", "/run/vhost/rng.sock"], "rng.sock0");
    const vsock = await run("vsock", [
      "--guest-cid",
      "3",
      "--socket",
      "/run/vhost/vhost.sock",
      "--uds-path",
      "/run/vhost/vm.vsock",
    ], "vm.vsock");

    // guest → host: the daemon (uid 65532) connects to this host listener.
    const fromGuest = Deno.listen({ transport: "unix", path: `${dir}/vm.vsock_5000` });
    listeners.push(fromGuest);
    await Deno.chmod(`${dir}/vm.vsock_5000`, 0o666);
    const received = (async () => {
      const conn = await fromGuest.accept();
      const data = await readAll(conn);
      conn.close();
      return { length: data.length, sha: await sha256(data) };
    })();

    const guest = await startGuest({
      modules: ["virtio_rng", "vmw_vsock_virtio_transport"],
      tools: ["socat", "sha256sum"],
      timeoutMs: 300_000,
      qemuArgs: [
        "-chardev",
        `socket,id=rng0,path=${dir}/rng.sock0`,
        "-device",
        "vhost-user-rng-pci,chardev=rng0",
        "-chardev",
        `socket,id=vsock0,path=${dir}/vhost.sock`,
        "-device",
        "vhost-user-vsock-pci,chardev=vsock0",
      ],
      script: `
        echo "@@RESULT rng_current $(cat /sys/class/misc/hw_random/rng_current)"
        head -c 65536 /dev/hwrng > /tmp/r
        echo "@@RESULT rng_bytes $(wc -c < /tmp/r)"
        echo "@@RESULT rng_values $(od -An -v -tu1 /tmp/r | tr -s ' ' '\\n' | grep . | sort -u | wc -l)"
        dd if=/dev/urandom of=/tmp/out bs=1024 count=${VSOCK_BYTES / KIB} 2>/dev/null
        echo "@@RESULT out_sha $(sha256sum /tmp/out | cut -d' ' -f1)"
        socat -u FILE:/tmp/out VSOCK-CONNECT:2:5000 || echo "@@RESULT out_failed $?"
        socat -u VSOCK-LISTEN:5001 CREATE:/tmp/in &
        listener=$!
        sleep 1
        echo "@@LISTENING 5001"
        wait $listener || echo "@@RESULT in_failed $?"
        echo "@@RESULT in_sha $(sha256sum /tmp/in | cut -d' ' -f1)"
      `,
    });
    let result: GuestResult;
    {
      await using running = guest;
      // host → guest: through the hybrid vsock socket the daemon made in /run/vhost.
      await running.waitFor("@@LISTENING 5001", { timeoutMs: 240_000 });
      const payload = new Uint8Array(VSOCK_BYTES);
      for (let at = 0; at < payload.length; at += 65536) {
        crypto.getRandomValues(payload.subarray(at, at + 65536));
      }
      const conn = await Deno.connect({ transport: "unix", path: `${dir}/vm.vsock` });
      await conn.write(new TextEncoder().encode("CONNECT 5001\n"));
      const ok = new Uint8Array(64);
      const n = (await conn.read(ok)) ?? 0;
      assert.equal(new TextDecoder().decode(ok.subarray(0, n)), "OK 5001\n");
      for (let at = 0; at < payload.length;) at += await conn.write(payload.subarray(at));
      conn.close();
      result = await running.result;
      assertGuestSucceeded(result);
      const r = result.results;
      const check = (condition: boolean, message: string): void => {
        if (!condition) throw new Error(`${message}\n${consoleTail(result.console)}`);
      };
      check(r.rng_current?.startsWith("virtio_rng") ?? false, `rng_current ${r.rng_current}`);
      check(r.rng_bytes === "65536", `read ${r.rng_bytes} bytes of /dev/hwrng`);
      check(r.rng_values === "256", `${r.rng_values} distinct byte values in 64 KiB`);
      const out = await received;
      check(out.length === VSOCK_BYTES && out.sha === r.out_sha, `guest → host ${out.length} B`);
      check(r.in_sha === await sha256(payload), `host → guest sha ${r.in_sha}`);
      report.push(`guest boot to done ${seconds(result.totalMs)}`);
    }

    // 4. podman stop: SIGTERM, the daemons exit 0 well before the 10 s SIGKILL, sockets gone.
    for (
      const [container, sockets] of [[rng, ["rng.sock0"]], [vsock, [
        "vhost.sock",
        "vm.vsock",
      ]]] as const
    ) {
      const started = performance.now();
      await podman(["stop", "--time", "10", container]);
      const stopMs = performance.now() - started;
      const state = await podman(["inspect", "--format", "{{.State.ExitCode}}", container]);
      const output = await logs(container);
      assert.equal(state, "0", `${container} exit code ${state}:\n${output}`);
      assert.ok(stopMs < 8000, `${container} took ${seconds(stopMs)} to stop:\n${output}`);
      assert.match(output, /stopped after serving 1 connection\(s\)/, output);
      for (const socket of sockets) {
        assert.throws(() => Deno.statSync(`${dir}/${socket}`), Deno.errors.NotFound, socket);
      }
      report.push(`${container.split("-")[2]}: podman stop ${seconds(stopMs)}`);
    }
    console.log(`container e2e: ${report.join("; ")}`);
  } finally {
    listeners.forEach((listener) => listener.close());
    for (const container of containers) {
      await podman(["rm", "--force", container], { check: false });
    }
    await podman(["rmi", "--force", compiledImage], { check: false });
    if (previousConf === undefined) Deno.env.delete("CONTAINERS_CONF");
    else Deno.env.set("CONTAINERS_CONF", previousConf);
    await Deno.remove(work, { recursive: true });
  }
});

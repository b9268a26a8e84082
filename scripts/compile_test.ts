import assert from "node:assert/strict";
import {
  compileArgs,
  DEVICE_PERMISSIONS,
  devicePermissions,
  discoverDevices,
  isDenortDownloadFailure,
} from "./compile.ts";

Deno.test("compile: rng gets ffi, read, write and RUST_LOG only", () => {
  assert.deepEqual(compileArgs("rng"), [
    "compile",
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env=RUST_LOG",
    "--output",
    "dist/vhost-device-rng",
    "devices/rng/main.ts",
  ]);
});

Deno.test("compile: --target and the output directory are passed through", () => {
  const args = compileArgs("rng", { target: "aarch64-unknown-linux-gnu", outDir: "out" });
  assert.deepEqual(args.slice(5), [
    "--target",
    "aarch64-unknown-linux-gnu",
    "--output",
    "out/vhost-device-rng",
    "devices/rng/main.ts",
  ]);
});

Deno.test("compile: never --allow-all, --allow-run, --allow-net or an unscoped --allow-env", () => {
  for (const [name, permissions] of Object.entries(DEVICE_PERMISSIONS)) {
    for (const flag of permissions) {
      assert.ok(!/^--allow-(all|run|net|sys)\b|^-A$|^--allow-env$/.test(flag), `${name}: ${flag}`);
    }
  }
});

Deno.test("compile: scmi gets ffi, read (IIO sysfs), write and RUST_LOG only", () => {
  assert.deepEqual(compileArgs("scmi").slice(0, 5), [
    "compile",
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env=RUST_LOG",
  ]);
});

Deno.test("compile: a device without a permission entry is refused", () => {
  assert.throws(
    () => compileArgs("mystery"),
    /devices\/mystery has no entry in DEVICE_PERMISSIONS/,
  );
});

Deno.test("compile: every device folder has a permission entry", () => {
  const root = new URL("..", import.meta.url).pathname;
  const devices = discoverDevices(root);
  assert.ok(devices.includes("rng"));
  assert.ok(devices.includes("i2c"));
  for (const name of devices) assert.doesNotThrow(() => compileArgs(name), name);
});

Deno.test("compile: recognizes deno's failure to download denort, and only that", () => {
  const offline = `Compile devices/rng/main.ts to dist/vhost-device-rng
Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip
error: Writing deno compile executable to temporary file 'dist/vhost-device-rng.tmp-1'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)`;
  assert.ok(isDenortDownloadFailure(offline));
  assert.ok(!isDenortDownloadFailure("error: TS2322 [ERROR]: Type 'string' is not assignable"));
  assert.ok(!isDenortDownloadFailure(""));
});

Deno.test("compile: devicePermissions is the table's entry, and refuses an unknown device", () => {
  assert.equal(devicePermissions("vsock"), DEVICE_PERMISSIONS.vsock);
  assert.throws(() => devicePermissions("mystery"), /devices\/mystery has no entry/);
});

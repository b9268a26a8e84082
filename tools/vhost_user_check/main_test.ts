import assert from "node:assert/strict";
import { check, checkConfig, COMMAND } from "./main.ts";
import { parseCommandLine, type ParsedOptions } from "../../core/cli.ts";
import { readReproducer } from "./fuzz.ts";
import { FRAGILE_EXIT_CODE } from "./testing/fragile_backend.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const FRAGILE = new URL("./testing/fragile_backend.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

function parsed(args: string[]): ParsedOptions {
  const options = parseCommandLine(args, COMMAND);
  if (typeof options === "string") throw new Error(options);
  return options;
}

Deno.test("cli: mistakes are one line and exit 2", async () => {
  const none = await run([]);
  assert.equal(none.code, 2);
  assert.equal(
    none.stderr,
    "vhost-user-check: error: the option --socket (or --exec) is required\n",
  );
  const both = await run(["--socket", "/a", "--exec", "x {socket}"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--socket cannot be used with --exec/);
  assert.throws(
    () => checkConfig(parsed(["--socket", "/a", "--device", "gpu"])),
    /--device: one of blk, rng, vsock/,
  );
  assert.throws(() => checkConfig(parsed(["--exec", "daemon -s /x"])), /needs \{socket\}/);
  assert.throws(() => checkConfig(parsed(["--socket", "/a", "--messages", "lots"])), /--messages/);
  const config = checkConfig(parsed(["--socket", "/a", "--seed", "9", "--messages", "100"]));
  assert.equal(config.seed, 9);
  assert.equal(config.messages, 100);
  assert.equal(config.burst, 256);
  assert.ok(config.conformance);
});

Deno.test("fuzz: a back-end that dies is caught, its reproducer shrunk, and --replay repeats the crash", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vuc-test-" });
  const reproducer = `${dir}/crash.json`;
  try {
    const exec = `${Deno.execPath()} run -A ${FRAGILE} {socket}`;
    const report = await check({
      ...checkConfig(parsed(["--exec", exec, "--no-conformance", "--seed", "2", "--burst", "64"])),
      messages: 200,
      reproducer,
      timeoutMs: 3000,
    });
    const findings = report.fuzz?.findings ?? [];
    assert.ok(findings.length >= 1, "the crash was found");
    assert.equal(findings[0].kind, "crash");
    assert.match(findings[0].detail, new RegExp(`code ${FRAGILE_EXIT_CODE}.*vring size 0`, "s"));
    const saved = readReproducer(reproducer);
    assert.equal(saved.failure, "crash");
    assert.ok(saved.ops.length <= 3, `shrunk to ${saved.ops.length} operations`);

    const replayed = await run(["--exec", exec, "--replay", reproducer]);
    assert.equal(replayed.code, 1, replayed.stdout + replayed.stderr);
    assert.match(replayed.stdout, /Replay of .*crash\.json: CRASH: exited with code 134/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("cli: --seconds bounds a fuzz run, --json reports it, exit 0 when all is well", async () => {
  const rng = `${Deno.execPath()} run -A ${
    new URL("../../devices/rng/main.ts", import.meta.url).pathname
  } -s {socket}`;
  const result = await run([
    "--exec",
    rng,
    "--no-conformance",
    "--seconds",
    "1",
    "--seed",
    "5",
    "--json",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout);
  assert.equal(report.ok, true);
  assert.deepEqual(report.conformance, []);
  assert.ok(report.fuzz.messages > 0);
  assert.ok(report.fuzz.seconds >= 1 && report.fuzz.seconds < 30, `${report.fuzz.seconds} s`);
  assert.equal(report.fuzz.seed, 5);
});

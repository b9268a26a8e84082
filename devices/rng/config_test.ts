import assert from "node:assert/strict";
import { parseCommandLine, renderHelp, UsageError } from "../../core/cli.ts";
import { DEFAULT_POLL_MICROS } from "../../core/event_loop.ts";
import { RNG_COMMAND, type RngConfig, rngConfig } from "./config.ts";

function parse(...args: string[]): RngConfig {
  const parsed = parseCommandLine(args, RNG_COMMAND);
  if (typeof parsed === "string") throw new Error(`unexpected ${parsed}`);
  return rngConfig(parsed);
}

function rejects(args: string[], message: RegExp): void {
  assert.throws(() => parse(...args), (error: unknown) => {
    assert.ok(error instanceof UsageError, `${error}`);
    assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("rng config: defaults match upstream", () => {
  assert.deepEqual(parse("-s", "/run/rng.sock"), {
    addresses: [{ path: "/run/rng.sock0" }],
    source: "/dev/urandom",
    periodMs: 65536,
    maxBytesPerInstance: null,
    logLevel: undefined,
    pollMicros: DEFAULT_POLL_MICROS,
  });
  assert.equal(parse("-s", "/x", "--poll-us", "50").pollMicros, 50);
  assert.throws(() => parse("-s", "/x", "--poll-us", "x"), /--poll-us/);
});

Deno.test("rng config: long and short flags; -m is divided among the sockets", () => {
  const short = parse("-s", "/x/s", "-c", "3", "-f", "/dev/random", "-p", "1000", "-m", "1000");
  const long = parse(
    "--socket-path=/x/s",
    "--socket-count=3",
    "--rng-source=/dev/random",
    "--period=1000",
    "--max-bytes=1000",
    "--log-level=DEBUG",
  );
  assert.deepEqual(short.addresses, [{ path: "/x/s0" }, { path: "/x/s1" }, { path: "/x/s2" }]);
  assert.equal(short.source, "/dev/random");
  assert.equal(short.periodMs, 1000);
  assert.equal(short.maxBytesPerInstance, 333, "integer division, as upstream");
  assert.deepEqual({ ...long, logLevel: undefined }, short);
  assert.equal(long.logLevel, "debug");
});

Deno.test("rng config: the period bounds are 1 and 65536 inclusive", () => {
  assert.equal(parse("-s", "s", "-p", "1").periodMs, 1);
  assert.equal(parse("-s", "s", "-p", "65536").periodMs, 65536);
});

Deno.test("rng config: --socket-fd serves one inherited socket", () => {
  assert.deepEqual(parse("--socket-fd", "3").addresses, [{ fd: 3 }]);
});

Deno.test("rng config: every mistake is a one-line UsageError naming the option", () => {
  rejects([], /--socket-path.*required/);
  rejects(["-s"], /argument missing|-s/);
  rejects(["-s", "s", "--bogus"], /bogus/);
  rejects(["-s", "s", "extra"], /extra|positional/i);
  rejects(["-s", "s", "-c", "0"], /--socket-count: must be at least 1/);
  rejects(["-s", "s", "-c", "two"], /--socket-count: not a number/);
  rejects(["-s", "s", "-p", "0"], /--period: must be at least 1/);
  rejects(["-s", "s", "-p", "65537"], /--period: must be at most 65536/);
  rejects(["-s", "s", "-p", "-5"], /-p/);
  rejects(["-s", "s", "-p", "1.5"], /--period: not a number/);
  rejects(["-s", "s", "-m", "0"], /--max-bytes: must be at least 1/);
  rejects(["-s", "s", "-m", "lots"], /--max-bytes: not a number/);
  rejects(["-s", "s", "-m", "99999999999999999999"], /--max-bytes: not a number/);
  rejects(["-s", "s", "-c", "4", "-m", "3"], /--max-bytes: less than one byte per socket/);
  rejects(["-s", "s", "-f", ""], /--rng-source: empty path/);
  rejects(["-s", "s", "--log-level", "loud"], /--log-level/);
  rejects(["-s", "s", "--socket-fd", "3"], /--socket-fd cannot be used with --socket-path/);
  rejects(["--socket-fd", "3", "-c", "2"], /--socket-count must be 1/);
});

Deno.test("rng config: --help lists every option with its default", () => {
  const help = renderHelp(RNG_COMMAND);
  for (
    const text of [
      "-s, --socket-path <SOCKET>",
      "-c, --socket-count <COUNT>",
      "-f, --rng-source <RNG_SOURCE>",
      "[default: /dev/urandom]",
      "-p, --period <PERIOD>",
      "[default: 65536]",
      "-m, --max-bytes <MAX_BYTES>",
    ]
  ) assert.ok(help.includes(text), text);
});

import assert from "node:assert/strict";
import {
  capabilities,
  type CommandSpec,
  listenAddresses,
  loggerFor,
  logLevelOption,
  parseCommandLine,
  parseInteger,
  renderHelp,
  SOCKET_OPTIONS,
  UsageError,
} from "./cli.ts";
import { socketPaths } from "./daemon.ts";

const SPEC: CommandSpec = {
  name: "vhost-device-test",
  about: "A test",
  options: [
    ...SOCKET_OPTIONS,
    { long: "period", short: "p", kind: "value", defaultValue: "65536", help: "Period" },
    { long: "vm", kind: "value", multiple: true, help: "A VM" },
    { long: "a", kind: "flag", help: "A" },
    { long: "b", kind: "flag", help: "B" },
  ],
  conflicts: [["a", "b"]],
};

Deno.test("options parse with defaults, short names and repeats", () => {
  const parsed = parseCommandLine(["-s", "/tmp/x", "--vm", "1", "--vm=2", "-p", "10"], SPEC);
  assert.deepEqual(parsed, {
    "socket-path": "/tmp/x",
    "socket-count": "1",
    period: "10",
    vm: ["1", "2"],
  });
  assert.equal(parseCommandLine(["--help"], SPEC), "help");
  assert.equal(parseCommandLine(["-V"], SPEC), "version");
});

Deno.test("mistakes are one-line usage errors naming the option", () => {
  assert.throws(() => parseCommandLine(["--bogus"], SPEC), UsageError);
  assert.throws(() => parseCommandLine(["--a", "--b"], SPEC), /--a cannot be used with --b/);
  assert.throws(
    () => parseInteger("12x", { option: "period" }),
    /invalid value '12x' for --period/,
  );
  assert.throws(() => parseInteger("0", { option: "period", min: 1 }), /at least 1/);
  assert.throws(() => parseInteger("65537", { option: "period", max: 65536 }), /at most 65536/);
  assert.equal(parseInteger("0x10", { option: "x" }), 16);
});

Deno.test("socket addresses: indexed paths, exact paths, inherited fds", () => {
  assert.deepEqual(socketPaths("/r/rng.sock", { count: 2, indexed: true }), [
    "/r/rng.sock0",
    "/r/rng.sock1",
  ]);
  const parse = (args: string[]) => parseCommandLine(args, SPEC) as Record<string, string>;
  assert.deepEqual(listenAddresses(parse(["-s", "/r/x"]), { indexed: true }), [{ path: "/r/x0" }]);
  assert.deepEqual(listenAddresses(parse(["-s", "/r/x"]), { indexed: false }), [{ path: "/r/x" }]);
  assert.deepEqual(listenAddresses(parse(["--socket-fd", "3"]), { indexed: true }), [{ fd: 3 }]);
  assert.throws(
    () => listenAddresses(parse([]), { indexed: true }),
    /--socket-path \(or --socket-fd\) is required/,
  );
  assert.throws(
    () => listenAddresses(parse(["-s", "/x", "-c", "2"]), { indexed: false }),
    /must be 1/,
  );
  assert.throws(
    () => listenAddresses(parse(["-s", "/x", "-c", "0"]), { indexed: true }),
    /at least 1/,
  );
  assert.throws(
    () => listenAddresses(parse(["-s", "/x", "--socket-fd", "3"]), { indexed: true }),
    /cannot be used/,
  );
});

Deno.test("help lists every option with its default", () => {
  const help = renderHelp(SPEC);
  assert.match(help, /-s, --socket-path <SOCKET>/);
  assert.match(help, /-p, --period <VALUE>\s+Period \[default: 65536\]/);
  assert.match(help, /-V, --version/);
});

Deno.test("--log-level overrides RUST_LOG; a bad level is a usage error", () => {
  assert.ok(loggerFor("t", { flag: "debug" }).enabled("debug"));
  assert.ok(!loggerFor("t", { flag: "warn" }).enabled("info"));
  assert.throws(() => loggerFor("t", { flag: "loud" }), UsageError);
});

Deno.test("--print-capabilities answers with the back-end type, as vhost-user.rst asks", () => {
  const spec: CommandSpec = { ...SPEC, backendType: "rng" };
  assert.equal(parseCommandLine(["--print-capabilities"], spec), "capabilities");
  assert.equal(capabilities(spec), '{"type":"rng"}');
  assert.match(renderHelp(spec), /--print-capabilities/);
  assert.throws(
    () => parseCommandLine(["--print-capabilities"], SPEC),
    UsageError,
    "only with a type",
  );
});

Deno.test("cli: a leading -- (as deno task passes it) is dropped", () => {
  const spec: CommandSpec = {
    name: "x",
    about: "x",
    options: [{ long: "socket-path", short: "s", kind: "value", help: "socket" }],
  };
  assert.deepEqual(parseCommandLine(["--", "-s", "/a"], spec), { "socket-path": "/a" });
  assert.equal(parseCommandLine(["--", "--version"], spec), "version");
});

Deno.test("cli: logLevelOption takes any level in any case, nothing when absent, and refuses the rest", () => {
  assert.equal(logLevelOption({ "log-level": "DEBUG" }), "debug");
  assert.equal(logLevelOption({}), undefined);
  assert.throws(
    () => logLevelOption({ "log-level": "loud" }),
    (error: unknown) =>
      error instanceof UsageError && error.message === "invalid value 'loud' for --log-level",
  );
});

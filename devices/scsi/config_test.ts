import assert from "node:assert/strict";
import { parseCommandLine, renderHelp, UsageError } from "../../core/cli.ts";
import { SCSI_COALESCE_MICROS, SCSI_COMMAND, SCSI_POLL_MICROS, scsiConfig } from "./config.ts";

function parse(args: string[]) {
  const parsed = parseCommandLine(args, SCSI_COMMAND);
  assert.ok(typeof parsed === "object");
  return scsiConfig(parsed);
}

Deno.test("scsi config: upstream's flags and positional images", () => {
  const config = parse(["-r", "--solid-state", "-s", "/tmp/s.sock", "a.img", "b.img"]);
  assert.deepEqual(config.address, { path: "/tmp/s.sock" });
  assert.deepEqual(config.images, ["a.img", "b.img"]);
  assert.equal(config.readOnly, true);
  assert.equal(config.solidState, true);
  assert.equal(config.blockSize, 512);
  assert.equal(config.io, "auto");
  assert.equal(config.pollMicros, SCSI_POLL_MICROS);
  assert.equal(config.requestQueues, 16);
  const other = parse([
    "--socket-fd",
    "3",
    "--block-size",
    "4096",
    "--io",
    "sync",
    "--num-queues",
    "4",
    "x",
  ]);
  assert.deepEqual(other.address, { fd: 3 });
  assert.equal(other.blockSize, 4096);
  assert.equal(other.io, "sync");
  assert.equal(other.requestQueues, 4);
  assert.equal(parse(["--poll-us", "0", "-s", "/tmp/s", "x"]).pollMicros, 0);
  assert.equal(config.coalesceMicros, SCSI_COALESCE_MICROS);
  assert.equal(parse(["--coalesce-us", "50", "-s", "/tmp/s", "x"]).coalesceMicros, 50);
  assert.equal(parseCommandLine(["--print-capabilities"], SCSI_COMMAND), "capabilities");
  assert.match(renderHelp(SCSI_COMMAND), /\[IMAGES\]\.\.\./);
});

Deno.test("scsi config: one-line usage errors", () => {
  const cases: [string[], RegExp][] = [
    [["-s", "/tmp/s"], /no image given/],
    [["a.img"], /--socket-path/],
    [["-s", "/tmp/s", "--block-size", "1024", "a"], /--block-size: must be 512 or 4096/],
    [["-s", "/tmp/s", "--num-queues", "0", "a"], /--num-queues/],
    [["-s", "/tmp/s", "--io", "aio", "a"], /--io/],
    [["-s", "/tmp/s", "--coalesce-us", "1001", "a"], /--coalesce-us: must be 0\.\.=1000/],
    [["-s", "/tmp/s", "--coalesce-us", "-1", "a"], /--coalesce-us/],
    [["-s", "/tmp/s", "--log-level", "loud", "a"], /--log-level/],
    [["-s", "/tmp/s", ...new Array(257).fill("a")], /at most 256/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parse(args),
      (e: Error) => e instanceof UsageError && message.test(e.message),
      args.join(" "),
    );
  }
});

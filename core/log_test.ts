import assert from "node:assert/strict";
import { isLevel, levelFor, Logger } from "./log.ts";

Deno.test("RUST_LOG filters choose the most specific matching directive", () => {
  const t = { target: "vhost_device_rng", fallback: "error" } as const;
  assert.equal(levelFor("", t), "error");
  assert.equal(levelFor("debug", t), "debug");
  assert.equal(levelFor("INFO", t), "info");
  assert.equal(levelFor("vhost_device_rng=trace,warn", t), "trace");
  assert.equal(levelFor("other=trace,warn", t), "warn");
  assert.equal(levelFor("vhost_device=debug,vhost_device_rng=off", t), "off");
  assert.equal(levelFor("garbage,=,x=y", t), "error");
  assert.equal(
    levelFor("vhost_device_rng=debug", { ...t, target: "vhost_device_rng::queue" }),
    "debug",
  );
});

Deno.test("loggers print at or above their level, in env_logger's shape", () => {
  const lines: string[] = [];
  const log = new Logger("vhost_device_echo", { level: "info", sink: (l) => lines.push(l) });
  log.debug("hidden");
  log.info("shown");
  log.child("queue0").error("bad chain");
  assert.equal(lines.length, 2);
  assert.match(lines[0], /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO {2}vhost_device_echo\] shown$/);
  assert.match(lines[1], /ERROR vhost_device_echo::queue0\] bad chain$/);
  assert.ok(log.enabled("info") && !log.enabled("debug"));
});

Deno.test("level names are recognised case-insensitively", () => {
  assert.ok(isLevel("Trace"));
  assert.ok(!isLevel("verbose"));
});

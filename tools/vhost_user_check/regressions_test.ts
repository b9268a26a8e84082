// Reproducers vhost-user-check found in our daemons (deno task fuzz), replayed
// against the daemon that failed on them: each must now be survived.
import assert from "node:assert/strict";
import type { Op } from "./generate.ts";
import { readReproducer, replay } from "./fuzz.ts";
import { DEVICE_PROFILES } from "./device_profiles.ts";
import { Target } from "./target.ts";
import { DAEMON_COMMANDS } from "../../scripts/fuzz_daemons.ts";

const VSOCK = DAEMON_COMMANDS.vsock;

/** Runs each op list once, in order, against one fresh daemon; the first failure, or null. */
async function survives(exec: string, device: string, runs: Op[][]): Promise<string | null> {
  const target = await Target.open({ exec });
  try {
    for (const [i, ops] of runs.entries()) {
      const result = await replay(target, {
        format: "vhost-user-check reproducer 1",
        seed: 0,
        burst: 0,
        failure: "crash",
        detail: "",
        ops,
      }, { timeoutMs: 5000, device: DEVICE_PROFILES[device] ?? null });
      if (result) return `run ${i}: ${result.failure}: ${result.detail}`;
    }
    return null;
  } finally {
    await target.close();
  }
}

const REGION_1M =
  "01000000000000000000000000000000000010000000000000000034127f00000000000000000000";
const REGION_1B =
  "01000000000000000000000000000000010000000000000000000034127f00000000000000000000";

Deno.test("regression: a refused SET_MEM_TABLE leaves no ring on unmapped memory (vsock SIGSEGV, seed 1)", async () => {
  // Two live rings; a new table too small for ring 0 used to stop ring 0 and
  // leave ring 1 on the old, now unmapped, table; enabling it then faulted.
  const ops: Op[] = [
    { op: "msg", hex: `050000000100000028000000${REGION_1M}`, fds: ["ram"] },
    { op: "msg", hex: "0800000001000000080000000000000000010000" },
    {
      op: "msg",
      hex:
        "090000000100000028000000000000000000000000100034127f000000300034127f000000200034127f00000000000000000000",
    },
    { op: "msg", hex: "0c0000000100000008000000" + "0000000000000000", fds: ["kick"], q: 0 },
    { op: "msg", hex: "0800000001000000080000000100000040000000" },
    {
      op: "msg",
      hex:
        "090000000100000028000000010000000000000000100134127f000000300134127f000000200134127f00000000000000000000",
    },
    { op: "msg", hex: "0c0000000100000008000000" + "0100000000000000", fds: ["kick"], q: 1 },
    { op: "msg", hex: `050000000100000028000000${REGION_1B}`, fds: ["ram"] },
    { op: "msg", hex: "120000000100000008000000" + "01000000ff000000" },
  ];
  assert.equal(await survives(VSOCK, "vsock", [ops]), null);
});

Deno.test("regression: the messages that crash qemu-storage-daemon are refused by every daemon", async () => {
  const dir = new URL("./reproducers/", import.meta.url).pathname;
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assert.ok(files.length >= 3);
  for (const [device, exec] of Object.entries(DAEMON_COMMANDS)) {
    const runs = files.map((name) => [...readReproducer(`${dir}${name}`).ops]);
    assert.equal(await survives(exec, device, runs), null, `${device}: ${files.join(", ")}`);
  }
});

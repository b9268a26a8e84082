import assert from "node:assert/strict";
import { runCommand } from "./control.ts";
import { SimulatedChip } from "./sim_chip.ts";

Deno.test("control commands: set, get, lines, and one-line errors", () => {
  const chip = new SimulatedChip(4, { label: "sim" });
  const chips = new Map([[2, chip]]);
  chip.setDirection(1, 2, { value: 0 });
  chip.setEdgeDetection(1, "both");
  assert.equal(runCommand("set 2 1 1", chips), "ok");
  assert.equal(runCommand("  get 2 1 ", chips), "1 in both");
  assert.equal(runCommand("get 2 0", chips), "0 none none");
  assert.equal(runCommand("lines 2", chips), "4");
  assert.equal(runCommand("set 0 1 1", chips), "error no simulated chip 0");
  assert.equal(runCommand("set 2 4 1", chips), "error line 4 is past the chip's 4");
  assert.equal(runCommand("set 2 1 2", chips), "error the level is 0 or 1");
  assert.equal(runCommand("set 2 x 1", chips), "error line is not a number");
  assert.equal(runCommand("set 2 1", chips), "error usage: set <chip> <line> <0|1>");
  assert.match(runCommand("reboot", chips), /^error unknown command 'reboot'/);
});

import assert from "node:assert/strict";
import type { EdgeEvent } from "./chip.ts";
import { SimulatedChip } from "./sim_chip.ts";

Deno.test("SimulatedChip: inputs follow the outside level and report the edges asked for", () => {
  const chip = new SimulatedChip(4, { label: "sim" });
  const events: EdgeEvent[] = [];
  chip.setEdgeListener((event) => events.push(event));
  assert.deepEqual(chip.lineNames(), ["line0", "line1", "line2", "line3"]);
  chip.setDirection(0, 2, { value: 0 });
  chip.drive(0, 1);
  assert.equal(chip.value(0), 1);
  assert.deepEqual(events, [], "no edge detection yet");
  chip.setEdgeDetection(0, "falling");
  chip.drive(0, 1); // no change
  chip.drive(0, 0);
  chip.drive(0, 1);
  assert.deepEqual(events, [{ line: 0, rising: false }]);
  chip.setEdgeDetection(0, "both");
  chip.drive(0, 0);
  assert.deepEqual(events.at(-1), { line: 0, rising: false });
  assert.equal(events.length, 2);
});

Deno.test("SimulatedChip: outputs keep their driven value; release returns lines to NONE", () => {
  const chip = new SimulatedChip(2, { label: "sim" });
  const changed: number[] = [];
  chip.onChange = (line) => changed.push(line);
  chip.setDirection(1, 1, { value: 1 });
  assert.equal(chip.value(1), 1);
  chip.drive(1, 0);
  assert.equal(chip.value(1), 1, "the outside cannot override an output");
  chip.setValue(1, 0);
  assert.deepEqual(chip.state(1), {
    name: "line1",
    direction: 1,
    value: 0,
    outside: 0,
    edges: "none",
  });
  assert.deepEqual(changed, [1, 1]);
  assert.throws(() => chip.setValue(0, 1), /not an output/);
  assert.throws(() => chip.setEdgeDetection(1, "both"), /output/);
  assert.throws(() => chip.value(2), /no line 2/);
  chip.releaseAll();
  assert.equal(chip.direction(1), 0);
  assert.throws(() => new SimulatedChip(0, { label: "x" }), RangeError);
  chip.close();
});

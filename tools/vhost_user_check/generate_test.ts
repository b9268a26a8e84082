import assert from "node:assert/strict";
import { FrontendRequest as R, HEADER_SIZE } from "../../core/protocol/constants.ts";
import { BurstGenerator, bytesOf, RAM_SIZE } from "./generate.ts";

Deno.test("generate: a burst is reproducible from its seed and index", () => {
  const a = new BurstGenerator(42, 5).burst(300);
  assert.deepEqual(new BurstGenerator(42, 5).burst(300), a);
  assert.notDeepEqual(new BurstGenerator(42, 6).burst(300), a);
});

Deno.test("generate: every message is framed (header size = payload), ring writes stay in RAM", () => {
  const requests = new Set<number>();
  let kicks = 0;
  for (let burst = 0; burst < 20; burst++) {
    const ops = new BurstGenerator(1, burst).burst(256);
    assert.equal(ops.filter((o) => o.op === "msg").length, 256);
    for (const op of ops) {
      if (op.op === "msg") {
        const bytes = bytesOf(op.hex);
        const view = new DataView(bytes.buffer);
        assert.equal(view.getUint32(8, true), bytes.length - HEADER_SIZE);
        assert.ok((op.fds ?? []).length <= 32);
        requests.add(view.getUint32(0, true));
      } else if (op.op === "mem") {
        assert.ok(op.at >= 0 && op.at + op.hex.length / 2 <= RAM_SIZE, `write at ${op.at}`);
      } else kicks++;
    }
  }
  for (
    const r of [R.SET_MEM_TABLE, R.ADD_MEM_REG, R.SET_VRING_ADDR, R.SET_VRING_KICK, R.GET_CONFIG]
  ) {
    assert.ok(requests.has(r), `request ${r} generated`);
  }
  assert.ok(kicks > 100);
});

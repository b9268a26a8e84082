import assert from "node:assert/strict";
import { type Footprint, footprint, medians } from "./bench_memory.ts";

Deno.test("footprint reads RSS, PSS and USS of a live process", () => {
  const f = footprint(Deno.pid);
  assert.ok(f.rss > 0 && f.pss > 0 && f.uss > 0, JSON.stringify(f));
  assert.ok(f.uss <= f.pss && f.pss <= f.rss, JSON.stringify(f));
});

Deno.test("medians takes each figure's median over runs, row by row", () => {
  const row = (uss: number): Footprint => ({ rss: uss * 3, pss: uss * 2, uss });
  const runs = [[["a", row(10)], ["b", row(5)]], [["a", row(30)], ["b", row(7)]], [
    ["a", row(20)],
    ["b", row(6)],
  ]] as [string, Footprint][][];
  assert.deepEqual(medians(runs), [["a", row(20)], ["b", row(6)]]);
  assert.deepEqual(medians(runs.slice(0, 2)), [["a", row(20)], ["b", row(6)]]);
});

// Importing any `node:` module loads Deno's Node compatibility layer: about
// 3 MB of private memory per daemon (node:util's parseArgs did, until
// core/args.ts). The YAML parser, an npm package, is loaded only for --config.
Deno.test("no daemon's static module graph loads a node: module", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const mains = [...Deno.readDirSync(`${root}devices`)]
    .map((entry) => `${root}devices/${entry.name}/main.ts`)
    .filter((path) => {
      try {
        return Deno.statSync(path).isFile;
      } catch {
        return false;
      }
    });
  assert.ok(mains.length >= 2);
  for (const main of mains) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", main],
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.ok(output.success, `deno info ${main}`);
    const graph = JSON.parse(new TextDecoder().decode(output.stdout));
    const nodes = (graph.modules as { specifier: string }[])
      .map((m) => m.specifier)
      .filter((s) => s.startsWith("node:"));
    assert.deepEqual(nodes, [], main);
  }
});

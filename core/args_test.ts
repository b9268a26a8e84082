import assert from "node:assert/strict";
// The reference: our tokenizer must behave as Node's, which the daemons used before.
import { parseArgs } from "node:util";
import { type ArgOption, ArgvError, parseArgv } from "./args.ts";

const OPTIONS: Record<string, ArgOption> = {
  "socket-path": { type: "string", short: "s" },
  help: { type: "boolean", short: "h" },
  flag: { type: "boolean", short: "f" },
  vm: { type: "string", multiple: true },
  tag: { type: "boolean", multiple: true, short: "t" },
};

const CASES: string[][] = [
  [],
  ["--nope"],
  ["-x"],
  ["-s"],
  ["--socket-path"],
  ["--help=3"],
  ["-h=3"],
  ["-s", "-x"],
  ["-s", "-"],
  ["--socket-path", "--help"],
  ["--socket-path=--help"],
  ["-s--help"],
  ["extra"],
  ["-hx"],
  ["-fs"],
  ["-fs", "v"],
  ["-fsval"],
  ["-sval"],
  ["-s=x"],
  ["-fh=2"],
  ["--", "x"],
  ["--", "--help"],
  ["-"],
  ["-s", "a", "-s", "b"],
  ["--vm", "a", "--vm=b", "--vm", "c"],
  ["--socket-path="],
  ["-hf"],
  ["-tt", "-t"],
  ["--Help"],
  ["--flag", "x"],
  ["x", "--flag", "y"],
  ["---x"],
  ["--=x"],
  ["--nope", "value"],
  ["-s", "path", "positional", "--vm", "v"],
];

function outcome(run: () => { values: object; positionals: string[] }): unknown {
  try {
    const { values, positionals } = run();
    return { values: { ...values }, positionals };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

Deno.test("parseArgv: same values, positionals and error messages as node:util parseArgs", () => {
  for (const allowPositionals of [false, true]) {
    for (const args of CASES) {
      const ours = outcome(() => parseArgv(args, { options: OPTIONS, allowPositionals }));
      const node = outcome(() =>
        parseArgs({ args, options: OPTIONS, strict: true, allowPositionals })
      );
      assert.deepEqual(ours, node, `${JSON.stringify(args)} allowPositionals=${allowPositionals}`);
    }
  }
});

Deno.test("parseArgv: errors are ArgvError with one-line first lines", () => {
  assert.throws(() => parseArgv(["--nope"], { options: OPTIONS }), ArgvError);
  assert.throws(
    () => parseArgv(["-s"], { options: OPTIONS }),
    /^ArgvError: Option '-s, --socket-path <value>' argument missing$/,
  );
  assert.throws(
    () => parseArgv(["a"], { options: OPTIONS }),
    /Unexpected argument 'a'. This command does not take positional arguments/,
  );
});

Deno.test("parseArgv: does not modify its input, and values have a prototype", () => {
  const args = ["-fs", "v", "--vm", "a"];
  const parsed = parseArgv(args, { options: OPTIONS });
  assert.deepEqual(args, ["-fs", "v", "--vm", "a"]);
  assert.deepEqual(parsed.values, { flag: true, "socket-path": "v", vm: ["a"] });
  assert.equal(Object.getPrototypeOf(parsed.values), Object.prototype);
});

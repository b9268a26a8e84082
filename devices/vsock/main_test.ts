// The command line as a user meets it: exit status and one-line errors.
import assert from "node:assert/strict";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stderr: decode(out.stderr), stdout: decode(out.stdout) };
}

Deno.test("vsock CLI: mistakes exit 2 with one line on stderr", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(
      `${dir}/dup.yaml`,
      [
        "vms:",
        `  - guest_cid: 4`,
        `    socket: ${dir}/a.sock`,
        `    uds_path: ${dir}/a.vsock`,
        `  - guest-cid: 4`,
        `    socket: ${dir}/b.sock`,
        `    uds-path: ${dir}/b.vsock`,
      ].join("\n"),
    );
    const cases: [string[], RegExp][] = [
      [[], /no VM given/],
      [["--socket", `${dir}/s`], /one of uds-path or forward-cid/],
      [["--socket", `${dir}/s`, "--uds-path", "u", "--guest-cid", "2"], /guest_cid '2'/],
      [["--socket", `${dir}/s`, "--uds-path", "u", "--queue-size", "1000"], /power of 2/],
      [["--socket", "s", "--uds-path", "u", "--forward-cid", "1"], /cannot be used with/],
      [["--vm", "socket=s,uds-path=u,colour=red"], /unknown key 'colour'/],
      [["--vm", "socket=s,uds-path=u", "--guest-cid", "5"], /--vm cannot be used with/],
      [["--config", `${dir}/dup.yaml`], /guest CID 4 is used by more than one VM/],
      [["--config", `${dir}/absent.yaml`], /cannot read/],
      [["--bogus"], /bogus/],
    ];
    for (const [args, pattern] of cases) {
      const { code, stderr } = await run(args);
      assert.equal(code, 2, `${args.join(" ")}: exit status`);
      assert.equal(stderr.trim().split("\n").length, 1, `${args.join(" ")}: one line: ${stderr}`);
      assert.match(stderr, pattern);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("vsock CLI: --help lists every option", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of ["--guest-cid", "--socket", "--uds-path", "--forward-cid", "--vm", "--config"]
  ) {
    assert.ok(stdout.includes(flag), flag);
  }
});

import assert from "node:assert/strict";
import { deviceNames, writeManPages } from "./man.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("every device gets a man page from its command definitions", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const pages = await writeManPages(ROOT, { outDir: dir, date: "2026-01-01" });
    assert.deepEqual(
      pages.map((p) => p.slice(dir.length + 1)),
      [...deviceNames(ROOT).map((n) => `vhost-device-${n}.1`), "vhost-user-check.1"],
    );
    const check = Deno.readTextFileSync(`${dir}/vhost-user-check.1`);
    assert.match(check, /\\fB\\-\\-replay\\fR \\fIFILE\\fR/);
    assert.match(check, /\.SH EXIT STATUS\n0 when every check passed/);
    assert.match(check, /\.SH DESCRIPTION\nConnects to a vhost\\-user back\\-end/);
    assert.doesNotMatch(check, /RUST_LOG/);
    const rng = Deno.readTextFileSync(`${dir}/vhost-device-rng.1`);
    assert.match(rng, /^\.TH VHOST-DEVICE-RNG 1 "2026-01-01"/);
    assert.match(rng, /\\fB\\-s\\fR \\fISOCKET\\fR, \\fB\\-\\-socket\\-path\\fR \\fISOCKET\\fR/);
    assert.match(rng, /\[default: \/dev\/urandom\]/);
    // groff renders it without complaint, where it is installed.
    const groff = await new Deno.Command("groff", {
      args: ["-man", "-Tutf8", "-ww", "-z", `${dir}/vhost-device-rng.1`],
      stderr: "piped",
    })
      .output().catch(() => null);
    if (groff) assert.equal(new TextDecoder().decode(groff.stderr), "");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { close, isOpen } from "../../ffi/mod.ts";
import { imageIdentity } from "./disk_parameters.ts";
import { ImageError, openImage } from "./image.ts";

const OPTIONS = { blockSize: 512, readOnly: false, solidState: false };

Deno.test("image: opens a whole number of blocks, with a stable identity", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.truncate(path, 8192);
    const image = openImage(path, OPTIONS);
    assert.equal(image.disk.blocks, 16);
    assert.deepEqual(image.disk.naa, imageIdentity(Deno.realPathSync(path)).naa);
    assert.equal(image.disk.naa[0] >> 4, 3, "NAA 3");
    assert.match(image.disk.serial, /^[0-9a-f]{16}$/);
    close(image.fd);
    const big = openImage(path, { ...OPTIONS, blockSize: 4096 });
    assert.equal(big.disk.blocks, 2);
    close(big.fd);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("image: read-only images are opened O_RDONLY", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.truncate(path, 4096);
    await Deno.chmod(path, 0o444);
    // Root may open anything read-write; the flag, not the mode, must make it read-only.
    const image = openImage(path, { ...OPTIONS, readOnly: true });
    const flags = Deno.readTextFileSync(`/proc/self/fdinfo/${image.fd}`);
    assert.equal(Number.parseInt(/flags:\s+(\d+)/.exec(flags)![1], 8) & 3, 0, "O_RDONLY");
    close(image.fd);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("image: missing, not a file, empty or ragged images are one-line errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ragged = `${dir}/ragged.img`;
    await Deno.writeFile(ragged, new Uint8Array(1000));
    const empty = `${dir}/empty.img`;
    await Deno.writeFile(empty, new Uint8Array(0));
    const cases: [string, RegExp][] = [
      [`${dir}/missing.img`, /missing\.img: no such file/],
      [dir, /not a regular file/],
      [empty, /0 bytes is not a whole, non-zero number of 512-byte blocks/],
      [ragged, /1000 bytes is not a whole/],
    ];
    for (const [path, message] of cases) {
      assert.throws(
        () => openImage(path, OPTIONS),
        (e: Error) =>
          e instanceof ImageError && message.test(e.message) && !e.message.includes("\n"),
      );
    }
    assert.ok(!isOpen(1000), "nothing leaked");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

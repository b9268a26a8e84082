/**
 * `deno task man`: writes `dist/man/vhost-device-<name>.1` for every device,
 * from the `COMMAND` each `devices/<name>/main.ts` exports — the same
 * definitions its parser and `--help` use — and `vhost-user-check.1`.
 *
 * @module
 */

import { type CommandSpec, renderManPage } from "../core/cli.ts";

/** The devices: every folder of `devices/` with a `main.ts`. */
export function deviceNames(root: string): string[] {
  return [...Deno.readDirSync(`${root}/devices`)]
    .filter((entry) => entry.isDirectory)
    .map((entry) => entry.name)
    .filter((name) => {
      try {
        return Deno.statSync(`${root}/devices/${name}/main.ts`).isFile;
      } catch {
        return false;
      }
    })
    .sort();
}

/** Tools with a man page: entry modules exporting `COMMAND`, relative to the root. */
export const TOOL_ENTRIES: readonly string[] = ["tools/vhost_user_check/main.ts"];

/** Renders each device's and tool's page into `outDir`; returns the paths written. */
export async function writeManPages(
  root: string,
  options: { outDir: string; date: string },
): Promise<string[]> {
  Deno.mkdirSync(options.outDir, { recursive: true });
  const written: string[] = [];
  const entries = [
    ...deviceNames(root).map((name) => `devices/${name}/main.ts`),
    ...TOOL_ENTRIES,
  ];
  for (const entry of entries) {
    const module: { COMMAND: CommandSpec } = await import(`${root}/${entry}`);
    const path = `${options.outDir}/${module.COMMAND.name}.1`;
    Deno.writeTextFileSync(path, renderManPage(module.COMMAND, { date: options.date }));
    written.push(path);
  }
  return written;
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const date = new Date().toISOString().slice(0, 10);
  for (const path of await writeManPages(root, { outDir: `${root}/dist/man`, date })) {
    console.log(path);
  }
}

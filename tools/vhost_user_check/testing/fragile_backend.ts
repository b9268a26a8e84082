/**
 * A deliberately fragile vhost-user back-end for the checker's own tests:
 * it answers GET_FEATURES (no features, so no REPLY_ACK) and GET_VRING_BASE,
 * ignores everything else, and dies as a C back-end would on an assertion
 * (exit 134) when SET_VRING_NUM asks for a queue of size 0.
 *
 * ```sh
 * deno run -A tools/vhost_user_check/testing/fragile_backend.ts /tmp/fragile.sock
 * ```
 *
 * @module
 */

import { FrontendRequest as R, HEADER_SIZE } from "../../../core/protocol/constants.ts";
import { encodeReply, encodeU64, encodeVringState } from "../../../core/protocol/message.ts";

/** Exit status of the simulated abort. */
export const FRAGILE_EXIT_CODE = 134;

async function readExactly(conn: Deno.UnixConn, into: Uint8Array): Promise<boolean> {
  let got = 0;
  while (got < into.length) {
    const n = await conn.read(into.subarray(got));
    if (n === null) return false;
    got += n;
  }
  return true;
}

async function serve(conn: Deno.UnixConn): Promise<void> {
  const header = new Uint8Array(HEADER_SIZE);
  const view = new DataView(header.buffer);
  while (await readExactly(conn, header)) {
    const request = view.getUint32(0, true);
    const size = view.getUint32(8, true);
    if (size > 0x1000) return;
    const payload = new Uint8Array(size);
    if (!(await readExactly(conn, payload))) return;
    const p = new DataView(payload.buffer);
    if (request === R.GET_FEATURES) {
      await conn.write(encodeReply(request, encodeU64(0n)));
    } else if (request === R.GET_VRING_BASE && size >= 4) {
      await conn.write(encodeReply(request, encodeVringState(p.getUint32(0, true), 0)));
    } else if (request === R.SET_VRING_NUM && size >= 8 && p.getUint32(4, true) === 0) {
      console.error("fragile: assertion failed: vring size 0");
      Deno.exit(FRAGILE_EXIT_CODE);
    }
  }
}

if (import.meta.main) {
  const listener = Deno.listen({ transport: "unix", path: Deno.args[0] });
  for await (const conn of listener) {
    await serve(conn).catch(() => {});
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

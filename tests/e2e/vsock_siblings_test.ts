// Sibling VMs with real guests: one vhost-device-vsock serves three QEMU
// guests; A and B share a group and talk by CID (streams, and SOCK_SEQPACKET
// messages of 1 B to 64 KiB both ways), C is in another group and is turned
// away; A is killed mid-transfer and B and the daemon carry on.
// Run: deno test --allow-all tests/e2e/vsock_siblings_test.ts (root: QEMU, guest kit)
import assert from "node:assert/strict";
import { consoleTail, type Guest, type GuestResult, startGuest } from "./guest.ts";
import { DaemonProcess } from "../integration/daemon_process.ts";
import { buildSeqpeer, SEQ_SIZES, SEQPEER_PATH } from "./vsock_seqpeer.ts";

const MAIN = new URL("../../devices/vsock/main.ts", import.meta.url).pathname;

/** The guest side of one VM: vsock transport with SEQPACKET, socat, the SEQPACKET peer. */
function vsockGuest(
  socket: string,
  script: string,
  files: Record<string, Uint8Array>,
): Promise<Guest> {
  return startGuest({
    modules: ["vmw_vsock_virtio_transport"],
    tools: ["socat", "sha256sum"],
    files,
    timeoutMs: 400_000,
    qemuArgs: [
      "-chardev",
      `socket,id=c0,path=${socket}`,
      "-device",
      "vhost-user-vsock-pci,chardev=c0,seqpacket=on",
    ],
    script: `set -u\nchmod +x ${SEQPEER_PATH}\n${script}`,
  });
}

// Retries a connect until the peer listens (its guest may still be booting).
const RETRY = `
retry() {
  n=0
  until "$@"; do
    n=$((n + 1))
    [ $n -ge 120 ] && return 1
    sleep 0.5
  done
}
`;

Deno.test("e2e vsock: sibling guests talk by CID; a guest outside the group is refused; a killed guest leaves the rest working", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "vsock-sib-" });
  const vm = (cid: number, groups: string) =>
    `guest-cid=${cid},socket=${dir}/vhost${cid}.sock,uds-path=${dir}/vm${cid}.vsock,groups=${groups},seqpacket=on`;
  const daemon = await DaemonProcess.start(MAIN, {
    args: ["--vm", vm(3, "a"), "--vm", vm(4, "a"), "--vm", vm(5, "b")],
    waitFor: [3, 4, 5].map((cid) => `${dir}/vhost${cid}.sock`),
    env: { RUST_LOG: "info" },
    tempDir: dir,
  });
  const guests: Guest[] = [];
  try {
    const files = { [SEQPEER_PATH]: await buildSeqpeer(dir) };
    // B (CID 4): receives a file from A, serves one back, takes a stream that
    // A's death cuts, then echoes for the host over its hybrid socket.
    const b = await vsockGuest(
      `${dir}/vhost4.sock`,
      `
      ${SEQPEER_PATH} answer 6100 || echo "@@RESULT seq_answer_rc $?" &
      dd if=/dev/urandom of=/tmp/out bs=1M count=8 2>/dev/null
      echo "@@RESULT b_out $(sha256sum /tmp/out | cut -d' ' -f1)"
      socat -u FILE:/tmp/out VSOCK-LISTEN:5001 &
      serve=$!
      socat -u VSOCK-LISTEN:5000 CREATE:/tmp/in
      echo "@@RESULT b_in $(sha256sum /tmp/in | cut -d' ' -f1)"
      wait $serve
      socat -u VSOCK-LISTEN:5002 - | { head -c 1048576 >/dev/null; echo "@@STREAMING"; cat >/dev/null; }
      echo "@@RESULT stream_ended 1"
      socat VSOCK-LISTEN:6000 EXEC:cat &
      sleep 1
      echo "@@ECHO_READY"
      wait
      `,
      files,
    );
    guests.push(b);
    // A (CID 3): sends to B, fetches from B, then streams until it is killed.
    const a = await vsockGuest(
      `${dir}/vhost3.sock`,
      `${RETRY}
      dd if=/dev/urandom of=/tmp/out bs=1M count=8 2>/dev/null
      echo "@@RESULT a_out $(sha256sum /tmp/out | cut -d' ' -f1)"
      retry socat -u FILE:/tmp/out VSOCK-CONNECT:4:5000 || echo "@@RESULT a_send_failed 1"
      retry socat -u VSOCK-CONNECT:4:5001 CREATE:/tmp/in || echo "@@RESULT a_fetch_failed 1"
      echo "@@RESULT a_in $(sha256sum /tmp/in | cut -d' ' -f1)"
      ${SEQPEER_PATH} send 4 6100 || echo "@@RESULT seq_send_rc $?"
      retry socat -u /dev/zero VSOCK-CONNECT:4:5002
      sleep 600
      `,
      files,
    );
    guests.push(a);
    // C (CID 5, group b): may not reach B.
    const c = await vsockGuest(
      `${dir}/vhost5.sock`,
      `
      t0=$(cut -d' ' -f1 /proc/uptime)
      echo x | socat -u - VSOCK-CONNECT:4:5000
      echo "@@RESULT c_rc $?"
      echo "@@RESULT c_s $(awk -v t0="$t0" '{ print $1 - t0 }' /proc/uptime)"
      `,
      files,
    );
    guests.push(c);

    await b.waitFor("@@STREAMING", { timeoutMs: 300_000 });
    a.kill("SIGKILL");
    const aResult = await a.result;
    await b.waitFor("@@ECHO_READY", { timeoutMs: 60_000 });
    // B still answers the host through its own hybrid socket.
    const conn = await Deno.connect({ transport: "unix", path: `${dir}/vm4.vsock` });
    await conn.write(new TextEncoder().encode("CONNECT 6000\n"));
    const reply = new Uint8Array(64);
    let got = "";
    while (!got.endsWith("ping\n")) {
      const n = await conn.read(reply);
      if (n === null) break;
      got += new TextDecoder().decode(reply.subarray(0, n));
      if (got === "OK 6000\n") await conn.write(new TextEncoder().encode("ping\n"));
    }
    conn.close();
    assert.equal(got, "OK 6000\nping\n", "B echoes for the host after A died");

    const [bResult, cResult] = await Promise.all([b.result, c.result]);
    const fail = (message: string, result: GuestResult) =>
      new Error(`${message}\nlast console lines:\n${consoleTail(result.console)}`);
    const ra = aResult.results;
    const rb = bResult.results;
    if (ra.a_out !== rb.b_in) throw fail(`A→B sha ${ra.a_out} != ${rb.b_in}`, bResult);
    if (rb.b_out !== ra.a_in) throw fail(`B→A sha ${rb.b_out} != ${ra.a_in}`, aResult);
    assert.equal(rb.stream_ended, "1", "B's stream from A ended when A died");
    // SOCK_SEQPACKET between the siblings: every message whole, both ways (A's 64 KiB
    // packets reach B's 4 KiB rx buffers in pieces, EOM on the last).
    if (ra.seq_error || rb.seq_error) {
      throw fail(`vsock_seqpeer failed: A ${ra.seq_error}, B ${rb.seq_error}`, bResult);
    }
    const all = String(SEQ_SIZES.length);
    if (rb.seq_answer_good !== all) throw fail(`A→B messages: ${rb.seq_answer_good}`, bResult);
    if (ra.seq_in_good !== all) throw fail(`B→A messages: ${ra.seq_in_good}`, aResult);
    if (cResult.results.c_rc === "0") throw fail("C reached B across groups", cResult);
    assert.match(daemon.log, /no shared group/);
    console.log(
      `C refused with socat status ${cResult.results.c_rc} after ${cResult.results.c_s}s`,
    );
  } finally {
    for (const guest of guests) await guest[Symbol.asyncDispose]();
    await daemon.stop();
    if (Deno.env.get("VSOCK_E2E_LOG")) console.log(daemon.log);
  }
});

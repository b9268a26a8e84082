import assert from "node:assert/strict";
import { UsageError } from "../../core/cli.ts";
import { parseConnectLine } from "./uds_backend.ts";
import { parseVmOption, parseYamlConfig, vmConfigsFrom } from "./config.ts";

Deno.test("config: --vm takes snake_case and kebab-case keys, + lists, defaults", () => {
  const vm = parseVmOption("guest-cid=4,socket=/s,uds_path=/u,groups=a+b");
  assert.deepEqual(vm, {
    guestCid: 4,
    socket: "/s",
    backend: { kind: "unix", udsPath: "/u" },
    txBufferSize: 262144,
    queueSize: 1024,
    groups: ["a", "b"],
    seqpacket: false,
  });
  const fwd = parseVmOption("socket=/s,forward-cid=1,forward-listen=9000+9001");
  assert.deepEqual(fwd.backend, {
    kind: "vsock",
    forwardCid: 1,
    forwardListen: [9000, 9001],
    forwardListenSeqpacket: [],
  });
  assert.throws(() => parseVmOption("socket=/s"), UsageError);
  assert.throws(() => parseVmOption("socket=/s,uds-path=/u,forward-cid=1"), UsageError);
  assert.throws(() => parseVmOption("socket=/s,uds-path=/u,guest-cid=1"), UsageError);
  assert.throws(() => parseVmOption("socket=/s,uds-path=/u,group=x"), /unknown key 'group'/);
});

Deno.test("config: YAML as rust-vmm's README writes it (kebab-case) and as its parser wants", () => {
  const vms = parseYamlConfig(`
vms:
  - guest_cid: 4
    socket: /tmp/vhost4.socket
    uds_path: /tmp/vm4.vsock
    tx_buffer_size: 65536
    queue_size: 1024
    groups: group1+group2
  - guest-cid: 5
    socket: /tmp/vhost5.socket
    forward-cid: 1
    forward-listen: 9001+9002
    groups: [group1]
`);
  assert.equal(vms.length, 2);
  assert.deepEqual(vms[0].groups, ["group1", "group2"]);
  assert.deepEqual(vms[1].backend, {
    kind: "vsock",
    forwardCid: 1,
    forwardListen: [9001, 9002],
    forwardListenSeqpacket: [],
  });
  assert.deepEqual(vms[1].groups, ["group1"]);
  assert.throws(() => parseYamlConfig("vms: []"), UsageError);
  assert.throws(() => parseYamlConfig("vm:\n  - socket: x"), /unknown top-level key/);
  assert.throws(() => parseYamlConfig("vms: [1"), /not valid YAML/);
});

Deno.test("config: precedence, conflicts and duplicates", () => {
  const single = vmConfigsFrom({ socket: "/s", "uds-path": "/u" });
  assert.equal(single[0].guestCid, 3);
  assert.throws(
    () => vmConfigsFrom({ vm: ["socket=/a,uds-path=/u1", "socket=/b,uds-path=/u2"] }),
    /guest CID 3 is used by more than one VM/,
  );
  assert.equal(
    vmConfigsFrom({ vm: ["socket=/a,uds-path=/u1", "guest-cid=4,socket=/b,uds-path=/u2"] })
      .length,
    2,
  );
  assert.throws(() => vmConfigsFrom({ vm: ["socket=/a,uds-path=/u"], socket: "/x" }), /--vm/);
  assert.throws(
    () => vmConfigsFrom({ config: "x.yaml", vm: ["socket=/a,uds-path=/u"] }),
    /--config cannot be used with --vm/,
  );
  const fromFile = vmConfigsFrom({ config: "x.yaml" }, {
    readFile: () => "vms:\n  - socket: /a\n    uds-path: /u\n",
  });
  assert.equal(fromFile[0].socket, "/a");
});

Deno.test("uds: CONNECT lines", () => {
  assert.equal(parseConnectLine("CONNECT 1234"), 1234);
  assert.equal(parseConnectLine("connect   7 \r"), 7);
  assert.equal(parseConnectLine("CONNECT"), null);
  assert.equal(parseConnectLine("CONNECT 99999999999"), null);
  assert.equal(parseConnectLine("CONNECT -1"), null);
  assert.equal(parseConnectLine("OPEN 1"), null);
});

Deno.test("config: seqpacket is off unless --seqpacket, seqpacket=on or a YAML boolean asks", () => {
  assert.equal(parseVmOption("socket=/s,uds-path=/u").seqpacket, false);
  assert.equal(parseVmOption("socket=/s,uds-path=/u,seqpacket=on").seqpacket, true);
  assert.equal(parseVmOption("socket=/s,forward-cid=1,seqpacket=true").seqpacket, true);
  assert.equal(parseVmOption("socket=/s,uds-path=/u,seqpacket=off").seqpacket, false);
  assert.throws(() => parseVmOption("socket=/s,uds-path=/u,seqpacket=maybe"), /seqpacket 'maybe'/);
  const yaml = parseYamlConfig("vms:\n  - socket: /s\n    uds-path: /u\n    seqpacket: true\n");
  assert.equal(yaml[0].seqpacket, true);
  const fwd = parseVmOption("socket=/s,forward-cid=1,seqpacket=on,forward-listen-seqpacket=7+8");
  assert.deepEqual(fwd.backend, {
    kind: "vsock",
    forwardCid: 1,
    forwardListen: [],
    forwardListenSeqpacket: [7, 8],
  });
  assert.throws(
    () => parseVmOption("socket=/s,forward-cid=1,forward-listen-seqpacket=7"),
    /forward-listen-seqpacket needs seqpacket/,
  );
  const flags = vmConfigsFrom({ socket: "/s", "uds-path": "/u", seqpacket: true });
  assert.equal(flags[0].seqpacket, true);
  assert.throws(
    () => vmConfigsFrom({ vm: ["socket=/s,uds-path=/u"], seqpacket: true }),
    /--vm cannot be used with --seqpacket/,
  );
});

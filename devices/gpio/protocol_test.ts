import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeConfig,
  encodeLineNames,
  parseIrqRequest,
  parseRequest,
  sanitizeLineNames,
  VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW,
  VIRTIO_GPIO_MSG_GET_LINE_NAMES,
  VIRTIO_GPIO_MSG_SET_DIRECTION,
  VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
  VIRTIO_GPIO_MSG_SET_VALUE,
} from "./protocol.ts";

function bytes(type: number, gpio: number, value: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, type, true);
  view.setUint16(2, gpio, true);
  view.setUint32(4, value, true);
  return out;
}

const opts = { ngpio: 4, irq: true };

Deno.test("parseRequest: decodes each type into typed values", () => {
  assert.deepEqual(parseRequest(bytes(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 9, 9), opts), {
    type: VIRTIO_GPIO_MSG_GET_LINE_NAMES,
  });
  assert.deepEqual(parseRequest(bytes(VIRTIO_GPIO_MSG_SET_DIRECTION, 3, 2), opts), {
    type: VIRTIO_GPIO_MSG_SET_DIRECTION,
    gpio: 3,
    direction: 2,
  });
  assert.deepEqual(parseRequest(bytes(VIRTIO_GPIO_MSG_SET_VALUE, 1, 1), opts), {
    type: VIRTIO_GPIO_MSG_SET_VALUE,
    gpio: 1,
    value: 1,
  });
  assert.deepEqual(
    parseRequest(bytes(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW), opts),
    { type: VIRTIO_GPIO_MSG_SET_IRQ_TYPE, gpio: 0, irqType: VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW },
  );
});

Deno.test("parseRequest: malformed requests say why", () => {
  const error = (b: Uint8Array, o = opts) => {
    const result = parseRequest(b, o);
    assert.ok("error" in result, JSON.stringify(result));
    return result.error;
  };
  assert.match(error(new Uint8Array(7)), /7 bytes/);
  assert.match(error(bytes(0, 0, 0)), /unknown request type 0/);
  assert.match(error(bytes(7, 0, 0)), /unknown request type 7/);
  assert.match(error(bytes(VIRTIO_GPIO_MSG_SET_VALUE, 4, 0)), /line 4, the device has 4/);
  assert.match(error(bytes(VIRTIO_GPIO_MSG_SET_VALUE, 0, 2)), /above 1/);
  assert.match(error(bytes(VIRTIO_GPIO_MSG_SET_DIRECTION, 0, 3)), /unknown direction/);
  assert.match(error(bytes(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, 5)), /unknown type 5/);
  assert.match(
    error(bytes(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, 1), { ngpio: 4, irq: false }),
    /without VIRTIO_GPIO_F_IRQ/,
  );
});

Deno.test("parseIrqRequest: a le16 line below ngpio", () => {
  assert.deepEqual(parseIrqRequest(Uint8Array.of(3, 0), { ngpio: 4 }), { gpio: 3 });
  assert.ok("error" in parseIrqRequest(Uint8Array.of(4, 0), { ngpio: 4 }));
  assert.ok("error" in parseIrqRequest(Uint8Array.of(0, 1), { ngpio: 4 }));
  assert.ok("error" in parseIrqRequest(Uint8Array.of(0), { ngpio: 4 }));
});

Deno.test("line names: the spec's example block; none at all gives size 0", () => {
  const names = ["MMC-CD", "", "", "", "", "Red LED Vdd", "", "ethernet reset", "", ""];
  const block = encodeLineNames(names);
  assert.equal(
    new TextDecoder().decode(block),
    "MMC-CD\0\0\0\0\0Red LED Vdd\0\0ethernet reset\0\0\0",
  );
  assert.equal(encodeLineNames(["", ""]).length, 0);
});

Deno.test("sanitizeLineNames: 7-bit ASCII and unique", () => {
  const { names, changes } = sanitizeLineNames(["a", "é", "a", ""]);
  assert.deepEqual(names, ["a", "?", "", ""]);
  assert.equal(changes.length, 2);
});

Deno.test("encodeConfig: le16 ngpio, zero padding, le32 gpio_names_size", () => {
  assert.deepEqual(
    encodeConfig({ ngpio: 0x0102, namesSize: 0x03040506 }),
    Uint8Array.of(2, 1, 0, 0, 6, 5, 4, 3),
  );
});

Deno.test("parseRequest: any 8 bytes decode to an in-range request or an error, never a throw", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 8, maxLength: 8 }),
      fc.integer({ min: 1, max: 0xffff }),
      fc.boolean(),
      (raw, ngpio, irq) => {
        const result = parseRequest(raw, { ngpio, irq });
        if ("error" in result) return true;
        if ("gpio" in result && result.gpio >= ngpio) return false;
        if ("value" in result && result.value > 1) return false;
        if ("direction" in result && result.direction > 2) return false;
        if ("irqType" in result && (!irq || ![0, 1, 2, 3, 4, 8].includes(result.irqType))) {
          return false;
        }
        return true;
      },
    ),
    { numRuns: 5000 },
  );
});

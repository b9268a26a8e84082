import assert from "node:assert/strict";
import {
  I2C_MSG_SIZE,
  I2C_RDWR_IOCTL_DATA_SIZE,
  I2C_SMBUS_DATA_SIZE,
  I2C_SMBUS_IOCTL_DATA_SIZE,
  i2cFuncs,
  openI2cDev,
  SyscallError,
} from "./mod.ts";
import { close, createEventFd } from "./mod.ts";

Deno.test("i2c-dev: struct sizes of <linux/i2c.h> and <linux/i2c-dev.h> on LP64", () => {
  assert.equal(I2C_MSG_SIZE, 16);
  assert.equal(I2C_RDWR_IOCTL_DATA_SIZE, 16);
  assert.equal(I2C_SMBUS_IOCTL_DATA_SIZE, 16);
  assert.equal(I2C_SMBUS_DATA_SIZE, 34);
});

Deno.test("i2c-dev: errors name the call, the node and errno", () => {
  assert.throws(
    () => openI2cDev("/dev/i2c-no-such-adapter"),
    (e: Error) =>
      e instanceof SyscallError && /open\(\/dev\/i2c-no-such-adapter\).*ENOENT/.test(e.message),
  );
  // I2C_FUNCS on an fd that is no i2c-dev node: ENOTTY, not a crash.
  const fd = createEventFd();
  try {
    assert.throws(
      () => i2cFuncs(fd),
      (e: Error) => e instanceof SyscallError && /I2C_FUNCS/.test(e.message),
    );
  } finally {
    close(fd);
  }
});

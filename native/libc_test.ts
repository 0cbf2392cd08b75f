import assert from "node:assert/strict";
import {
  addressOf,
  check,
  close,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  Errno,
  errnoName,
  eventfd,
  monotonicMicros,
  poll,
  POLLFD_SIZE,
  POLLIN,
  read,
  SyscallError,
  write,
} from "./libc.ts";

Deno.test("check() names the operation and errno of a failed call", () => {
  assert.throws(() => close(-1), (e: unknown) => {
    assert.ok(e instanceof SyscallError);
    assert.equal(e.errno, Errno.EBADF);
    assert.equal(e.code, "EBADF");
    assert.equal(e.message, "Cannot close fd -1: EBADF (9)");
    return true;
  });
});

Deno.test("check() returns -errno for an allowed errno and passes successes through", () => {
  assert.equal(check("nothing", 7), 7);
  const fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  try {
    assert.equal(read("read eventfd", fd, new Uint8Array(8), [Errno.EAGAIN]), -Errno.EAGAIN);
  } finally {
    close(fd);
  }
});

Deno.test("errnoName() knows common values and falls back to the number", () => {
  assert.equal(errnoName(17), "EEXIST");
  assert.equal(errnoName(4242), "errno 4242");
});

Deno.test("eventfd + poll: a write makes the fd readable", () => {
  const fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  try {
    const fds = new Uint8Array(POLLFD_SIZE);
    const view = new DataView(fds.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, POLLIN, true);
    assert.equal(poll(fds, 1, 0), 0);
    const one = new Uint8Array(8);
    new DataView(one.buffer).setBigUint64(0, 1n, true);
    assert.equal(write("write eventfd", fd, one), 8);
    assert.equal(poll(fds, 1, 0), 1);
    assert.equal(view.getInt16(6, true) & POLLIN, POLLIN);
  } finally {
    close(fd);
  }
});

Deno.test("addressOf() includes the view's byteOffset", () => {
  const buffer = new ArrayBuffer(64);
  assert.equal(addressOf(new Uint8Array(buffer, 16)), addressOf(buffer) + 16);
});

Deno.test("monotonicMicros() does not go backwards", () => {
  const a = monotonicMicros();
  const b = monotonicMicros();
  assert.ok(b >= a && a > 0);
});

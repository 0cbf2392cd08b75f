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
  mapPrivateAt,
  mapZeroAt,
  memoryFile,
  monotonicMicros,
  poll,
  POLLFD_SIZE,
  POLLIN,
  read,
  SyscallError,
  write,
  writeAt,
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

Deno.test("a memory file mapped privately over a buffer: its pages read through, writes stay", () => {
  const bytes = 4 * 4096;
  const fd = memoryFile("libc-test", bytes);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const clone = new Uint8Array(memory.buffer);
  try {
    clone[5000] = 1;
    mapPrivateAt(addressOf(memory.buffer), bytes, fd);
    assert.equal(clone[5000], 0, "the file replaced what was there");
    writeAt(fd, new Uint8Array([42, 43]), 4096 + 7);
    assert.deepEqual([...clone.subarray(4096 + 7, 4096 + 9)], [42, 43], "the file is read through");
    clone[4096 + 7] = 9;
    writeAt(fd, new Uint8Array([44]), 4096 + 8);
    assert.equal(clone[4096 + 8], 43, "a page written is the clone's own copy from then on");
    mapZeroAt(addressOf(memory.buffer), bytes);
    assert.equal(clone[4096 + 7], 0, "zero pages replaced the file");
  } finally {
    close(fd);
  }
  assert.throws(() => memoryFile("x".repeat(300), 4096), /Cannot memfd_create: EINVAL/);
});

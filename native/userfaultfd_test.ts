import assert from "node:assert/strict";
import { addressOf, close, Errno, MADV_DONTNEED, madvise } from "./libc.ts";
import {
  decodeUffdMsg,
  openUserfaultfd,
  UFFD_EVENT_PAGEFAULT,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_WP_UNPOPULATED,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_STRUCT_SIZE,
  uffdApi,
  uffdCopy,
  UFFDIO_API,
  UFFDIO_COPY,
  UFFDIO_REGISTER,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_UNREGISTER,
  UFFDIO_WAKE,
  UFFDIO_WRITEPROTECT,
  UFFDIO_ZEROPAGE,
  uffdRegister,
  uffdUnregister,
  uffdZeropage,
  USERFAULTFD_IOC_NEW,
} from "./userfaultfd.ts";

// include/uapi/asm-generic/ioctl.h: dir<<30 | size<<16 | type<<8 | nr
function ioc(dir: number, type: number, nr: number, size: number): bigint {
  return (BigInt(dir) << 30n) | (BigInt(size) << 16n) | (BigInt(type) << 8n) | BigInt(nr);
}
const IOC_NONE = 0, IOC_WRITE = 1, IOC_READ = 2;
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, 0xaa, nr, size);
const ior = (nr: number, size: number) => ioc(IOC_READ, 0xaa, nr, size);

Deno.test("ioctl numbers match the _IOWR/_IOR/_IO formula", () => {
  const s = UFFD_STRUCT_SIZE;
  assert.equal(UFFDIO_API, iowr(0x3f, s.uffdio_api));
  assert.equal(UFFDIO_REGISTER, iowr(0x00, s.uffdio_register));
  assert.equal(UFFDIO_UNREGISTER, ior(0x01, s.uffdio_range));
  assert.equal(UFFDIO_WAKE, ior(0x02, s.uffdio_range));
  assert.equal(UFFDIO_COPY, iowr(0x03, s.uffdio_copy));
  assert.equal(UFFDIO_ZEROPAGE, iowr(0x04, s.uffdio_zeropage));
  assert.equal(UFFDIO_WRITEPROTECT, iowr(0x06, s.uffdio_writeprotect));
  assert.equal(USERFAULTFD_IOC_NEW, ioc(IOC_NONE, 0xaa, 0x00, 0));
});

Deno.test("struct sizes follow from their u64 fields", () => {
  const s = UFFD_STRUCT_SIZE;
  assert.equal(s.uffdio_range, 2 * 8);
  assert.equal(s.uffdio_api, 3 * 8);
  assert.equal(s.uffdio_register, s.uffdio_range + 2 * 8);
  assert.equal(s.uffdio_copy, 5 * 8);
  assert.equal(s.uffdio_zeropage, s.uffdio_range + 2 * 8);
  assert.equal(s.uffdio_writeprotect, s.uffdio_range + 8);
  assert.equal(s.uffd_msg, 8 + 3 * 8);
});

Deno.test("decodeUffdMsg() reads a golden page-fault message", () => {
  const bytes = new Uint8Array(40);
  bytes.set([0x12, 0, 0, 0, 0, 0, 0, 0], 4);
  bytes.set([3, 0, 0, 0, 0, 0, 0, 0], 12); // flags WRITE|WP
  bytes.set([0x00, 0x30, 0x12, 0x40, 0x7f, 0, 0, 0], 20); // address 0x7f40123000
  const msg = decodeUffdMsg(bytes, 4);
  assert.deepEqual(msg, { event: UFFD_EVENT_PAGEFAULT, flags: 3, address: 0x7f40123000 });
  assert.equal(msg.flags & UFFD_PAGEFAULT_FLAG_WP, UFFD_PAGEFAULT_FLAG_WP);
  assert.throws(() => decodeUffdMsg(bytes, 9), RangeError);
});

Deno.test("a uffd offers write-protect of unpopulated pages and resolves copies", () => {
  const fd = openUserfaultfd({ nonblocking: true });
  try {
    const features = uffdApi(fd, 0n);
    assert.ok(features & UFFD_FEATURE_PAGEFAULT_FLAG_WP);
    assert.ok(features & UFFD_FEATURE_WP_UNPOPULATED);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const base = addressOf(memory.buffer);
    assert.equal(base % 65536, 0);
    madvise(base, 65536, MADV_DONTNEED);
    uffdRegister(fd, base, 65536, UFFDIO_REGISTER_MODE_MISSING);
    const page = new Uint8Array(4096).fill(7);
    assert.deepEqual(uffdCopy(fd, base, page), { bytes: 4096, errno: 0 });
    assert.deepEqual(uffdCopy(fd, base, page), { bytes: 0, errno: Errno.EEXIST });
    assert.deepEqual(uffdZeropage(fd, base + 4096, 8192), { bytes: 8192, errno: 0 });
    uffdUnregister(fd, base, 65536);
    const view = new Uint8Array(memory.buffer);
    assert.equal(view[4095], 7);
    assert.equal(view[4096], 0);
  } finally {
    close(fd);
  }
});

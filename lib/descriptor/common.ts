import { checkBytes, checkString, checkU32 } from "./checks.ts";
import type { ByteReader, ByteWriter } from "./cursor.ts";
import { fail, type Op } from "./errors.ts";
import { checkPageMap, PAGE_PRESENT, readPageMap, writePageMap } from "./page_map.ts";

export const FORK_ID_BYTES = 16;
export const FORK_KEY_BYTES = 32;
/** Inline pages travel on the control plane; the bulk of memory must not. */
export const MAX_INLINE_PAGES = 64;
const MIN_PAGE_SIZE = 4096;
const MAX_PAGE_SIZE = 65536;

/** A page whose clone-time bytes travel in the descriptor, e.g. the top of the guest's stack. */
export interface InlinePage {
  index: number;
  bytes: Uint8Array;
}

/** The fields every backend's descriptor has. */
export interface DescriptorCommon {
  /** 16 random bytes naming this fork. */
  forkId: Uint8Array;
  /** 32 bytes; authenticates page requests to the memory server. */
  forkKey: Uint8Array;
  /** "host:port" of the parent agent's data plane; IPv6 hosts in brackets. */
  memoryServer: string;
  parentVm: string;
  ticket: string;
  /** m, the clones the ticket granted. */
  clones: number;
  /** Bytes per page: a power of two from 4096 to 65536. */
  pageSize: number;
  /** One PageMark per page. */
  pageMap: Uint8Array;
  /** At most MAX_INLINE_PAGES, ascending by index, each marked PAGE_PRESENT. */
  inlinePages: InlinePage[];
}

export function checkCommon(op: Op, d: DescriptorCommon): void {
  checkBytes(op, d.forkId, FORK_ID_BYTES, "fork id");
  checkBytes(op, d.forkKey, FORK_KEY_BYTES, "fork key");
  checkMemoryServer(op, d.memoryServer);
  checkString(op, d.parentVm, "parent VM id", { nonEmpty: true });
  checkString(op, d.ticket, "ticket id", { nonEmpty: true });
  checkU32(op, d.clones, "clone count");
  if (d.clones === 0) fail(op, "clone count is 0");
  checkPageSize(op, d.pageSize);
  checkPageMap(op, d.pageMap);
  checkInlinePages(op, d);
}

export function writeCommon(w: ByteWriter, d: DescriptorCommon): void {
  w.raw(d.forkId);
  w.raw(d.forkKey);
  w.string(d.memoryServer);
  w.string(d.parentVm);
  w.string(d.ticket);
  w.u32(d.clones);
  w.u32(d.pageSize);
  writePageMap(w, d.pageMap);
  w.u32(d.inlinePages.length);
  for (const page of d.inlinePages) {
    w.u32(page.index);
    w.raw(page.bytes);
  }
}

/** `maxMemoryBytes` is the backend's limit, so a page map cannot claim more memory. */
export function readCommon(r: ByteReader, maxMemoryBytes: number): DescriptorCommon {
  const forkId = r.bytes(FORK_ID_BYTES, "fork id");
  const forkKey = r.bytes(FORK_KEY_BYTES, "fork key");
  const memoryServer = r.string("memory server");
  const parentVm = r.string("parent VM id");
  const ticket = r.string("ticket id");
  const clones = r.u32("clone count");
  const pageSize = r.u32("page size");
  // Checked now because it sizes the inline pages and bounds the page map.
  checkPageSize("decode", pageSize);
  const pageMap = readPageMap(r, maxMemoryBytes / pageSize);
  const inlineCount = r.count("inline page", 4 + pageSize);
  const inlinePages: InlinePage[] = [];
  for (let i = 0; i < inlineCount; i++) {
    const index = r.u32(`inline page ${i} index`);
    inlinePages.push({ index, bytes: r.bytes(pageSize, `inline page ${i}`) });
  }
  return {
    forkId,
    forkKey,
    memoryServer,
    parentVm,
    ticket,
    clones,
    pageSize,
    pageMap,
    inlinePages,
  };
}

function checkPageSize(op: Op, pageSize: number): void {
  const powerOfTwo = Number.isInteger(pageSize) && pageSize > 0 &&
    (pageSize & (pageSize - 1)) === 0;
  if (!powerOfTwo || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE) {
    fail(
      op,
      `page size ${pageSize} is not a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE}`,
    );
  }
}

function checkMemoryServer(op: Op, address: string): void {
  checkString(op, address, "memory server address");
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):([1-9][0-9]{0,4})$/.exec(address);
  if (match === null || Number(match[2]) > 65535) {
    fail(op, `memory server address ${JSON.stringify(address)} is not "host:port"`);
  }
}

function checkInlinePages(op: Op, d: DescriptorCommon): void {
  if (!Array.isArray(d.inlinePages)) fail(op, "inline pages is not a list");
  if (d.inlinePages.length > MAX_INLINE_PAGES) {
    fail(op, `${d.inlinePages.length} inline pages exceed the limit of ${MAX_INLINE_PAGES}`);
  }
  let previous = -1;
  d.inlinePages.forEach(({ index, bytes }, i) => {
    checkU32(op, index, `inline page ${i} index`);
    // Ascending and unique: a clone installs each once, and the encoding stays canonical.
    if (index <= previous) fail(op, `inline page ${i} index ${index} is not above ${previous}`);
    if (index >= d.pageMap.length) {
      fail(op, `inline page ${i} index ${index} is outside the ${d.pageMap.length}-page map`);
    }
    if (d.pageMap[index] !== PAGE_PRESENT) {
      fail(op, `inline page ${i} (page ${index}) has mark ${d.pageMap[index]}, not PRESENT`);
    }
    checkBytes(op, bytes, d.pageSize, `inline page ${i}`);
    previous = index;
  });
}

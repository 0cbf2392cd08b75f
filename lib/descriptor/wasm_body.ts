import { checkBytes, checkString, checkStrings, checkU32 } from "./checks.ts";
import type { ByteReader, ByteWriter } from "./cursor.ts";
import { fail, type Op } from "./errors.ts";

export const MODULE_HASH_BYTES = 32;
export const WASM_PAGE_BYTES = 65536;
/** 32-bit linear memory: 65536 wasm pages, 4 GiB. */
export const WASM_MAX_PAGES = 65536;
/** The asyncify data travels on the control plane, like inline pages; 1 MiB. */
export const MAX_ASYNCIFY_DATA_BYTES = 1 << 20;

export type WasmGlobal =
  | { name: string; type: "i32"; value: number }
  | { name: string; type: "i64"; value: bigint }
  | { name: string; type: "f32"; value: number }
  | { name: string; type: "f64"; value: number };

export type WasmGlobalType = WasmGlobal["type"];

export type WasiFdKind = "stdin" | "stdout" | "stderr" | "preopen" | "file" | "dir";

export interface WasiFd {
  fd: number;
  kind: WasiFdKind;
  /** The guest's path; empty for the standard streams if they have none. */
  path: string;
  /** u64 */
  position: bigint;
  /** u32 */
  flags: number;
}

export interface WasiState {
  args: string[];
  env: string[];
  fds: WasiFd[];
}

/** What a wasm clone needs besides memory. */
export interface WasmBody {
  /** sha256 of the guest module as uploaded; every agent prepares it the same way. */
  moduleHash: Uint8Array;
  /** In 64 KiB wasm pages. */
  memory: { pages: number; maxPages: number };
  /** The mutable globals the preparer exported, in export order. */
  globals: WasmGlobal[];
  /**
   * The asyncify data (the parent's unwound call stack) from the engine's own region, not guest
   * linear memory; at most MAX_ASYNCIFY_DATA_BYTES, possibly empty.
   */
  asyncifyData: Uint8Array;
  /** The sbrk break; pages above it are untouched. */
  heapTop: number;
  wasi: WasiState;
}

// Codes on the wire; index 0 is reserved as invalid.
const GLOBAL_TYPES: readonly (WasmGlobalType | undefined)[] = [
  undefined,
  "i32",
  "i64",
  "f32",
  "f64",
];
const FD_KINDS: readonly (WasiFdKind | undefined)[] = [
  undefined,
  "stdin",
  "stdout",
  "stderr",
  "preopen",
  "file",
  "dir",
];
const GLOBAL_VALUE_BYTES = 8;
// Smallest encodings, to reject counts the remaining bytes cannot hold before allocating.
const MIN_STRING_BYTES = 4;
const MIN_GLOBAL_BYTES = MIN_STRING_BYTES + 1 + GLOBAL_VALUE_BYTES;
const MIN_FD_BYTES = 4 + 1 + MIN_STRING_BYTES + 8 + 4;

/** `memoryBytes` is what the common page map covers; it must equal the wasm memory. */
export function checkWasmBody(op: Op, body: WasmBody, memoryBytes: number): void {
  checkBytes(op, body.moduleHash, MODULE_HASH_BYTES, "module hash");
  const { pages, maxPages } = body.memory;
  checkU32(op, pages, "memory size");
  checkU32(op, maxPages, "memory maximum");
  if (pages > maxPages || maxPages > WASM_MAX_PAGES) {
    fail(
      op,
      `memory of ${pages} pages, maximum ${maxPages}, is not within ${WASM_MAX_PAGES} pages`,
    );
  }
  const bytes = pages * WASM_PAGE_BYTES;
  if (memoryBytes !== bytes) {
    fail(op, `page map covers ${memoryBytes} bytes but wasm memory is ${bytes}`);
  }
  checkGlobals(op, body.globals);
  if (!(body.asyncifyData instanceof Uint8Array)) fail(op, "asyncify data is not a Uint8Array");
  checkAsyncifyDataLength(op, body.asyncifyData.length);
  checkU32(op, body.heapTop, "heap top");
  if (body.heapTop > bytes) fail(op, `heap top ${body.heapTop} is past memory end ${bytes}`);
  checkStrings(op, body.wasi.args, "arg", { noNul: true });
  checkStrings(op, body.wasi.env, "env", { noNul: true });
  checkFds(op, body.wasi.fds);
}

export function writeWasmBody(w: ByteWriter, body: WasmBody): void {
  w.raw(body.moduleHash);
  w.u32(body.memory.pages);
  w.u32(body.memory.maxPages);
  w.u32(body.asyncifyData.length);
  w.raw(body.asyncifyData);
  w.u32(body.heapTop);
  w.u32(body.globals.length);
  for (const global of body.globals) {
    w.string(global.name);
    w.u8(GLOBAL_TYPES.indexOf(global.type));
    w.raw(globalValueBytes(global));
  }
  writeStrings(w, body.wasi.args);
  writeStrings(w, body.wasi.env);
  w.u32(body.wasi.fds.length);
  for (const fd of body.wasi.fds) {
    w.u32(fd.fd);
    w.u8(FD_KINDS.indexOf(fd.kind));
    w.string(fd.path);
    w.u64(fd.position);
    w.u32(fd.flags);
  }
}

export function readWasmBody(r: ByteReader): WasmBody {
  const moduleHash = r.bytes(MODULE_HASH_BYTES, "module hash");
  const memory = { pages: r.u32("memory size"), maxPages: r.u32("memory maximum") };
  const asyncifyLength = r.u32("asyncify data length");
  // Capped before the bytes are read, like every count.
  checkAsyncifyDataLength("decode", asyncifyLength);
  const asyncifyData = r.bytes(asyncifyLength, "asyncify data");
  const heapTop = r.u32("heap top");
  const globals: WasmGlobal[] = [];
  const globalCount = r.count("global", MIN_GLOBAL_BYTES);
  for (let i = 0; i < globalCount; i++) globals.push(readGlobal(r, i));
  const args = readStrings(r, "arg");
  const env = readStrings(r, "env");
  const fds: WasiFd[] = [];
  const fdCount = r.count("fd", MIN_FD_BYTES);
  for (let i = 0; i < fdCount; i++) fds.push(readFd(r, i));
  return { moduleHash, memory, globals, asyncifyData, heapTop, wasi: { args, env, fds } };
}

function checkAsyncifyDataLength(op: Op, length: number): void {
  if (length > MAX_ASYNCIFY_DATA_BYTES) {
    fail(
      op,
      `asyncify data of ${length} bytes exceeds the limit of ${MAX_ASYNCIFY_DATA_BYTES} bytes`,
    );
  }
}

function checkGlobals(op: Op, globals: WasmGlobal[]): void {
  if (!Array.isArray(globals)) fail(op, "globals is not a list");
  const names = new Set<string>();
  globals.forEach((global, i) => {
    const what = `global ${i}`;
    checkString(op, global.name, `${what} name`, { nonEmpty: true });
    if (names.has(global.name)) fail(op, `${what} name ${JSON.stringify(global.name)} repeats`);
    names.add(global.name);
    if (!GLOBAL_TYPES.includes(global.type) || global.type === undefined) {
      fail(op, `${what} (${global.name}) type ${String(global.type)} is not valid`);
    }
    if (!checkGlobalValue(global)) {
      fail(
        op,
        `${what} (${global.name}) value ${String(global.value)} is not a valid ${global.type}`,
      );
    }
  });
}

// The ranges WebAssembly.Global.value yields, so a decoded value equals what was captured.
function checkGlobalValue(global: WasmGlobal): boolean {
  switch (global.type) {
    case "i32":
      return Number.isInteger(global.value) && global.value === (global.value | 0);
    case "i64":
      return typeof global.value === "bigint" && BigInt.asIntN(64, global.value) === global.value;
    case "f32":
      return typeof global.value === "number" &&
        (Number.isNaN(global.value) || Object.is(Math.fround(global.value), global.value));
    case "f64":
      return typeof global.value === "number";
  }
}

function checkFds(op: Op, fds: WasiFd[]): void {
  if (!Array.isArray(fds)) fail(op, "fds is not a list");
  const seen = new Set<number>();
  fds.forEach((fd, i) => {
    const what = `fd entry ${i}`;
    checkU32(op, fd.fd, `${what} number`);
    if (seen.has(fd.fd)) fail(op, `${what}: fd ${fd.fd} repeats`);
    seen.add(fd.fd);
    if (!FD_KINDS.includes(fd.kind) || fd.kind === undefined) {
      fail(op, `${what} kind ${String(fd.kind)} is not valid`);
    }
    checkString(op, fd.path, `${what} path`, { noNul: true });
    if (typeof fd.position !== "bigint" || BigInt.asUintN(64, fd.position) !== fd.position) {
      fail(op, `${what} position ${String(fd.position)} is not a u64`);
    }
    checkU32(op, fd.flags, `${what} flags`);
  });
}

/** The value in the low bytes, little-endian; the rest zero. */
function globalValueBytes(global: WasmGlobal): Uint8Array {
  const bytes = new Uint8Array(GLOBAL_VALUE_BYTES);
  const view = new DataView(bytes.buffer);
  switch (global.type) {
    case "i32":
      view.setInt32(0, global.value, true);
      break;
    case "i64":
      view.setBigInt64(0, global.value, true);
      break;
    case "f32":
      view.setFloat32(0, global.value, true);
      break;
    case "f64":
      view.setFloat64(0, global.value, true);
      break;
  }
  return bytes;
}

function readGlobal(r: ByteReader, i: number): WasmGlobal {
  const name = r.string(`global ${i} name`);
  const code = r.u8(`global ${i} type`);
  const bytes = r.bytes(GLOBAL_VALUE_BYTES, `global ${i} value`);
  const view = new DataView(bytes.buffer);
  const type = GLOBAL_TYPES[code];
  if (type === "i64") return { name, type, value: view.getBigInt64(0, true) };
  if (type === "f64") return { name, type, value: view.getFloat64(0, true) };
  if (type === undefined) fail("decode", `global ${i} (${name}) has invalid type ${code}`);
  // Padding must be zero so each value has one encoding.
  if (view.getUint32(4, true) !== 0) fail("decode", `global ${i} (${name}) has nonzero padding`);
  return type === "i32"
    ? { name, type, value: view.getInt32(0, true) }
    : { name, type, value: view.getFloat32(0, true) };
}

function readFd(r: ByteReader, i: number): WasiFd {
  const what = `fd entry ${i}`;
  const fd = r.u32(`${what} number`);
  const code = r.u8(`${what} kind`);
  const kind = FD_KINDS[code];
  if (kind === undefined) fail("decode", `${what} has invalid kind ${code}`);
  const path = r.string(`${what} path`);
  const position = r.u64(`${what} position`);
  const flags = r.u32(`${what} flags`);
  return { fd, kind, path, position, flags };
}

function writeStrings(w: ByteWriter, values: string[]): void {
  w.u32(values.length);
  for (const value of values) w.string(value);
}

function readStrings(r: ByteReader, what: string): string[] {
  const values: string[] = [];
  const count = r.count(what, MIN_STRING_BYTES);
  for (let i = 0; i < count; i++) values.push(r.string(`${what} ${i}`));
  return values;
}

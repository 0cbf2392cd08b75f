import { checkCommon, type DescriptorCommon, readCommon, writeCommon } from "./common.ts";
import { ByteReader, ByteWriter } from "./cursor.ts";
import {
  FORMAT_MAJOR,
  FORMAT_MINOR,
  HEADER_BYTES,
  openEnvelope,
  sealEnvelope,
} from "./envelope.ts";
import { fail, type Op } from "./errors.ts";
import {
  checkWasmBody,
  readWasmBody,
  WASM_MAX_PAGES,
  WASM_PAGE_BYTES,
  type WasmBody,
  writeWasmBody,
} from "./wasm_body.ts";
import {
  checkXenBody,
  readXenBody,
  writeXenBody,
  XEN_MAX_PAGES,
  XEN_PAGE_BYTES,
  type XenBody,
} from "./xen_body.ts";

/** A wasm VM's descriptor: the common part plus the wasm body. */
export interface WasmDescriptor extends DescriptorCommon {
  kind: "wasm";
  wasm: WasmBody;
}

/** A Xen PV guest's descriptor: the common part plus the xen body. */
export interface XenDescriptor extends DescriptorCommon {
  kind: "xen";
  xen: XenBody;
}

/**
 * The wasm descriptor, as the wasm code reads it. Kept wasm-only so wasm callers need no
 * narrowing; `AnyDescriptor` is every body this version defines (kvm will join).
 */
export type Descriptor = WasmDescriptor;
export type AnyDescriptor = WasmDescriptor | XenDescriptor;

/** Validates `d` and returns its bytes; throws DescriptorError naming the bad field. */
export function encodeDescriptor(d: AnyDescriptor): Uint8Array {
  checkDescriptor("encode", d);
  const w = new ByteWriter();
  writeCommon(w, d);
  if (d.kind === "wasm") writeWasmBody(w, d.wasm);
  else writeXenBody(w, d.xen);
  return sealEnvelope(d.kind, w.finish());
}

/** Verifies and parses wasm descriptor bytes; throws DescriptorError on anything else. */
export function decodeDescriptor(bytes: Uint8Array): Descriptor {
  const d = decodeAnyDescriptor(bytes);
  if (d.kind !== "wasm") fail("decode", `backend kind ${d.kind} is not wasm`);
  return d;
}

/** Verifies and parses descriptor bytes of any kind this version defines. */
export function decodeAnyDescriptor(bytes: Uint8Array): AnyDescriptor {
  const { kind, payload } = openEnvelope(bytes);
  if (kind === "xen") {
    const r = new ByteReader(payload, HEADER_BYTES);
    const common = readCommon(r, XEN_MAX_PAGES * XEN_PAGE_BYTES);
    const xen = readXenBody(r);
    r.end("the xen body");
    const d: AnyDescriptor = { kind, ...common, xen };
    checkDescriptor("decode", d);
    return d;
  }
  if (kind !== "wasm") {
    fail(
      "decode",
      `backend kind ${kind} is not supported by this version (${FORMAT_MAJOR}.${FORMAT_MINOR})`,
    );
  }
  const r = new ByteReader(payload, HEADER_BYTES);
  const common = readCommon(r, WASM_MAX_PAGES * WASM_PAGE_BYTES);
  const wasm = readWasmBody(r);
  r.end("the wasm body");
  const d: Descriptor = { kind, ...common, wasm };
  checkDescriptor("decode", d);
  return d;
}

function checkDescriptor(op: Op, d: AnyDescriptor): void {
  if (d.kind === "xen") {
    if (typeof d.xen !== "object" || d.xen === null) fail(op, "xen descriptor has no xen body");
    checkCommon(op, d);
    if (d.pageSize !== XEN_PAGE_BYTES) fail(op, `page size ${d.pageSize} is not 4096 for xen`);
    if (d.pageMap.length > XEN_MAX_PAGES) {
      fail(op, `${d.pageMap.length} pages exceed the xen limit of ${XEN_MAX_PAGES}`);
    }
    checkXenBody(op, d.xen, d.pageMap.length);
    return;
  }
  if (d.kind !== "wasm") {
    fail(
      op,
      `backend kind ${String((d as { kind: unknown }).kind)} is not supported by this version`,
    );
  }
  checkCommon(op, d);
  checkWasmBody(op, d.wasm, d.pageMap.length * d.pageSize);
}

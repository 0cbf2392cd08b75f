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

/** A wasm VM's descriptor: the common part plus the wasm body. */
export interface WasmDescriptor extends DescriptorCommon {
  kind: "wasm";
  wasm: WasmBody;
}

/** One member per backend whose body this version defines; xen and kvm will join. */
export type Descriptor = WasmDescriptor;

/** Validates `d` and returns its bytes; throws DescriptorError naming the bad field. */
export function encodeDescriptor(d: Descriptor): Uint8Array {
  checkDescriptor("encode", d);
  const w = new ByteWriter();
  writeCommon(w, d);
  writeWasmBody(w, d.wasm);
  return sealEnvelope(d.kind, w.finish());
}

/** Verifies and parses descriptor bytes; throws DescriptorError on anything but a valid one. */
export function decodeDescriptor(bytes: Uint8Array): Descriptor {
  const { kind, payload } = openEnvelope(bytes);
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

function checkDescriptor(op: Op, d: Descriptor): void {
  if (d.kind !== "wasm") {
    fail(op, `backend kind ${String(d.kind)} is not supported by this version`);
  }
  checkCommon(op, d);
  checkWasmBody(op, d.wasm, d.pageMap.length * d.pageSize);
}

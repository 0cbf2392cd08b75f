export { DescriptorError } from "./errors.ts";
export {
  countMarks,
  isPageMark,
  PAGE_FREE,
  PAGE_HINTED,
  PAGE_PRESENT,
  PAGE_UNTOUCHED,
  PAGE_ZERO,
  type PageMark,
  type PageMarkName,
} from "./page_map.ts";
export { type BackendKind, FORMAT_MAJOR, FORMAT_MINOR } from "./envelope.ts";
export {
  type DescriptorCommon,
  FORK_ID_BYTES,
  FORK_KEY_BYTES,
  type InlinePage,
  MAX_INLINE_PAGES,
} from "./common.ts";
export {
  MAX_ASYNCIFY_DATA_BYTES,
  MODULE_HASH_BYTES,
  type WasiFd,
  type WasiFdKind,
  type WasiState,
  type WasmBody,
  type WasmGlobal,
  type WasmGlobalType,
} from "./wasm_body.ts";
export {
  type AnyDescriptor,
  decodeAnyDescriptor,
  decodeDescriptor,
  type Descriptor,
  encodeDescriptor,
  type WasmDescriptor,
  type XenDescriptor,
} from "./format.ts";
export { XEN_PAGE_BYTES, type XenBody, type XenRecord } from "./xen_body.ts";

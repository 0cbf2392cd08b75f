import { crc32 } from "node:zlib";
import { fail } from "./errors.ts";

/** The layout version this code writes and the newest it reads. */
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;

export type BackendKind = "wasm" | "xen" | "kvm";

/** "SFVD" */
const MAGIC = 0x44_56_46_53;
/** magic 4, major 2, minor 2, kind 1, flags 1, reserved 2, total length 4 */
export const HEADER_BYTES = 16;
const CRC_BYTES = 4;
const KINDS: readonly (BackendKind | undefined)[] = [undefined, "wasm", "xen", "kvm"];

export interface Opened {
  kind: BackendKind;
  /** The bytes between header and CRC; they start at offset HEADER_BYTES. */
  payload: Uint8Array;
}

/** Frames a payload: header in front, CRC32 of everything before it at the end. */
export function sealEnvelope(kind: BackendKind, payload: Uint8Array): Uint8Array {
  const length = HEADER_BYTES + payload.length + CRC_BYTES;
  if (length > 0xffff_ffff) fail("encode", `descriptor of ${length} bytes exceeds 4 GiB`);
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, FORMAT_MAJOR, true);
  view.setUint16(6, FORMAT_MINOR, true);
  view.setUint8(8, KINDS.indexOf(kind));
  // bytes 9..12 (flags, reserved) stay zero
  view.setUint32(12, length, true);
  bytes.set(payload, HEADER_BYTES);
  view.setUint32(length - CRC_BYTES, crc32(bytes.subarray(0, length - CRC_BYTES)), true);
  return bytes;
}

/** Checks magic, then the CRC, then the header fields, in that order. */
export function openEnvelope(bytes: Uint8Array): Opened {
  if (!(bytes instanceof Uint8Array)) fail("decode", "input is not a Uint8Array");
  if (bytes.length < HEADER_BYTES + CRC_BYTES) {
    fail(
      "decode",
      `${bytes.length} bytes is shorter than the ${HEADER_BYTES + CRC_BYTES}-byte envelope`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== MAGIC) fail("decode", `magic 0x${hex(magic)} is not "SFVD"`);
  checkCrc(bytes, view);
  const major = view.getUint16(4, true);
  const minor = view.getUint16(6, true);
  if (major !== FORMAT_MAJOR) {
    fail(
      "decode",
      `format version ${major}.${minor} is not supported: this version reads ${FORMAT_MAJOR}.x`,
    );
  }
  if (minor > FORMAT_MINOR) {
    const supported = `${FORMAT_MAJOR}.${FORMAT_MINOR}`;
    fail("decode", `format version ${major}.${minor} is newer than this version's ${supported}`);
  }
  const kindCode = view.getUint8(8);
  const kind = KINDS[kindCode];
  if (kind === undefined) fail("decode", `backend kind ${kindCode} is not valid`);
  const flags = view.getUint8(9);
  if (flags !== 0) {
    fail("decode", `flags 0x${hex(flags, 1)} are not defined in ${FORMAT_MAJOR}.${FORMAT_MINOR}`);
  }
  const reserved = view.getUint16(10, true);
  if (reserved !== 0) fail("decode", `reserved bytes are 0x${hex(reserved, 2)}, not zero`);
  const length = view.getUint32(12, true);
  if (length !== bytes.length) {
    fail("decode", `length field says ${length} bytes but the descriptor has ${bytes.length}`);
  }
  return { kind, payload: bytes.subarray(HEADER_BYTES, bytes.length - CRC_BYTES) };
}

function checkCrc(bytes: Uint8Array, view: DataView): void {
  const end = bytes.length - CRC_BYTES;
  const stored = view.getUint32(end, true);
  const computed = crc32(bytes.subarray(0, end));
  if (stored === computed) return;
  // The length field is untrusted here; it only suggests why the check failed.
  const claimed = view.getUint32(12, true);
  const hint = claimed === bytes.length
    ? "corrupt"
    : "corrupt, truncated or with trailing bytes: " +
      `the header claims ${claimed} bytes, got ${bytes.length}`;
  fail("decode", `checksum 0x${hex(stored)} != 0x${hex(computed)} (${hint})`);
}

function hex(value: number, bytes = 4): string {
  return value.toString(16).padStart(bytes * 2, "0");
}

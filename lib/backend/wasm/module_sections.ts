/**
 * Snowflock's custom sections in a guest module: how a module brings its own
 * preparation settings and a read-only file image (an interpreter's standard
 * library) without any change to the agents that run it. Both travel inside
 * the module, so they are cached by the module's hash like the module itself.
 *
 * - `snowflock.prepare`: UTF-8 JSON {@link ModuleSettings};
 * - `snowflock.image`: an uncompressed ustar archive, the guest sees it
 *   read-only at `settings.image.guestPath`.
 *
 * Both are removed from the module before it is prepared (V8 never holds the
 * image). Any other custom section is left alone.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { GuestError } from "./errors.ts";

export const SETTINGS_SECTION = "snowflock.prepare";
export const IMAGE_SECTION = "snowflock.image";

/** What a module may ask of its own preparation. */
export interface ModuleSettings {
  /** Functions to instrument besides those reaching a forking import directly. */
  asyncifyAddList?: string[];
  /** See `PrepareOptions.asyncifyIgnoreIndirect`. */
  asyncifyIgnoreIndirect?: boolean;
  /** See `PrepareOptions.asyncifyPages`. */
  asyncifyPages?: number;
  /** See `PrepareOptions.asyncifyOptimize`. */
  asyncifyOptimize?: "module" | "listed";
  /** See `PrepareOptions.asyncifyOptimizeList`. */
  asyncifyOptimizeList?: string[];
  /** Where the guest sees the image section (read-only), and its sha256 (hex). */
  image?: { guestPath: string; sha256: string };
}

export interface SplitModule {
  /** The module without Snowflock's sections. */
  module: Uint8Array;
  settings: ModuleSettings | null;
  image: Uint8Array | null;
}

/**
 * Takes Snowflock's custom sections out of a module.
 *
 * @throws {GuestError} if the sections are malformed or the image does not
 * match its hash.
 */
export function splitModuleSections(bytes: Uint8Array): SplitModule {
  if (bytes.length < 8) return { module: bytes, settings: null, image: null };
  const kept: Uint8Array[] = [bytes.subarray(0, 8)];
  let settings: ModuleSettings | null = null;
  let image: Uint8Array | null = null;
  let at = 8;
  let found = false;
  while (at < bytes.length) {
    const start = at;
    const id = bytes[at++];
    const size = readLeb(bytes, at);
    at = size.next;
    const end = at + size.value;
    if (end > bytes.length) throw new GuestError("Cannot load guest: truncated section");
    if (id === 0) {
      const nameLength = readLeb(bytes, at);
      const nameEnd = nameLength.next + nameLength.value;
      const name = new TextDecoder().decode(bytes.subarray(nameLength.next, nameEnd));
      if (name === SETTINGS_SECTION) {
        settings = parseSettings(bytes.subarray(nameEnd, end));
        found = true;
        at = end;
        continue;
      }
      if (name === IMAGE_SECTION) {
        image = bytes.subarray(nameEnd, end);
        found = true;
        at = end;
        continue;
      }
    }
    kept.push(bytes.subarray(start, end));
    at = end;
  }
  if (!found) return { module: bytes, settings: null, image: null };
  if (image && !settings?.image) {
    throw new GuestError(`Cannot load guest: ${IMAGE_SECTION} without image settings`);
  }
  if (settings?.image) {
    if (!image) throw new GuestError(`Cannot load guest: ${IMAGE_SECTION} is missing`);
    const got = createHash("sha256").update(image).digest("hex");
    if (got !== settings.image.sha256) {
      throw new GuestError(
        `Cannot load guest: image sha256 ${got.slice(0, 12)} != ${
          settings.image.sha256.slice(0, 12)
        }`,
      );
    }
  }
  const module = new Uint8Array(kept.reduce((n, k) => n + k.length, 0));
  let out = 0;
  for (const k of kept) {
    module.set(k, out);
    out += k.length;
  }
  return { module, settings, image };
}

/** `bytes` with a custom section `name` appended. */
export function appendCustomSection(
  bytes: Uint8Array,
  name: string,
  payload: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const nameBytes = new TextEncoder().encode(name);
  const body = [...leb(nameBytes.length), ...nameBytes];
  const size = leb(body.length + payload.length);
  const out = new Uint8Array(bytes.length + 1 + size.length + body.length + payload.length);
  let at = 0;
  out.set(bytes, at);
  at += bytes.length;
  out[at++] = 0;
  out.set(size, at);
  at += size.length;
  out.set(body, at);
  at += body.length;
  out.set(payload, at);
  return out;
}

function parseSettings(bytes: Uint8Array): ModuleSettings {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new GuestError(`Cannot load guest: ${SETTINGS_SECTION} is not JSON`, { cause: e });
  }
  const s = value as ModuleSettings;
  const ok = typeof value === "object" && value !== null &&
    (s.asyncifyAddList === undefined || isNameList(s.asyncifyAddList)) &&
    (s.asyncifyIgnoreIndirect === undefined || typeof s.asyncifyIgnoreIndirect === "boolean") &&
    (s.asyncifyPages === undefined ||
      (Number.isInteger(s.asyncifyPages) && s.asyncifyPages >= 1 && s.asyncifyPages <= 1024)) &&
    (s.asyncifyOptimize === undefined || s.asyncifyOptimize === "module" ||
      s.asyncifyOptimize === "listed") &&
    (s.asyncifyOptimizeList === undefined || isNameList(s.asyncifyOptimizeList)) &&
    (s.image === undefined ||
      (typeof s.image.guestPath === "string" && /^\/[\w./-]*$/.test(s.image.guestPath) &&
        !s.image.guestPath.split("/").includes("..") &&
        typeof s.image.sha256 === "string" && /^[0-9a-f]{64}$/.test(s.image.sha256)));
  if (!ok) throw new GuestError(`Cannot load guest: ${SETTINGS_SECTION} has invalid settings`);
  return s;
}

function isNameList(names: unknown): boolean {
  return Array.isArray(names) &&
    names.every((n) => typeof n === "string" && /^[\w.$*-]+$/.test(n));
}

/** An unsigned LEB128 (at most 32 bits) at `at`, and where the next field starts. */
export function readLeb(bytes: Uint8Array, at: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (at >= bytes.length || shift > 28) {
      throw new GuestError("Cannot load guest: bad LEB128 in a section header");
    }
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return { value, next: at };
  }
}

/** `n` as an unsigned LEB128. */
export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

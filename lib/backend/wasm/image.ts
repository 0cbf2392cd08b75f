/**
 * File images a module brings (see module_sections.ts): an uncompressed
 * ustar archive unpacked once per host into a directory named by its sha256,
 * which VMs of that module preopen read-only.
 *
 * @module
 */
import { join } from "node:path";
import { GuestError } from "./errors.ts";

const BLOCK = 512;
const COMPLETE = ".snowflock-image-complete";

/**
 * Unpacks `tar` (whose sha256 is `sha256`, already verified) under
 * `dir/<sha256>` unless it is there already, and returns that directory.
 * Safe against concurrent callers: each unpacks into its own temporary
 * directory and the first rename wins.
 *
 * @throws {GuestError} if the archive is malformed or names a path outside itself.
 */
export function materializeImage(tar: Uint8Array, sha256: string, dir: string): string {
  const target = join(dir, sha256);
  if (isComplete(target)) return target;
  Deno.mkdirSync(dir, { recursive: true });
  const temp = join(dir, `.${sha256}.${crypto.randomUUID()}.tmp`);
  Deno.mkdirSync(temp);
  try {
    for (const entry of readTar(tar)) {
      const path = join(temp, entry.name);
      if (entry.kind === "dir") {
        Deno.mkdirSync(path, { recursive: true });
      } else {
        Deno.mkdirSync(join(path, ".."), { recursive: true });
        Deno.writeFileSync(path, entry.bytes);
      }
    }
    Deno.writeTextFileSync(join(temp, COMPLETE), sha256);
    try {
      Deno.renameSync(temp, target);
    } catch (e) {
      if (!isComplete(target)) throw e;
    }
  } finally {
    try {
      Deno.removeSync(temp, { recursive: true });
    } catch { /* renamed into place */ }
  }
  return target;
}

/** Whether `dir` holds a completely unpacked image. */
export function isComplete(dir: string): boolean {
  try {
    return Deno.statSync(join(dir, COMPLETE)).isFile;
  } catch {
    return false;
  }
}

interface TarEntry {
  name: string;
  kind: "file" | "dir";
  bytes: Uint8Array;
}

function* readTar(tar: Uint8Array): Generator<TarEntry> {
  const decoder = new TextDecoder();
  let at = 0;
  while (at + BLOCK <= tar.length) {
    const header = tar.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) return;
    const field = (from: number, length: number) =>
      decoder.decode(header.subarray(from, from + length)).replace(/\0.*$/s, "");
    const name = [field(345, 155), field(0, 100)].filter((s) => s).join("/");
    const size = parseInt(field(124, 12).trim() || "0", 8);
    const type = String.fromCharCode(header[156] || 0x30);
    if (!Number.isFinite(size) || size < 0 || at + BLOCK + size > tar.length) {
      throw new GuestError(`Cannot unpack image: bad size for ${name}`);
    }
    if (name.startsWith("/") || name.split("/").includes("..")) {
      throw new GuestError(`Cannot unpack image: ${name} is outside the image`);
    }
    const bytes = tar.subarray(at + BLOCK, at + BLOCK + size);
    if (type === "0") yield { name, kind: "file", bytes };
    else if (type === "5") yield { name, kind: "dir", bytes };
    else throw new GuestError(`Cannot unpack image: ${name} has entry type ${type}`);
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
}

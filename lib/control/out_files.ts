/**
 * A VM's /out directory as a list of files, so it can cross the network (a
 * clone's results to its parent, a parent's results to `run --out`).
 */
import { dirname, join, normalize, relative } from "node:path";

export interface OutFile {
  /** Relative to the /out directory, with "/" separators. */
  path: string;
  /** base64 */
  data: string;
}

/** At most this much is carried in one go, so a runaway guest cannot exhaust memory. */
export const MAX_OUT_BYTES = 256 * 1024 * 1024;

export async function readOutDir(dir: string): Promise<OutFile[]> {
  const files: OutFile[] = [];
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.isFile) {
        const bytes = await Deno.readFile(p);
        total += bytes.length;
        if (total > MAX_OUT_BYTES) {
          throw new Error(`Cannot collect ${dir}: more than ${MAX_OUT_BYTES} bytes`);
        }
        files.push({ path: relative(dir, p), data: toBase64(bytes) });
      }
    }
  };
  await walk(dir);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** Writes files under `dir`; a path that would leave `dir` is refused. */
export async function writeOutFiles(dir: string, files: OutFile[]): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const f of files) {
    const rel = normalize(f.path);
    if (rel.startsWith("..") || rel.startsWith("/") || rel === ".") {
      throw new Error(`Cannot write ${f.path}: outside the output directory`);
    }
    const target = join(dir, rel);
    await Deno.mkdir(dirname(target), { recursive: true });
    await Deno.writeFile(target, fromBase64(f.data));
  }
}

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Test guests in tests/guests/, compiled once per content hash into the user cache. */
import { join } from "node:path";
import { defaultCacheDir } from "../lib/control/agent_service.ts";
import { compileGuest } from "../lib/guest/cc.ts";

const DIR = new URL("./guests/", import.meta.url).pathname;

export async function testGuest(name: string): Promise<string> {
  const source = join(DIR, `${name}.c`);
  const text = await Deno.readFile(source);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", text));
  const tag = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const out = join(defaultCacheDir(), "test-guests", `${name}-${tag}.wasm`);
  try {
    await Deno.stat(out);
    return out;
  } catch {
    await Deno.mkdir(join(defaultCacheDir(), "test-guests"), { recursive: true });
    const tmp = `${out}.${crypto.randomUUID()}.tmp`;
    await compileGuest({ sources: [source], output: tmp, clangArgs: [] });
    await Deno.rename(tmp, out);
    return out;
  }
}

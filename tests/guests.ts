/** Test guests in tests/guests/, compiled once per content hash into the user cache. */
import { join } from "node:path";
import { defaultCacheDir } from "../lib/control/agent_service.ts";
import { buildCached } from "../lib/guest/cc.ts";

const DIR = new URL("./guests/", import.meta.url).pathname;

export function testGuest(name: string): Promise<string> {
  return buildCached(join(DIR, `${name}.c`), join(defaultCacheDir(), "test-guests"));
}

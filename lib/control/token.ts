/**
 * The join token: generated at the master's first start and kept in its data
 * dir (mode 0600), or given with --token. Agents and clients present it.
 */
import { join } from "node:path";

export const TOKEN_FILE = "token";

/** Returns `given` if set, else the token saved in `dataDir`, creating one on first start. */
export async function loadOrCreateToken(dataDir: string, given?: string): Promise<string> {
  if (given) return given;
  const path = join(dataDir, TOKEN_FILE);
  try {
    const saved = (await Deno.readTextFile(path)).trim();
    if (saved) return saved;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const token = newToken();
  await Deno.writeTextFile(path, token + "\n", { mode: 0o600 });
  return token;
}

export function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Compares in time independent of where the strings differ. */
export function tokensEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

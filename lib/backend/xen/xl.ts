/**
 * The `xl` tool (Debian xen-utils-4.17), for what libxl does best: building a
 * domain (create), the PV suspend/checkpoint (save -c) and restore. Runs with
 * a time limit; a failure names the command and quotes xl's last lines.
 *
 * @module
 */

export class XlError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "XlError";
  }
}

/** xl lives in /usr/lib/xen-4.17/bin on Debian (/usr/sbin/xl is a wrapper script). */
export const XL = Deno.env.get("SNOWFLOCK_XL") ?? "/usr/lib/xen-4.17/bin/xl";

export interface XlResult {
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `xl args…`; throws XlError on a non-zero exit or after `timeoutMs`. */
export async function xl(args: string[], timeoutMs = 120_000): Promise<XlResult> {
  const t0 = performance.now();
  const child = new Deno.Command(XL, { args, stdout: "piped", stderr: "piped", stdin: "null" })
    .spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutMs);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    if (!out.success) {
      const tail = stderr.trim().split("\n").slice(-3).join(" | ");
      throw new XlError(`Cannot xl ${args.join(" ")}: exit ${out.code}: ${tail}`);
    }
    return { stdout, stderr, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

/** A FIFO for streaming a save image between xl and this process (no copy on disk). */
export async function makeFifo(path: string): Promise<void> {
  await Deno.remove(path).catch(() => {});
  const out = await new Deno.Command("mkfifo", { args: ["-m", "600", path] }).output();
  if (!out.success) {
    throw new XlError(`Cannot mkfifo ${path}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Reads a whole FIFO (or file) into one buffer. */
export async function readAll(path: string): Promise<Uint8Array> {
  const f = await Deno.open(path, { read: true });
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const buf = new Uint8Array(1 << 20);
      const n = await f.read(buf);
      if (n === null) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
  } finally {
    f.close();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Writes chunks to a FIFO (or file) in order. */
export async function writeAll(path: string, chunks: Iterable<Uint8Array>): Promise<number> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  let total = 0;
  try {
    for (const c of chunks) {
      let at = 0;
      while (at < c.length) at += await f.write(c.subarray(at));
      total += c.length;
    }
  } finally {
    f.close();
  }
  return total;
}

/** The domain id of a named domain, or undefined. */
export async function domid(name: string): Promise<number | undefined> {
  try {
    const { stdout } = await xl(["domid", name], 30_000);
    const id = Number(stdout.trim());
    return Number.isInteger(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs our end of a FIFO (`mine`) against xl's end. When xl fails before it
 * opened the FIFO, our open would block forever: opening the other end once
 * releases it (EOF for a reader, EPIPE for a writer), so both settle.
 */
export async function pumpWithXl<T>(
  fifo: string,
  ourEnd: "read" | "write",
  mine: () => Promise<T>,
  run: Promise<XlResult>,
): Promise<[T, XlResult]> {
  const ours = mine();
  run.catch(async () => {
    try {
      const f = await Deno.open(fifo, ourEnd === "read" ? { write: true } : { read: true });
      f.close();
    } catch { /* already gone */ }
  });
  ours.catch(() => {});
  const result = await run;
  return [await ours, result];
}

/**
 * A Xen guest image as the master stores it. The master keeps guest "modules"
 * by content hash and only checks the WebAssembly magic, so a Xen guest travels
 * as the smallest valid Wasm module: the 8-byte header plus one custom section
 * named "snowflock.xen-guest" holding this JSON manifest. Kernel and ramdisk
 * are paths on the dom0 hosts (the lab shares them; a real cluster installs them).
 *
 * @module
 */
import { z } from "zod";

export const XenGuestManifest = z.object({
  kernel: z.string().min(1).max(4096),
  ramdisk: z.string().max(4096).optional(),
  /** Kernel command line. */
  extra: z.string().max(4096).default(""),
  memoryMiB: z.number().int().min(32).max(1 << 20),
  vcpus: z.number().int().min(1).max(128).default(1),
}).strict();
export type XenGuestManifest = z.infer<typeof XenGuestManifest>;

const SECTION = "snowflock.xen-guest";
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

export function encodeManifest(m: XenGuestManifest): Uint8Array<ArrayBuffer> {
  const name = new TextEncoder().encode(SECTION);
  const json = new TextEncoder().encode(JSON.stringify(XenGuestManifest.parse(m)));
  const payload = [...leb(name.length), ...name, ...json];
  return new Uint8Array([...HEADER, 0, ...leb(payload.length), ...payload]);
}

/** The manifest in a module, or undefined when the module is not a Xen guest image. */
export function decodeManifest(bytes: Uint8Array): XenGuestManifest | undefined {
  if (bytes.length < 10 || HEADER.some((b, i) => bytes[i] !== b) || bytes[8] !== 0) {
    return undefined;
  }
  let at = 9;
  const [size, a] = readLeb(bytes, at);
  at = a;
  const [nameLen, b] = readLeb(bytes, at);
  const name = new TextDecoder().decode(bytes.subarray(b, b + nameLen));
  if (name !== SECTION) return undefined;
  const json = new TextDecoder().decode(bytes.subarray(b + nameLen, at + size));
  return XenGuestManifest.parse(JSON.parse(json));
}

/** An xl config (xl.cfg(5)) for a PV guest named `name`. */
export function xlConfig(name: string, m: XenGuestManifest): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    `name = ${q(name)}`,
    `type = "pv"`,
    `kernel = ${q(m.kernel)}`,
    ...(m.ramdisk ? [`ramdisk = ${q(m.ramdisk)}`] : []),
    `extra = ${q(m.extra)}`,
    `memory = ${m.memoryMiB}`,
    `vcpus = ${m.vcpus}`,
    `on_poweroff = "destroy"`,
    `on_crash = "destroy"`,
    "",
  ].join("\n");
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function readLeb(b: Uint8Array, at: number): [number, number] {
  let n = 0, shift = 0;
  for (;;) {
    const x = b[at++];
    if (x === undefined) throw new RangeError("Cannot read manifest: truncated");
    n |= (x & 0x7f) << shift;
    if (!(x & 0x80)) return [n >>> 0, at];
    shift += 7;
  }
}

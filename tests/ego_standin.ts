/**
 * The EGO STAND-IN for tests: builds native/ego/standin/ (a stand-in
 * vem.api.h + libvem written for these tests, NOT Platform EGO) as an "SDK",
 * builds libegosf against it with the documented scripts/build-libegosf.sh,
 * and writes a stand-in conf dir (standin.conf; see vem_standin.c).
 */
import { join } from "node:path";
import { defaultCacheDir } from "../lib/control/agent_service.ts";

const ROOT = new URL("../", import.meta.url).pathname;

export const EGO_USER = "sfadmin";
export const EGO_PASSWORD = "sfpass";
export const EGO_CONSUMER = "/SnowFlock";
export const EGO_RESOURCE_GROUP = "ComputeHosts";

/** Builds (once per source hash) and returns the path of libegosf.so linked to the stand-in. */
export async function buildStandinLibegosf(): Promise<string> {
  const sources = ["native/ego/egosf.c", "native/ego/egosf.h", "native/ego/standin/vem.api.h"]
    .concat(["native/ego/standin/vem_standin.c", "scripts/build-libegosf.sh"]);
  const hash = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(
        (await Promise.all(sources.map((s) => Deno.readTextFile(join(ROOT, s))))).join("\0"),
      ),
    ),
  );
  const tag = Array.from(hash.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const dir = join(defaultCacheDir(), "egosf-standin", tag);
  const lib = join(dir, "build", "libegosf.so");
  try {
    await Deno.stat(lib);
    return lib;
  } catch {
    await sh(["bash", join(ROOT, "native/ego/standin/build.sh"), join(dir, "sdk")]);
    await sh([
      "bash",
      join(ROOT, "scripts/build-libegosf.sh"),
      join(dir, "sdk"),
      join(dir, "build"),
    ]);
    return lib;
  }
}

/** Writes a stand-in conf dir: the lab user, consumer, resource group and hosts. */
export async function writeStandinConf(
  dir: string,
  hosts: { name: string; slots: number }[],
  o: { delayMs?: number; hostsPerMsg?: number } = {},
): Promise<void> {
  await Deno.writeTextFile(
    join(dir, "standin.conf"),
    [
      `user ${EGO_USER} ${EGO_PASSWORD}`,
      `consumer ${EGO_CONSUMER}`,
      `resourcegroup ${EGO_RESOURCE_GROUP}`,
      ...hosts.map((h) => `host ${h.name} ${h.slots}`),
      `delay_ms ${o.delayMs ?? 20}`,
      `hosts_per_msg ${o.hostsPerMsg ?? 1}`,
      "",
    ].join("\n"),
  );
}

/** Makes the stand-in EGO master take `host` back (RESOURCE_RECLAIM at its next select). */
export async function standinReclaim(dir: string, host: string): Promise<void> {
  await Deno.writeTextFile(join(dir, "reclaim.tmp"), `${host}\n`);
  await Deno.rename(join(dir, "reclaim.tmp"), join(dir, "reclaim"));
}

async function sh(cmd: string[]): Promise<void> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(
      `Cannot build the EGO stand-in: ${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

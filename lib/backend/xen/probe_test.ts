import assert from "node:assert/strict";
import { memoryCapsFromXlInfo, probeXen } from "./probe.ts";

Deno.test("probeXen() says why it cannot run, case by case", () => {
  const missing = () => {
    throw new Error("ENOENT");
  };
  let a = probeXen(missing);
  assert.ok(!a.available && /not a Xen dom0/.test(a.reason));
  a = probeXen(() => "");
  assert.ok(!a.available && /domU, not dom0/.test(a.reason));
  a = probeXen(() => "control_d\n", (lib) => !lib.startsWith("libxenctrl"));
  assert.ok(!a.available && /libxenctrl\.so\.4\.17/.test(a.reason));
  a = probeXen(() => "control_d\n", () => true, () => false);
  assert.ok(!a.available && /xl/.test(a.reason));
  a = probeXen(() => "control_d\n", () => true, () => true);
  assert.ok(a.available);
});

Deno.test("memoryCapsFromXlInfo(): Debian's 4.17 has no shadow, so clones are eager", () => {
  const c = memoryCapsFromXlInfo("xen_version : 4.17.7\nvirt_caps : pv hvm hap gnttab-v1\n");
  assert.equal(c.logDirty, false);
  assert.equal(c.mode, "eager");
  assert.equal(memoryCapsFromXlInfo("virt_caps : pv hvm hap shadow\n").logDirty, true);
});

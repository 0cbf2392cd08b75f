import assert from "node:assert/strict";
import { probeXen } from "../../lib/backend/xen/probe.ts";

Deno.test("xen bindings work in a dom0 (skipped elsewhere, saying why)", async () => {
  const p = probeXen();
  if (!p.available) {
    console.warn(
      `SKIPPED: ${p.reason} — the lab (deno task lab:xen) runs these calls in real dom0s`,
    );
    return;
  }
  const { XenCtrl } = await import("./xenctrl.ts");
  const { XenStore } = await import("./xenstore.ts");
  const xc = new XenCtrl();
  const dom0 = xc.domain(0);
  assert.ok(dom0 && !dom0.hvm);
  xc.close();
  const xs = new XenStore();
  assert.equal(xs.domainPath(0), "/local/domain/0");
  xs.close();
});

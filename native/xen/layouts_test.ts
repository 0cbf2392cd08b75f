import assert from "node:assert/strict";
import {
  DOMAININFO,
  readDomainInfo,
  readVcpuSummary,
  USER_REGS,
  VCPU_CONTEXT,
  XSD_SOCKMSG,
} from "./layouts.ts";
import { XenCallError } from "./check.ts";
import { checkBool, checkInt, checkPointer } from "./check.ts";

Deno.test("layouts: sizes are the Xen 4.17 headers' (no Xen needed)", () => {
  assert.equal(DOMAININFO.size, 112); // struct xen_domctl_getdomaininfo
  assert.equal(VCPU_CONTEXT.size, 5168); // struct vcpu_guest_context_x86_64
  assert.equal(USER_REGS.size, 200); // struct cpu_user_regs_x86_64
  assert.equal(XSD_SOCKMSG.size, 16); // struct xsd_sockmsg
  assert.equal(VCPU_CONTEXT.userRegs + USER_REGS.size, 720); // trap_ctxt follows user_regs
  assert.equal(VCPU_CONTEXT.gdtFrames + 16 * 8, VCPU_CONTEXT.gdtEnts);
});

Deno.test("layouts: offsets match offsetof() in the installed headers", async (t) => {
  const header = "/usr/include/xenctrl.h";
  const cc = await Deno.stat("/usr/bin/gcc").then(() => true, () => false);
  const xen = await Deno.stat(header).then(() => true, () => false);
  if (!cc || !xen) {
    console.warn(`SKIPPED: needs gcc and libxen-dev (${header}) to compile the offsetof() probe`);
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/probe.c`,
      `#include <stdio.h>
#include <stddef.h>
#include <xenctrl.h>
#include <xen/io/xs_wire.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\\n",
    sizeof(struct xen_domctl_getdomaininfo), offsetof(struct xen_domctl_getdomaininfo, flags),
    offsetof(struct xen_domctl_getdomaininfo, max_pages), offsetof(struct xen_domctl_getdomaininfo, nr_online_vcpus),
    offsetof(struct xen_domctl_getdomaininfo, handle),
    sizeof(vcpu_guest_context_any_t), offsetof(struct vcpu_guest_context_x86_64, user_regs),
    offsetof(struct vcpu_guest_context_x86_64, ctrlreg), offsetof(struct vcpu_guest_context_x86_64, kernel_sp),
    sizeof(struct cpu_user_regs_x86_64), sizeof(struct xsd_sockmsg));
  return 0;
}
`,
    );
    const build = await new Deno.Command("gcc", { args: ["-o", `${dir}/probe`, `${dir}/probe.c`] })
      .output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const out = await new Deno.Command(`${dir}/probe`).output();
    const got = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
    await t.step("every value", () => {
      assert.deepEqual(got, [
        DOMAININFO.size,
        DOMAININFO.flags,
        DOMAININFO.maxPages,
        DOMAININFO.nrOnlineVcpus,
        DOMAININFO.handle,
        VCPU_CONTEXT.size,
        VCPU_CONTEXT.userRegs,
        VCPU_CONTEXT.ctrlreg,
        VCPU_CONTEXT.kernelSp,
        USER_REGS.size,
        XSD_SOCKMSG.size,
      ]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readDomainInfo() decodes flags, shutdown reason and counts", () => {
  const b = new Uint8Array(112);
  const v = new DataView(b.buffer);
  v.setUint16(0, 7, true);
  v.setUint32(4, (1 << 2) | (1 << 3) | (2 << 16), true); // shutdown + paused, reason suspend
  v.setBigUint64(8, 32768n, true);
  v.setBigUint64(16, 33024n, true);
  v.setUint32(64, 2, true);
  b[76] = 0xab;
  const d = readDomainInfo(b);
  assert.equal(d.domid, 7);
  assert.equal(d.paused, true);
  assert.equal(d.shutdownReason, 2);
  assert.equal(d.totPages, 32768);
  assert.equal(d.maxPages, 33024);
  assert.equal(d.onlineVcpus, 2);
  assert.ok(d.handle.startsWith("ab"));
  assert.throws(() => readDomainInfo(new Uint8Array(100)), RangeError);
});

Deno.test("readVcpuSummary() reads rip, rsp and cr3 where the header puts them", () => {
  const b = new Uint8Array(5168);
  const v = new DataView(b.buffer);
  v.setBigUint64(520 + 128, 0xffffffff81000000n, true);
  v.setBigUint64(520 + 152, 0xffffc90000001000n, true);
  v.setBigUint64(4984 + 24, 0x1234000n, true);
  const s = readVcpuSummary(b);
  assert.equal(s.rip, 0xffffffff81000000n);
  assert.equal(s.rsp, 0xffffc90000001000n);
  assert.equal(s.cr3, 0x1234000n);
});

Deno.test("the checker names the operation and the errno", () => {
  assert.equal(checkInt("xc_domain_pause(dom 3)", 0), 0);
  checkBool("xs_write(x)", true);
  assert.throws(() => checkInt("xc_domain_pause(dom 3)", -1), (e: unknown) => {
    assert.ok(e instanceof XenCallError);
    assert.match((e as Error).message, /^Cannot xc_domain_pause\(dom 3\): /);
    return true;
  });
  assert.throws(() => checkBool("xs_write(/x)", false), /XenCallError: Cannot xs_write\(\/x\): /);
  assert.throws(() => checkPointer("xs_open", null), /XenCallError: Cannot xs_open: /);
});

/**
 * libxenctrl (Xen 4.17): domain info, pause/unpause, vCPU contexts. Opened
 * lazily so importing this module on a non-Xen host costs nothing.
 *
 * @module
 */
import { checkInt, checkPointer } from "./check.ts";
import { DOMAININFO, type DomainInfo, readDomainInfo, VCPU_CONTEXT } from "./layouts.ts";

const symbols = {
  // xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger, unsigned open_flags)
  xc_interface_open: { parameters: ["pointer", "pointer", "u32"], result: "pointer" },
  // int xc_interface_close(xc_interface *xch)
  xc_interface_close: { parameters: ["pointer"], result: "i32" },
  // int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains, xc_domaininfo_t *info)
  xc_domain_getinfolist: { parameters: ["pointer", "u32", "u32", "buffer"], result: "i32" },
  // int xc_domain_pause(xc_interface *xch, uint32_t domid)
  xc_domain_pause: { parameters: ["pointer", "u32"], result: "i32" },
  // int xc_domain_unpause(xc_interface *xch, uint32_t domid)
  xc_domain_unpause: { parameters: ["pointer", "u32"], result: "i32" },
  // int xc_vcpu_getcontext(xc_interface *xch, uint32_t domid, uint32_t vcpu, vcpu_guest_context_any_t *ctxt)
  xc_vcpu_getcontext: { parameters: ["pointer", "u32", "u32", "buffer"], result: "i32" },
  // int xc_vcpu_setcontext(xc_interface *xch, uint32_t domid, uint32_t vcpu, vcpu_guest_context_any_t *ctxt)
  xc_vcpu_setcontext: { parameters: ["pointer", "u32", "u32", "buffer"], result: "i32" },
  // int xc_domain_maximum_gpfn(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns)
  xc_domain_maximum_gpfn: { parameters: ["pointer", "u32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export const LIBXENCTRL = "libxenctrl.so.4.17";

/** One open xc_interface handle. */
export class XenCtrl {
  #lib: Deno.DynamicLibrary<typeof symbols>;
  #xch: Deno.PointerObject;

  constructor(path = LIBXENCTRL) {
    this.#lib = Deno.dlopen(path, symbols);
    // Null loggers: libxenctrl then logs to stderr itself; the handle lives until close().
    this.#xch = checkPointer(
      "xc_interface_open",
      this.#lib.symbols.xc_interface_open(null, null, 0),
    );
  }

  /** Up to `max` domains from `first`. */
  domains(first = 0, max = 256): DomainInfo[] {
    // max * 112 bytes; the buffer outlives the synchronous call.
    const buf = new Uint8Array(max * DOMAININFO.size);
    const n = checkInt(
      `xc_domain_getinfolist(from dom ${first})`,
      this.#lib.symbols.xc_domain_getinfolist(this.#xch, first, max, buf),
    );
    const out: DomainInfo[] = [];
    for (let i = 0; i < n; i++) {
      out.push(readDomainInfo(buf.subarray(i * DOMAININFO.size, (i + 1) * DOMAININFO.size)));
    }
    return out;
  }

  /** One domain's info, or undefined when it does not exist. */
  domain(domid: number): DomainInfo | undefined {
    const [d] = this.domains(domid, 1);
    return d?.domid === domid ? d : undefined;
  }

  pause(domid: number): void {
    checkInt(`xc_domain_pause(dom ${domid})`, this.#lib.symbols.xc_domain_pause(this.#xch, domid));
  }

  unpause(domid: number): void {
    checkInt(
      `xc_domain_unpause(dom ${domid})`,
      this.#lib.symbols.xc_domain_unpause(this.#xch, domid),
    );
  }

  /** The raw vcpu_guest_context_x86_64 (5168 bytes) of a PV guest's vCPU. */
  vcpuContext(domid: number, vcpu: number): Uint8Array {
    const buf = new Uint8Array(VCPU_CONTEXT.size);
    checkInt(
      `xc_vcpu_getcontext(dom ${domid}, vcpu ${vcpu})`,
      this.#lib.symbols.xc_vcpu_getcontext(this.#xch, domid, vcpu, buf),
    );
    return buf;
  }

  setVcpuContext(domid: number, vcpu: number, context: Uint8Array): void {
    if (context.length !== VCPU_CONTEXT.size) {
      throw new RangeError(`Cannot set vCPU context: ${context.length} bytes, want 5168`);
    }
    checkInt(
      `xc_vcpu_setcontext(dom ${domid}, vcpu ${vcpu})`,
      this.#lib.symbols.xc_vcpu_setcontext(this.#xch, domid, vcpu, context),
    );
  }

  /** The highest guest pfn (the p2m size is this + 1). */
  maximumGpfn(domid: number): bigint {
    const out = new BigUint64Array(1);
    checkInt(
      `xc_domain_maximum_gpfn(dom ${domid})`,
      this.#lib.symbols.xc_domain_maximum_gpfn(this.#xch, domid, out),
    );
    return out[0];
  }

  close(): void {
    this.#lib.symbols.xc_interface_close(this.#xch);
    this.#lib.close();
  }
}

/**
 * Xen 4.17 struct layouts the bindings read and write, copied from the public
 * headers (Debian libxen-dev 4.17) with the size each must have. Offsets were
 * checked with offsetof() against those headers; layouts_test.ts asserts the
 * sizes and field positions without needing Xen.
 *
 * @module
 */

/**
 * xen/include/public/domctl.h: struct xen_domctl_getdomaininfo (= xc_domaininfo_t), 112 bytes.
 * domain u16 @0, flags u32 @4, tot_pages @8, max_pages @16, outstanding @24, shr @32,
 * paged @40, shared_info_frame @48, cpu_time @56 (u64 each), nr_online_vcpus u32 @64,
 * max_vcpu_id u32 @68, ssidref u32 @72, handle u8[16] @76, cpupool u32 @92,
 * gpaddr_bits u8 @96, arch_config (struct xen_arch_domainconfig, 8 bytes on x86) @104.
 */
export const DOMAININFO = {
  size: 112,
  domain: 0,
  flags: 4,
  totPages: 8,
  maxPages: 16,
  sharedInfoFrame: 48,
  cpuTime: 56,
  nrOnlineVcpus: 64,
  maxVcpuId: 68,
  handle: 76,
} as const;

/** domctl.h: XEN_DOMINF_* flag bits and the shutdown code field. */
export const DOMINF = {
  dying: 1 << 0,
  hvmGuest: 1 << 1,
  shutdown: 1 << 2,
  paused: 1 << 3,
  blocked: 1 << 4,
  running: 1 << 5,
  shutdownShift: 16,
  shutdownMask: 255,
} as const;

/** sched.h: SHUTDOWN_* reasons (the code in XEN_DOMINF_shutdown). */
export const SHUTDOWN = { poweroff: 0, reboot: 1, suspend: 2, crash: 3, watchdog: 4 } as const;

/**
 * xen/include/public/arch-x86/xen-x86_64.h + arch-x86/xen.h:
 * struct vcpu_guest_context_x86_64 (= vcpu_guest_context_any_t on x86_64), 5168 bytes.
 * fpu_ctxt 512 @0, flags u64 @512, user_regs (struct cpu_user_regs_x86_64, 200) @520,
 * trap_ctxt[256] @720, ldt_base @4816, ldt_ents @4824, gdt_frames[16] @4832,
 * gdt_ents @4960, kernel_ss @4968, kernel_sp @4976, ctrlreg[8] @4984, debugreg[8] @5048,
 * event_callback_eip @5112, failsafe_callback_eip @5120, syscall_callback_eip @5128,
 * vm_assist @5136, fs_base @5144, gs_base_kernel @5152, gs_base_user @5160.
 */
export const VCPU_CONTEXT = {
  size: 5168,
  flags: 512,
  userRegs: 520,
  gdtFrames: 4832,
  gdtEnts: 4960,
  kernelSs: 4968,
  kernelSp: 4976,
  ctrlreg: 4984,
  fsBase: 5144,
} as const;

/** arch-x86/xen-x86_64.h: struct cpu_user_regs_x86_64, 200 bytes: r15 @0 … rax @80, rip @128, cs @136, rflags @144, rsp @152, ss @160. */
export const USER_REGS = { size: 200, rax: 80, rip: 128, cs: 136, rflags: 144, rsp: 152 } as const;

/** io/xs_wire.h: struct xsd_sockmsg { u32 type, req_id, tx_id, len }, 16 bytes. */
export const XSD_SOCKMSG = { size: 16, type: 0, reqId: 4, txId: 8, len: 12 } as const;
/** io/xs_wire.h: XENSTORE_PAYLOAD_MAX. */
export const XENSTORE_PAYLOAD_MAX = 4096;

/** xen_pfn_t on x86_64 is u64 (arch-x86/xen.h); xs_transaction_t is u32 (xenstore.h). */
export const XEN_PFN_BYTES = 8;
export const XS_TRANSACTION_BYTES = 4;

/** What xc_domain_getinfolist tells about one domain. */
export interface DomainInfo {
  domid: number;
  flags: number;
  dying: boolean;
  paused: boolean;
  running: boolean;
  blocked: boolean;
  hvm: boolean;
  /** Set when the guest shut down; then the SHUTDOWN_* reason. */
  shutdownReason?: number;
  totPages: number;
  maxPages: number;
  sharedInfoFrame: bigint;
  cpuTimeNs: bigint;
  onlineVcpus: number;
  maxVcpuId: number;
  /** The domain handle (UUID) as 32 hex digits. */
  handle: string;
}

/** Parses one xen_domctl_getdomaininfo record from `b` (exactly DOMAININFO.size bytes). */
export function readDomainInfo(b: Uint8Array): DomainInfo {
  if (b.length !== DOMAININFO.size) {
    throw new RangeError(`Cannot read domain info: ${b.length} bytes, want ${DOMAININFO.size}`);
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const flags = v.getUint32(DOMAININFO.flags, true);
  const shut = (flags & DOMINF.shutdown) !== 0;
  return {
    domid: v.getUint16(DOMAININFO.domain, true),
    flags,
    dying: (flags & DOMINF.dying) !== 0,
    paused: (flags & DOMINF.paused) !== 0,
    running: (flags & DOMINF.running) !== 0,
    blocked: (flags & DOMINF.blocked) !== 0,
    hvm: (flags & DOMINF.hvmGuest) !== 0,
    ...(shut ? { shutdownReason: (flags >>> DOMINF.shutdownShift) & DOMINF.shutdownMask } : {}),
    totPages: Number(v.getBigUint64(DOMAININFO.totPages, true)),
    maxPages: Number(v.getBigUint64(DOMAININFO.maxPages, true)),
    sharedInfoFrame: v.getBigUint64(DOMAININFO.sharedInfoFrame, true),
    cpuTimeNs: v.getBigUint64(DOMAININFO.cpuTime, true),
    onlineVcpus: v.getUint32(DOMAININFO.nrOnlineVcpus, true),
    maxVcpuId: v.getUint32(DOMAININFO.maxVcpuId, true),
    handle: [...b.subarray(DOMAININFO.handle, DOMAININFO.handle + 16)]
      .map((x) => x.toString(16).padStart(2, "0")).join(""),
  };
}

/** The few fields of a PV vCPU context the backend reports and checks. */
export interface VcpuSummary {
  flags: bigint;
  rip: bigint;
  rsp: bigint;
  cr3: bigint;
  kernelSp: bigint;
}

/** Reads the summary fields of a vcpu_guest_context_x86_64 (VCPU_CONTEXT.size bytes). */
export function readVcpuSummary(b: Uint8Array): VcpuSummary {
  if (b.length !== VCPU_CONTEXT.size) {
    throw new RangeError(`Cannot read vCPU context: ${b.length} bytes, want ${VCPU_CONTEXT.size}`);
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    flags: v.getBigUint64(VCPU_CONTEXT.flags, true),
    rip: v.getBigUint64(VCPU_CONTEXT.userRegs + USER_REGS.rip, true),
    rsp: v.getBigUint64(VCPU_CONTEXT.userRegs + USER_REGS.rsp, true),
    cr3: v.getBigUint64(VCPU_CONTEXT.ctrlreg + 3 * 8, true),
    kernelSp: v.getBigUint64(VCPU_CONTEXT.kernelSp, true),
  };
}

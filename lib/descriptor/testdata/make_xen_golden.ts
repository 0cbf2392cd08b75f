// GOLDEN FILE GENERATOR for the xen body: run once per format version, then check the output in.
//   deno run --allow-write lib/descriptor/testdata/make_xen_golden.ts
// xen_format_test.ts compares encodeDescriptor(goldenXenDescriptor()) with xen_v1.bin byte for
// byte, so regenerating it hides a layout change; a new version gets a new file instead.
import { encodeDescriptor, type XenDescriptor } from "../format.ts";
import { PAGE_PRESENT, PAGE_ZERO } from "../page_map.ts";

export const XEN_GOLDEN_V1_URL: URL = new URL("./xen_v1.bin", import.meta.url);

/** A small xen descriptor that uses every field: 24 pages of 4 KiB. */
export function goldenXenDescriptor(): XenDescriptor {
  const pageMap = new Uint8Array(24);
  pageMap.fill(PAGE_PRESENT, 0, 6);
  pageMap.fill(PAGE_ZERO, 6, 20);
  pageMap.fill(PAGE_PRESENT, 20, 24);
  const pageTypes = new Uint8Array(24);
  pageTypes[1] = 0x4; // L4TAB
  pageTypes[2] = 0x3;
  pageTypes[3] = 0x2;
  pageTypes[4] = 0x1;
  pageTypes[23] = 0xf; // XTAB: no frame
  return {
    kind: "xen",
    forkId: sequence(16, 0x30),
    forkKey: sequence(32, 0xb0),
    memoryServer: "10.77.0.1:7071",
    parentVm: "vm-xen-parent",
    ticket: "t-xen-7",
    clones: 4,
    pageSize: 4096,
    pageMap,
    inlinePages: [],
    xen: {
      guestWidth: 8,
      ptLevels: 4,
      vcpus: 1,
      maxMemoryBytes: 128n << 20n,
      xenVersion: "4.17",
      pageTypes,
      records: [
        { stream: 1, type: 2, body: sequence(8, 0x08) }, // X86_PV_INFO
        { stream: 1, type: 3, body: sequence(16, 0x40) }, // X86_PV_P2M_FRAMES
        { stream: 1, type: 4, body: sequence(24, 0x60) }, // X86_PV_VCPU_BASIC
        { stream: 2, type: 2, body: sequence(5, 0x70) }, // libxl EMULATOR_XENSTORE_DATA
      ],
      config: '{"c_info":{"type":"pv","name":"sfparent"},"b_info":{"max_memkb":131072}}',
      xenstore: [["data/snowflock/request", "1 ticket 4"], ["name", "sfparent"]],
    },
  };
}

function sequence(length: number, first: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (first + i) & 0xff);
}

if (import.meta.main) {
  await Deno.writeFile(XEN_GOLDEN_V1_URL, encodeDescriptor(goldenXenDescriptor()));
}

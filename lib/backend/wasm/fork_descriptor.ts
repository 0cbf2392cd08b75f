/**
 * Converts between the engine's fork point and the wasm body of a VM
 * descriptor (lib/descriptor/FORMAT.md): what crosses hosts when a VM forks.
 */
import {
  type Descriptor,
  type DescriptorCommon,
  PAGE_PRESENT,
  PAGE_UNTOUCHED,
  PAGE_ZERO,
  type WasiFd,
  type WasmGlobal,
} from "../../descriptor/mod.ts";
import { OS_PAGE } from "../../../native/libc.ts";
import type { ForkPointState, GlobalValue } from "./fork_point.ts";
import { WASM_PAGE } from "./guest_abi.ts";
import type { PreparedModule } from "./prepare.ts";
import type { WasiFdState } from "./wasi.ts";

/** Memory-on-demand works in OS pages, not 64 KiB wasm pages. */
export { OS_PAGE };

// The descriptor's fd flags: WASI fdflags in the low 16 bits, access above.
const FD_READABLE = 1 << 16;
const FD_WRITABLE = 1 << 17;

export interface ForkIdentity {
  forkId: Uint8Array;
  forkKey: Uint8Array;
  memoryServer: string;
  parentVm: string;
  ticket: string;
  clones: number;
}

/**
 * Marks every 4 KiB page of `memory` at fork time: all-zero pages and pages
 * above the heap top need no transfer.
 */
export function pageMapOf(memory: Uint8Array, heapTop: number): Uint8Array {
  const pages = memory.byteLength / OS_PAGE;
  const map = new Uint8Array(pages);
  const words = new BigUint64Array(memory.buffer, memory.byteOffset, memory.byteLength / 8);
  const firstUntouched = Math.ceil(heapTop / OS_PAGE);
  for (let p = 0; p < pages; p++) {
    if (p >= firstUntouched) {
      map[p] = PAGE_UNTOUCHED;
      continue;
    }
    let zero = true;
    for (let w = p * (OS_PAGE / 8), end = w + OS_PAGE / 8; w < end; w++) {
      if (words[w] !== 0n) {
        zero = false;
        break;
      }
    }
    map[p] = zero ? PAGE_ZERO : PAGE_PRESENT;
  }
  return map;
}

export function toDescriptor(
  id: ForkIdentity,
  module: PreparedModule,
  moduleHash: string,
  state: ForkPointState,
  pageMap: Uint8Array,
): Descriptor {
  const common: DescriptorCommon = {
    ...id,
    pageSize: OS_PAGE,
    pageMap,
    inlinePages: [],
  };
  const types = new Map(module.globals.map((g) => [g.name, g.type]));
  return {
    kind: "wasm",
    ...common,
    wasm: {
      moduleHash: fromHex(moduleHash),
      memory: { pages: state.memoryPages, maxPages: module.maxPages },
      globals: state.globals.map((g) => toWasmGlobal(g, types.get(g.name) ?? "i32")),
      asyncifyData: state.asyncifyData,
      heapTop: Math.min(state.heapTop, state.memoryPages * WASM_PAGE),
      wasi: {
        args: state.wasi.args,
        env: state.wasi.env,
        fds: state.wasi.fds.map(toWasiFd),
      },
    },
  };
}

/** The fork point a clone resumes from. */
export function fromDescriptor(d: Descriptor, kind: ForkPointState["kind"]): ForkPointState {
  return {
    kind,
    moduleHash: toHex(d.wasm.moduleHash),
    globals: d.wasm.globals.map((g) => ({ name: g.name, value: g.value })),
    asyncifyData: d.wasm.asyncifyData,
    wasi: {
      args: d.wasm.wasi.args,
      env: d.wasm.wasi.env,
      fds: d.wasm.wasi.fds.map((f): WasiFdState => ({
        fd: f.fd,
        kind: f.kind,
        guestPath: f.path,
        position: Number(f.position),
        flags: f.flags & 0xffff,
        readable: (f.flags & FD_READABLE) !== 0,
        writable: (f.flags & FD_WRITABLE) !== 0,
      })),
    },
    memoryPages: d.wasm.memory.pages,
    heapTop: d.wasm.heapTop,
    stackPointer: null,
  };
}

function toWasmGlobal(g: GlobalValue, type: WasmGlobal["type"]): WasmGlobal {
  if (type === "i64") return { name: g.name, type, value: BigInt(g.value) };
  return { name: g.name, type, value: Number(g.value) };
}

function toWasiFd(f: WasiFdState): WasiFd {
  return {
    fd: f.fd,
    kind: f.kind,
    path: f.guestPath,
    position: BigInt(f.position),
    flags: (f.flags & 0xffff) | (f.readable ? FD_READABLE : 0) | (f.writable ? FD_WRITABLE : 0),
  };
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

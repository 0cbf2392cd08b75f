/**
 * Turns a WASI command into a forkable module with binaryen:
 *
 * - only known `wasi_snapshot_preview1` and `snowflock` function imports pass;
 * - every mutable global is exported as `__sf_global_<index>` so a fork can
 *   read and install them;
 * - the memory becomes an imported shared memory (`env.memory`), so the host
 *   owns it: userfaultfd can register it for lazy clone memory and
 *   write-protect the parent;
 * - active data segments move into the metadata: a fresh VM gets them written
 *   by the host, a clone (whose memory is inherited) never re-applies them;
 * - every loop head and recursive function entry checks a word of a second
 *   imported shared memory (`snowflock.interrupt`), so the host can stop a
 *   computing guest (interrupt.ts);
 * - asyncify instruments only the call paths to `snowflock.sf_clone` and
 *   `snowflock.sf_checkpoint_parent`. Its unwound stack lives in a private
 *   secondary memory (`__sf_asyncify_memory`, exported) rather than in guest
 *   memory, so forking never takes pages from the guest's heap (wasi-libc's
 *   malloc claims everything up to `memory.size`) and the guest memory a clone
 *   inherits is exactly the parent's;
 * - a module may carry its own preparation settings and a read-only file
 *   image (custom sections, module_sections.ts): the image is unpacked once
 *   per host and listed in `preopens`, so an interpreter and its standard
 *   library run on any agent without agent-side configuration.
 *
 * @module
 */
import binaryen from "binaryen";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ASYNCIFY_MEMORY_EXPORT,
  FORKING_IMPORTS,
  GLOBAL_EXPORT_PREFIX,
  INTERRUPT_IMPORT,
  MEMORY_IMPORT,
  SNOWFLOCK_IMPORTS,
  SNOWFLOCK_MODULE,
  WASM_PAGE,
} from "./guest_abi.ts";
import { GuestError } from "./errors.ts";
import { isComplete, materializeImage } from "./image.ts";
import { addInterruptChecks } from "./interrupt.ts";
import { declareInterruptPage } from "./interrupt_page.ts";
import { type ModuleSettings, splitModuleSections } from "./module_sections.ts";
import type { Preopen } from "./wasi_fds.ts";
import { WASI_MODULE, WASI_PREVIEW1_FUNCTIONS } from "./wasi_abi.ts";

/** Bytes the host writes at `offset` before a fresh VM starts. */
export interface DataSegment {
  offset: number;
  bytes: Uint8Array;
}

export type ValueType = "i32" | "i64" | "f32" | "f64";

/** A mutable guest global, exported under `name`. */
export interface GlobalExport {
  name: string;
  /** The global's name in the guest (e.g. `__stack_pointer`), if it has one. */
  internalName: string;
  type: ValueType;
}

/** A prepared module and what the host needs to run and fork it. */
export interface PreparedModule {
  /** The prepared WebAssembly binary. */
  bytes: Uint8Array<ArrayBuffer>;
  /** sha256 (hex) of `bytes`: the module hash forks and descriptors refer to. */
  hash: string;
  /** sha256 (hex) of the module given to {@link prepareModule}. */
  sourceHash: string;
  initialPages: number;
  maxPages: number;
  dataSegments: DataSegment[];
  globals: GlobalExport[];
  /** Export name of the global holding the C stack pointer, if found. */
  stackPointer: string | null;
  /** Value of `__heap_base` if the guest kept that global, else null. */
  heapBase: number | null;
  /** Size of the asyncify memory that holds the unwound stack of a fork. */
  asyncifyDataBytes: number;
  /**
   * Read-only directories the module brings (its `snowflock.image` section,
   * unpacked on this host): every VM of the module gets them after the
   * preopens its host gives it.
   */
  preopens?: Preopen[];
}

export interface PrepareOptions {
  /** Maximum memory pages when the guest declares none (shared memory needs one). */
  maxPages?: number;
  /** Pages of asyncify memory for the unwound stack (default 1 = 64 KiB). */
  asyncifyPages?: number;
  /**
   * Assume indirect calls never reach a forking import: much less
   * instrumentation for big interpreters, but a fork reached through a function
   * pointer then traps.
   */
  asyncifyIgnoreIndirect?: boolean;
  /**
   * Functions asyncify instruments besides those that reach a forking import
   * by direct calls; their indirect calls are instrumented even with
   * `asyncifyIgnoreIndirect` (binaryen's asyncify-addlist). With it, an
   * interpreter instruments only the one path from `_start` through its eval
   * loop to the function that calls `sf_clone`.
   */
  asyncifyAddList?: string[];
  /**
   * What binaryen optimizes after asyncify: the whole module, or only the
   * add-listed functions and `asyncifyOptimizeList` (targeted
   * instrumentation changes few functions; the rest stays the compiler's
   * output). Default: "listed" when either list is given with
   * `asyncifyIgnoreIndirect`, else "module". For a big interpreter it is
   * seconds one way and minutes the other.
   */
  asyncifyOptimize?: "module" | "listed";
  /** More functions to optimize after asyncify with "listed". */
  asyncifyOptimizeList?: string[];
  /** Where a module's image is unpacked (default: the OS temp dir). */
  imageDir?: string;
}

/** Default maximum: the whole 32-bit address space. */
export const DEFAULT_MAX_PAGES = 65536;

// Features V8 runs and asyncify handles; a guest needing more fails validation.
const GUEST_FEATURES = binaryen.Features.MutableGlobals | binaryen.Features.Atomics |
  binaryen.Features.NontrappingFPToInt | binaryen.Features.SIMD128 |
  binaryen.Features.BulkMemory | binaryen.Features.BulkMemoryOpt | binaryen.Features.SignExt |
  binaryen.Features.Multivalue | binaryen.Features.ReferenceTypes |
  binaryen.Features.ExtendedConst | binaryen.Features.MultiMemory |
  binaryen.Features.CallIndirectOverlong;

// Bumped whenever the pipeline's output changes, so cached entries are remade.
const PIPELINE_VERSION = 3;

// Internal name of the interrupt memory; binaryen names a guest's own memory "0"
// or after its export.
const INTERRUPT_MEMORY = "__sf_interrupt";

// binaryen.js has these at run time but its typings lack them.
interface DataSegmentInfo {
  name: string;
  offset: number | null;
  data: ArrayBuffer;
  passive: boolean;
}
interface FunctionOptimizer {
  optimizeFunction(name: string): void;
}
interface BinaryenModuleExtras {
  getNumDataSegments(): number;
  getDataSegmentInfo(segment: number): DataSegmentInfo;
}

/**
 * Prepares a WASI command for the wasm backend (see the module documentation).
 *
 * @throws {GuestError} if the bytes are not a valid module or it imports
 * something the backend does not provide.
 */
export function prepareModule(bytes: Uint8Array, options: PrepareOptions = {}): PreparedModule {
  checkIsWasm(bytes);
  const split = splitModuleSections(bytes);
  options = { ...optionsOf(split.settings), ...definedOnly(options) };
  const preopens: Preopen[] = [];
  if (split.image && split.settings?.image) {
    const { guestPath, sha256: imageHash } = split.settings.image;
    const dir = options.imageDir ?? join(tmpdir(), "snowflock-images");
    preopens.push({
      guestPath,
      hostPath: materializeImage(split.image, imageHash, dir),
      readOnly: true,
    });
  }
  let module: binaryen.Module;
  try {
    module = binaryen.readBinary(split.module);
  } catch (error) {
    throw new GuestError("Cannot load guest: binaryen cannot read the module", { cause: error });
  }
  try {
    module.setFeatures(GUEST_FEATURES);
    checkShape(module);
    checkImports(module);
    const globals = exportMutableGlobals(module);
    const { initialPages, maxPages, dataSegments } = importSharedMemory(module, options);
    const heapBase = findHeapBase(module);
    module.addMemoryImport(INTERRUPT_MEMORY, INTERRUPT_IMPORT.module, INTERRUPT_IMPORT.name, true);
    addInterruptChecks(module, INTERRUPT_MEMORY);
    const asyncifyPages = options.asyncifyPages ?? 1;
    const addList = options.asyncifyAddList ?? [];
    const ignoreIndirect = options.asyncifyIgnoreIndirect ?? false;
    instrumentForks(module, {
      asyncifyPages,
      ignoreIndirect,
      addList,
      optimize: options.asyncifyOptimize ??
        ((addList.length > 0 || (options.asyncifyOptimizeList ?? []).length > 0) && ignoreIndirect
          ? "listed"
          : "module"),
      optimizeList: options.asyncifyOptimizeList ?? [],
    });
    if (!module.validate()) {
      throw new GuestError("Cannot load guest: prepared module does not validate");
    }
    const prepared = declareInterruptPage(module.emitBinary());
    return {
      bytes: prepared,
      hash: sha256(prepared),
      sourceHash: sha256(bytes),
      initialPages,
      maxPages,
      dataSegments,
      globals,
      stackPointer: globals.find((g) => g.internalName === "__stack_pointer")?.name ??
        globals.find((g) => g.type === "i32")?.name ?? null,
      heapBase,
      asyncifyDataBytes: asyncifyPages * WASM_PAGE,
      preopens,
    };
  } finally {
    module.dispose();
  }
}

/**
 * {@link prepareModule} through a cache directory keyed by the sha256 of the
 * input and the options: a hit does no binaryen work.
 */
export async function prepareModuleCached(
  bytes: Uint8Array,
  cacheDir: string,
  options: PrepareOptions = {},
): Promise<PreparedModule> {
  const hit = await readPreparedCache(bytes, cacheDir, options);
  if (hit) return hit;
  const prepared = prepareModule(bytes, { imageDir: join(cacheDir, "images"), ...options });
  await writePreparedCache(prepared, cacheKey(bytes, options), cacheDir);
  return prepared;
}

/** The cached preparation of `bytes` with `options`, or null if there is none. */
export async function readPreparedCache(
  bytes: Uint8Array,
  cacheDir: string,
  options: PrepareOptions = {},
): Promise<PreparedModule | null> {
  const base = join(cacheDir, cacheKey(bytes, options));
  let meta: CachedMeta;
  let wasm: Uint8Array<ArrayBuffer>;
  let data: Uint8Array;
  try {
    meta = JSON.parse(await Deno.readTextFile(`${base}.json`));
    wasm = await Deno.readFile(`${base}.wasm`);
    data = await Deno.readFile(`${base}.data`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  // A torn or foreign entry is a miss, not an error: it is simply remade.
  if (meta.version !== PIPELINE_VERSION || sha256(wasm) !== meta.module.hash) return null;
  let at = 0;
  const dataSegments = meta.segments.map(({ offset, length }) => {
    const segment = { offset, bytes: data.slice(at, at + length) };
    at += length;
    return segment;
  });
  if (at !== data.length) return null;
  // An image directory someone removed is remade with the module.
  if ((meta.module.preopens ?? []).some((p) => !isComplete(p.hostPath))) return null;
  return { ...meta.module, bytes: wasm, dataSegments };
}

interface CachedMeta {
  version: number;
  module: Omit<PreparedModule, "bytes" | "dataSegments">;
  segments: { offset: number; length: number }[];
}

async function writePreparedCache(
  prepared: PreparedModule,
  key: string,
  cacheDir: string,
): Promise<void> {
  const { bytes, dataSegments, ...rest } = prepared;
  const meta: CachedMeta = {
    version: PIPELINE_VERSION,
    module: rest,
    segments: dataSegments.map((s) => ({ offset: s.offset, length: s.bytes.length })),
  };
  const data = new Uint8Array(dataSegments.reduce((n, s) => n + s.bytes.length, 0));
  let at = 0;
  for (const segment of dataSegments) {
    data.set(segment.bytes, at);
    at += segment.bytes.length;
  }
  await Deno.mkdir(cacheDir, { recursive: true });
  const base = join(cacheDir, key);
  // The JSON goes last and every file is renamed into place, so a reader never
  // sees a complete-looking entry with missing parts.
  await writeAtomically(`${base}.wasm`, bytes);
  await writeAtomically(`${base}.data`, data);
  await writeAtomically(`${base}.json`, new TextEncoder().encode(JSON.stringify(meta)));
}

async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(temp, bytes);
  await Deno.rename(temp, path);
}

function cacheKey(bytes: Uint8Array, options: PrepareOptions): string {
  const normalized = {
    maxPages: options.maxPages ?? DEFAULT_MAX_PAGES,
    asyncifyPages: options.asyncifyPages ?? 1,
    asyncifyIgnoreIndirect: options.asyncifyIgnoreIndirect ?? false,
    asyncifyAddList: options.asyncifyAddList ?? [],
    asyncifyOptimize: options.asyncifyOptimize ?? null,
    asyncifyOptimizeList: options.asyncifyOptimizeList ?? [],
  };
  return sha256(
    new TextEncoder().encode(
      `${PIPELINE_VERSION}:${sha256(bytes)}:${JSON.stringify(normalized)}`,
    ),
  );
}

/** The options a module's own `snowflock.prepare` section asks for. */
function optionsOf(settings: ModuleSettings | null): PrepareOptions {
  if (!settings) return {};
  return definedOnly({
    asyncifyAddList: settings.asyncifyAddList,
    asyncifyIgnoreIndirect: settings.asyncifyIgnoreIndirect,
    asyncifyPages: settings.asyncifyPages,
    asyncifyOptimize: settings.asyncifyOptimize,
    asyncifyOptimizeList: settings.asyncifyOptimizeList,
  });
}

function definedOnly(options: PrepareOptions): PrepareOptions {
  return Object.fromEntries(
    Object.entries(options).filter(([, v]) => v !== undefined),
  ) as PrepareOptions;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function checkIsWasm(bytes: Uint8Array): void {
  const magic = [0x00, 0x61, 0x73, 0x6d];
  if (bytes.length < 8 || magic.some((b, i) => bytes[i] !== b)) {
    throw new GuestError("Cannot load guest: not a WebAssembly module");
  }
  // binaryen aborts the whole library on some malformed input; V8 rejects it
  // cleanly first (and could not run what it does not accept anyway).
  if (!WebAssembly.validate(bytes.slice())) {
    throw new GuestError("Cannot load guest: not a valid WebAssembly module");
  }
}

function checkShape(module: binaryen.Module): void {
  if (!module.hasMemory()) throw new GuestError("Cannot load guest: the module has no memory");
  if (module.getMemoryInfo().is64) {
    throw new GuestError("Cannot load guest: 64-bit memory is not supported");
  }
  if (module.getStart() !== 0) {
    // A start function would run again in every clone's fresh instance.
    throw new GuestError("Cannot load guest: a start function is not supported");
  }
  const exports = listExports(module);
  if (!exports.some((e) => e.name === "_start" && e.kind === binaryen.ExternalFunction)) {
    throw new GuestError("Cannot load guest: no _start export (only WASI commands run)");
  }
}

function checkImports(module: binaryen.Module): void {
  const unknown: string[] = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
    if (!info.module) continue;
    const name = `${info.module}.${info.base}`;
    if (info.module === WASI_MODULE && WASI_PREVIEW1_FUNCTIONS.has(info.base ?? "")) continue;
    const abi = info.module === SNOWFLOCK_MODULE ? SNOWFLOCK_IMPORTS[info.base ?? ""] : undefined;
    if (!abi) {
      unknown.push(name);
      continue;
    }
    const params = binaryen.expandType(info.params);
    const results = binaryen.expandType(info.results);
    if (
      params.length !== abi.params || params.some((t) => t !== binaryen.i32) ||
      results.length !== (abi.returns ? 1 : 0) || results.some((t) => t !== binaryen.i32)
    ) {
      unknown.push(`${name} (wrong signature)`);
    }
  }
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const info = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (info.module) unknown.push(`${info.module}.${info.base} (global)`);
  }
  for (let i = 0; i < module.getNumTables(); i++) {
    const info = binaryen.getTableInfo(module.getTableByIndex(i));
    if (info.module) unknown.push(`${info.module}.${info.base} (table)`);
  }
  if (unknown.length > 0) {
    throw new GuestError(`Cannot load guest: unsupported imports: ${unknown.join(", ")}`);
  }
}

function exportMutableGlobals(module: binaryen.Module): GlobalExport[] {
  const globals: GlobalExport[] = [];
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const info = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (!info.mutable) continue;
    const name = `${GLOBAL_EXPORT_PREFIX}${i}`;
    module.addGlobalExport(info.name, name);
    globals.push({ name, internalName: info.name, type: valueType(info.type, info.name) });
  }
  return globals;
}

function valueType(type: binaryen.Type, global: string): ValueType {
  switch (type) {
    case binaryen.i32:
      return "i32";
    case binaryen.i64:
      return "i64";
    case binaryen.f32:
      return "f32";
    case binaryen.f64:
      return "f64";
  }
  throw new GuestError(`Cannot load guest: mutable global ${global} has a non-numeric type`);
}

function importSharedMemory(
  module: binaryen.Module,
  options: PrepareOptions,
): { initialPages: number; maxPages: number; dataSegments: DataSegment[] } {
  const info = module.getMemoryInfo();
  const maxPages = info.max ?? options.maxPages ?? DEFAULT_MAX_PAGES;
  if (maxPages < info.initial) {
    throw new GuestError(
      `Cannot load guest: maximum memory ${maxPages} pages is below the initial ${info.initial}`,
    );
  }
  const extras = module as unknown as BinaryenModuleExtras;
  const dataSegments: DataSegment[] = [];
  const passive: binaryen.MemorySegment[] = [];
  for (let i = 0; i < extras.getNumDataSegments(); i++) {
    const segment = extras.getDataSegmentInfo(module.getDataSegmentByIndex(i));
    const bytes = new Uint8Array(segment.data);
    if (segment.passive) {
      passive.push({ name: segment.name, data: bytes, passive: true, offset: 0 } as never);
    } else {
      dataSegments.push({ offset: segment.offset ?? 0, bytes });
    }
  }
  const name = memoryName(module);
  // setMemory replaces the memory and all data segments; passive ones, which
  // memory.init may name, are put back.
  module.setMemory(info.initial, maxPages, null, passive, true, false, name);
  module.addMemoryImport(name, MEMORY_IMPORT.module, MEMORY_IMPORT.name, true);
  return { initialPages: info.initial, maxPages, dataSegments };
}

function memoryName(module: binaryen.Module): string {
  const exported = listExports(module).find((e) => e.kind === binaryen.ExternalMemory);
  // binaryen names an unnamed, unexported first memory "0".
  return exported?.value ?? "0";
}

function findHeapBase(module: binaryen.Module): number | null {
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const info = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (info.name !== "__heap_base") continue;
    const init = binaryen.getExpressionInfo(info.init) as { value?: unknown };
    return typeof init.value === "number" ? init.value : null;
  }
  return null;
}

function instrumentForks(
  module: binaryen.Module,
  { asyncifyPages, ignoreIndirect, addList, optimize, optimizeList }: {
    asyncifyPages: number;
    ignoreIndirect: boolean;
    addList: string[];
    optimize: "module" | "listed";
    optimizeList: string[];
  },
): void {
  const imports = FORKING_IMPORTS.map((name) => `${SNOWFLOCK_MODULE}.${name}`).join(",");
  const passArguments: Record<string, string | null> = {
    "asyncify-imports": imports,
    "asyncify-in-secondary-memory": "true",
    "asyncify-secondary-memory-size": String(asyncifyPages),
    "asyncify-ignore-indirect": ignoreIndirect ? "true" : null,
    "asyncify-addlist": addList.length > 0 ? addList.join(",") : null,
  };
  // binaryen's settings are process-wide: leave them as they were found.
  const levels = { optimize: binaryen.getOptimizeLevel(), shrink: binaryen.getShrinkLevel() };
  binaryen.setOptimizeLevel(2);
  binaryen.setShrinkLevel(1);
  for (const [key, value] of Object.entries(passArguments)) binaryen.setPassArgument(key, value);
  try {
    module.runPasses(["asyncify"]);
    module.addMemoryExport("asyncify_memory", ASYNCIFY_MEMORY_EXPORT);
    if (optimize === "listed") {
      // Targeted instrumentation changed few functions: the rest is the
      // compiler's output as it was.
      for (const name of new Set([...addList, ...optimizeList])) {
        if (module.getFunction(name)) {
          (module as unknown as FunctionOptimizer).optimizeFunction(name);
        }
      }
    } else {
      module.optimize();
    }
  } finally {
    for (const key of Object.keys(passArguments)) binaryen.setPassArgument(key, null);
    binaryen.setOptimizeLevel(levels.optimize);
    binaryen.setShrinkLevel(levels.shrink);
  }
}

function listExports(module: binaryen.Module): binaryen.ExportInfo[] {
  const exports: binaryen.ExportInfo[] = [];
  for (let i = 0; i < module.getNumExports(); i++) {
    exports.push(binaryen.getExportInfo(module.getExportByIndex(i)));
  }
  return exports;
}

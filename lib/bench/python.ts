/**
 * `snowflock bench python`: does fork support tax the interpreter? Runs
 * pure-Python workloads on the plain build (no snowflock module, nothing
 * instrumented) and on the Snowflock build (asyncify on the call path to the
 * snowflock imports only, lib/guest/python/asyncify.ts), each prepared by the
 * wasm engine as an agent prepares it, one VM at a time, alternating builds.
 * Each workload is timed inside the interpreter (best of `repeats`, after a
 * warm-up run), so VM start-up is not counted. Goal: slowdown ≤ 1.15 (a
 * whole-program asyncify measured 2.1×).
 */
import { prepareModuleCached } from "../backend/wasm/prepare.ts";
import type { GuestHooks } from "../backend/wasm/vm.ts";
import { WasmVm } from "../backend/wasm/vm.ts";
import { SF_ENOTSUP } from "../backend/wasm/guest_abi.ts";
import { defaultCacheDir } from "../control/agent_service.ts";
import { buildPython } from "../guest/python/build.ts";
import { PYTHON_ENV, type PythonFlavor, pythonGuestModule } from "../guest/python/guest.ts";
import { round2 } from "./stats.ts";

export interface PythonBenchOptions {
  /** Timed runs per workload in one interpreter (best is kept). */
  repeats?: number;
  /** Interpreter runs per build (best is kept); builds alternate. */
  rounds?: number;
  onProgress?: (message: string) => void;
}

export interface PythonWorkloadReport {
  plain_ms: number;
  snowflock_ms: number;
  slowdown: number;
}

export interface PythonBenchReport {
  bench: "python";
  python: string;
  repeats: number;
  rounds: number;
  workloads: Record<string, PythonWorkloadReport>;
  max_slowdown: number;
  goal_slowdown: number;
  /** Size of each prepared module. */
  plain_module_bytes: number;
  snowflock_module_bytes: number;
}

/** The workloads, each a function `run()` in Python; sizes give ~0.2–1 s in the guest. */
export const WORKLOADS: Readonly<Record<string, string>> = {
  recursion: `
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
def run():
    return fib(26)
`,
  dict_list_churn: `
def run():
    d = {}
    for i in range(200000):
        d[i] = [i, i * 2]
    total = 0
    for i in range(0, 200000, 3):
        v = d.pop(i)
        v.append(i)
        total += len(v)
    keys = sorted(d, reverse=True)[:1000]
    return total + sum(d[k][0] for k in keys)
`,
  string_processing: `
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod".split()
def run():
    out = []
    for i in range(30000):
        line = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8))
        line = line.replace("o", "0").upper()
        out.append(f"{i:05d}:{line[::-1]}")
    text = "\\n".join(out)
    return sum(len(w) for w in text.split()) + text.count("0")
`,
  numeric_loop: `
def run():
    acc = 0.0
    x = 0.5
    for i in range(500000):
        x = 3.7 * x * (1.0 - x)
        acc += x * i % 7
    return acc
`,
};

function benchProgram(repeats: number): string {
  const defs = Object.entries(WORKLOADS).map(([name, code]) =>
    `def _make_${name}():\n${indent(code)}\n    return run\n`
  ).join("\n");
  return `import time, json
${defs}
result = {}
for name in ${JSON.stringify(Object.keys(WORKLOADS))}:
    run = globals()["_make_" + name]()
    run()
    best = None
    for _ in range(${repeats}):
        t = time.perf_counter()
        run()
        ms = (time.perf_counter() - t) * 1000
        best = ms if best is None else min(best, ms)
    result[name] = best
print("BENCH " + json.dumps(result))
`;
}

function indent(code: string): string {
  return code.split("\n").map((l) => (l ? `    ${l}` : l)).join("\n");
}

const NO_CLUSTER: GuestHooks = {
  requestTicket: () => Promise.resolve(SF_ENOTSUP),
  ticketSize: () => Promise.resolve(SF_ENOTSUP),
  clone: () => Promise.resolve(SF_ENOTSUP),
  join: () => Promise.resolve(SF_ENOTSUP),
  kill: () => Promise.resolve(SF_ENOTSUP),
  checkpoint: () => Promise.resolve(SF_ENOTSUP),
  createClones: () => Promise.resolve(SF_ENOTSUP),
  hintOverwrite: () => Promise.resolve(0),
};

async function runOnce(
  module: Awaited<ReturnType<typeof prepareModuleCached>>,
  program: string,
): Promise<Record<string, number>> {
  const lines: string[] = [];
  const vm = await WasmVm.start({
    module,
    args: ["python3.11", "-s", "-c", program],
    env: [...PYTHON_ENV],
    preopens: [],
    hooks: NO_CLUSTER,
    onOutput: (_stream, line) => lines.push(line),
  });
  const exit = await vm.exited;
  const line = lines.find((l) => l.startsWith("BENCH "));
  if (!line || exit.kind !== "exit" || exit.code !== 0) {
    throw new Error(
      `Cannot benchmark Python: the guest ended with ${JSON.stringify(exit)}: ${lines.join(" | ")}`,
    );
  }
  return JSON.parse(line.slice(6));
}

export async function benchPython(o: PythonBenchOptions = {}): Promise<PythonBenchReport> {
  const repeats = o.repeats ?? 5;
  const rounds = o.rounds ?? 4;
  const build = await buildPython({ ...(o.onProgress ? { onProgress: o.onProgress } : {}) });
  const modules = {} as Record<PythonFlavor, Awaited<ReturnType<typeof prepareModuleCached>>>;
  for (const flavor of ["plain", "snowflock"] as const) {
    o.onProgress?.(`preparing the ${flavor} build (cached after the first time)`);
    const wasm = await Deno.readFile(await pythonGuestModule(build, flavor));
    modules[flavor] = await prepareModuleCached(wasm, defaultCacheDir());
  }
  const program = benchProgram(repeats);
  const best: Record<PythonFlavor, Record<string, number>> = { plain: {}, snowflock: {} };
  for (let round = 0; round < rounds; round++) {
    for (const flavor of ["plain", "snowflock"] as const) {
      o.onProgress?.(`round ${round + 1}/${rounds}: ${flavor}`);
      const times = await runOnce(modules[flavor], program);
      for (const [name, ms] of Object.entries(times)) {
        best[flavor][name] = Math.min(best[flavor][name] ?? Infinity, ms);
      }
    }
  }
  const workloads: Record<string, PythonWorkloadReport> = {};
  for (const name of Object.keys(WORKLOADS)) {
    const plain = best.plain[name];
    const snowflock = best.snowflock[name];
    workloads[name] = {
      plain_ms: round2(plain),
      snowflock_ms: round2(snowflock),
      slowdown: Math.round((snowflock / plain) * 1000) / 1000,
    };
  }
  return {
    bench: "python",
    python: String(build.manifest.debian_source ?? "python3.11"),
    repeats,
    rounds,
    workloads,
    max_slowdown: Math.max(...Object.values(workloads).map((w) => w.slowdown)),
    goal_slowdown: 1.15,
    plain_module_bytes: modules.plain.bytes.length,
    snowflock_module_bytes: modules.snowflock.bytes.length,
  };
}

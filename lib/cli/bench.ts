/**
 * `snowflock bench <name>`: benchmarks that measure side by side in one run.
 * With --json the last line is one JSON object; without it, the same figures
 * as a readable list.
 */
import { Command } from "commander";
import { benchClone } from "../bench/clone.ts";
import { benchFanout, DEFAULT_FANOUT_REPEAT } from "../bench/fanout.ts";
import { benchFaultLatency } from "../bench/fault_latency.ts";
import { benchHeuristics } from "../bench/heuristics.ts";
import { benchLazyVsEager } from "../bench/lazy_vs_eager.ts";
import { benchParentPause } from "../bench/parent_pause.ts";
import { benchPython } from "../bench/python.ts";
import { benchPythonFork } from "../bench/python_fork.ts";
import { parseCount } from "./options.ts";

/** Prints a report: one JSON line, or one figure per line. */
function report(json: boolean | undefined, r: object): void {
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  for (const [k, v] of Object.entries(r)) {
    console.log(`${k.padEnd(24)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
}

const progress = (m: string) => console.error(`bench: ${m}`);

interface CloneFlags {
  clones: number;
  hosts: number;
  rounds: number;
  heapMib: number;
  thinkMs: number;
  json?: boolean;
}

function cloneBench(): Command {
  return new Command("clone")
    .description("parent pause, descriptor size and sf_clone → all clones running")
    .option("--clones <n>", "clones per fork", parseCount(1, 1024), 16)
    .option("--hosts <n>", "agents on loopback", parseCount(1, 64), 4)
    .option("--rounds <n>", "forks measured (after one warm-up)", parseCount(1, 1000), 10)
    .option("--heap-mib <n>", "heap the parent holds", parseCount(0, 2048), 4)
    .option("--think-ms <n>", "the parent's work between forks", parseCount(0, 60_000), 500)
    .option("--json", "last line: one JSON object")
    .action(async (f: CloneFlags) => {
      report(f.json, await benchClone({ ...f, onProgress: progress }));
    });
}

function lazyVsEagerBench(): Command {
  return new Command("lazy-vs-eager")
    .description("clone-ready time and bytes moved: memory on demand vs all before running")
    .option("--memory-mib <n>", "guest memory", parseCount(1, 4096), 512)
    .option(
      "--touch-pages <n>",
      "pages each clone reads after forking",
      parseCount(1, 1 << 20),
      256,
    )
    .option("--hosts <n>", "agents, one clone each", parseCount(1, 16), 2)
    .option("--json", "last line: one JSON object")
    .action(async (f: { memoryMib: number; touchPages: number; hosts: number; json?: boolean }) => {
      report(f.json, await benchLazyVsEager(f));
    });
}

function faultLatencyBench(): Command {
  return new Command("fault-latency")
    .description("page fault service time, memory server remote (namespace host) and local")
    .option("--faults <n>", "pages touched one fault at a time", parseCount(1, 1 << 20), 2000)
    .option("--batch-pages <n>", "pages fetched in the batched run", parseCount(1, 1 << 22), 32768)
    .option("--json", "last line: one JSON object")
    .action(async (f: { faults: number; batchPages: number; json?: boolean }) => {
      report(f.json, await benchFaultLatency(f));
    });
}

function heuristicsBench(): Command {
  return new Command("heuristics")
    .description("pages fetched with each avoidance heuristic on and off, per example guest")
    .option("--hosts <n>", "agents", parseCount(1, 16), 2)
    .option("--example <name...>", "guests to run: examples or avoidance (default: all)")
    .option("--json", "last line: one JSON object")
    .action(async (f: { hosts: number; example?: string[]; json?: boolean }) => {
      report(
        f.json,
        await benchHeuristics({ hosts: f.hosts, ...(f.example ? { examples: f.example } : {}) }),
      );
    });
}

function parentPauseBench(): Command {
  return new Command("parent-pause")
    .description("the parent's pause at sf_clone with a large memory (copy-on-write capture)")
    .option("--memory-mib <n>", "guest memory", parseCount(1, 4096), 1024)
    .option("--json", "last line: one JSON object")
    .action(async (f: { memoryMib: number; json?: boolean }) => {
      report(f.json, await benchParentPause(f));
    });
}

function fanoutBench(): Command {
  return new Command("fanout")
    .description(
      "mcdist: server bytes and packets, finish time and CPU use for 1..16 clones on 4 namespace hosts",
    )
    .option("--loss <percent>", "datagram loss injected on every clone host", parseCount(0, 90), 0)
    .option("--memory-mib <n>", "the parent's buffer", parseCount(1, 4096), 64)
    .option("--pages <n>", "working set every clone reads, in pages", parseCount(1, 1 << 20), 4096)
    .option(
      "--mtu <bytes>",
      "MTU of the hosts' links (9000: jumbo frames)",
      parseCount(576, 65535),
      9000,
    )
    .option(
      "--repeat <n>",
      "runs of each clone count; the median is reported",
      parseCount(1, 99),
      DEFAULT_FANOUT_REPEAT,
    )
    .option("--json", "last line: one JSON object")
    .action(
      async (
        f: {
          loss: number;
          memoryMib: number;
          pages: number;
          mtu: number;
          repeat: number;
          json?: boolean;
        },
      ) => {
        report(
          f.json,
          await benchFanout({
            loss: f.loss,
            memoryMib: f.memoryMib,
            workingSetPages: f.pages,
            mtu: f.mtu,
            repeat: f.repeat,
            log: progress,
          }),
        );
      },
    );
}

function pythonBench(): Command {
  return new Command("python")
    .description("pure-Python workloads: the plain CPython build vs the Snowflock build")
    .option("--repeats <n>", "timed runs per workload in one interpreter", parseCount(1, 100), 5)
    .option("--rounds <n>", "interpreter runs per build", parseCount(1, 100), 4)
    .option("--json", "last line: one JSON object")
    .action(async (f: { repeats: number; rounds: number; json?: boolean }) => {
      report(f.json, await benchPython({ ...f, onProgress: progress }));
    });
}

function pythonForkBench(): Command {
  return new Command("python-fork")
    .description("fork a Python interpreter holding a big index: clones ready, pages fetched")
    .option("--clones <n>", "clones", parseCount(1, 64), 8)
    .option("--hosts <n>", "namespace hosts", parseCount(1, 16), 4)
    .option("--mib <n>", "size of the index", parseCount(1, 4096), 128)
    .option("--queries <n>", "queries answered", parseCount(1, 10_000_000), 20000)
    .option("--json", "last line: one JSON object")
    .action(
      async (
        f: { clones: number; hosts: number; mib: number; queries: number; json?: boolean },
      ) => {
        report(f.json, await benchPythonFork({ ...f, onProgress: progress }));
      },
    );
}

export function benchCommand(): Command {
  const bench = new Command("bench").description("run a benchmark (see its --help)");
  for (
    const make of [
      cloneBench,
      lazyVsEagerBench,
      faultLatencyBench,
      heuristicsBench,
      parentPauseBench,
      fanoutBench,
      pythonBench,
      pythonForkBench,
    ]
  ) bench.addCommand(make().exitOverride());
  return bench;
}

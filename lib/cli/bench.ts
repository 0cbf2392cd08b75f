/**
 * `snowflock bench <name>`: benchmarks that measure side by side in one run.
 * With --json the last line is one JSON object; without it, the same figures
 * as a readable list.
 */
import { Command } from "commander";
import { benchClone } from "../bench/clone.ts";
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

export function benchCommand(): Command {
  const bench = new Command("bench").description("run a benchmark (see its --help)");
  for (const make of [cloneBench]) bench.addCommand(make().exitOverride());
  return bench;
}

/**
 * `bench heuristics`: pages the clones fetch for each example guest, and for the benchmark guest
 * "avoidance" (guests/avoidance.c, which gives every heuristic pages to avoid), with all avoidance
 * heuristics on, all off, and each one turned off alone (SNOWFLOCK_AVOID), side by side.
 */
import { join } from "node:path";
import { defaultCacheDir } from "../control/agent_service.ts";
import { buildExample, listExamples } from "../guest/cc.ts";
import { HEURISTICS } from "../memory/heuristics.ts";
import { benchGuest, runOnCluster } from "./cluster_run.ts";

/** The benchmark guest with free, untouched, hinted and zero pages, and its records' size. */
const AVOIDANCE = "avoidance";
const AVOIDANCE_MIB = 2;

export interface HeuristicsOptions {
  /** Guests to run: examples or "avoidance"; default every example, then "avoidance". */
  examples?: string[];
  /** Agents; each example asks for 2 clones per host. Default 2. */
  hosts?: number;
}

/** Pages fetched (all clones) per configuration: "all", "none", "without_<heuristic>". */
export type HeuristicsRow = Record<string, number>;

export interface HeuristicsReport {
  hosts: number;
  guests: Record<string, HeuristicsRow>;
  /** Pages avoided per heuristic with all on, per guest. */
  avoided: Record<string, { zero: number; untouched: number; hinted: number; free: number }>;
}

export async function benchHeuristics(o: HeuristicsOptions = {}): Promise<HeuristicsReport> {
  const hosts = o.hosts ?? 2;
  const configs: [string, string][] = [
    ["all", "all"],
    ["none", "none"],
    ...HEURISTICS.map((h): [string, string] => [
      `without_${h}`,
      HEURISTICS.filter((x) => x !== h).join(","),
    ]),
  ];
  const report: HeuristicsReport = { hosts, guests: {}, avoided: {} };
  for (const example of o.examples ?? [...listExamples(), AVOIDANCE]) {
    const guest = await guestRun(example, 2 * hosts);
    const row: HeuristicsRow = {};
    for (const [name, avoid] of configs) {
      const r = await runOnCluster({ ...guest, hosts, env: { SNOWFLOCK_AVOID: avoid } });
      if (r.exitCode !== 0) {
        throw new Error(`Cannot bench ${example} (${name}): exit ${r.exitCode}`);
      }
      const members = r.forks.flatMap((c) => c.members);
      row[name] = members.reduce((n, m) => n + (m.memory?.pagesFetched ?? 0), 0);
      if (name === "all") {
        const sum = { zero: 0, untouched: 0, hinted: 0, free: 0 };
        for (const m of members) {
          for (const k of HEURISTICS) sum[k] += m.memory?.pagesAvoided[k] ?? 0;
        }
        report.avoided[example] = sum;
      }
    }
    report.guests[example] = row;
  }
  return report;
}

/** The module and arguments that run guest `name` with `clones` clones. */
async function guestRun(name: string, clones: number): Promise<{ wasm: string; args: string[] }> {
  if (name === AVOIDANCE) {
    return { wasm: await benchGuest(AVOIDANCE), args: [String(clones), String(AVOIDANCE_MIB)] };
  }
  const wasm = await buildExample(name, join(defaultCacheDir(), "examples"));
  return { wasm, args: [String(clones)] };
}

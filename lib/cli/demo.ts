/**
 * `snowflock demo`: an embedded master and N agents on loopback, no set-up
 * needed; runs an example guest (or the given one) that forks across them,
 * checks the result against a sequential run where it knows how, and reports.
 */
import { Command } from "commander";
import { join } from "node:path";
import { defaultCacheDir } from "../control/agent_service.ts";
import { MasterClient } from "../control/client.ts";
import { startEmbeddedCluster } from "../control/embedded.ts";
import type { ClusterView } from "../control/messages.ts";
import { buildExample, listExamples } from "../guest/cc.ts";
import { createLogger } from "../log.ts";
import { parseCount, untilSignal } from "./options.ts";
import { printLine, runJob } from "./run_job.ts";

interface DemoFlags {
  guest?: string;
  example: string;
  hosts: number;
  clones?: number;
  out?: string;
  json?: boolean;
  monitor?: boolean;
  port?: number;
  verbose?: boolean;
}

export interface DemoReport {
  ok: boolean;
  guest: string;
  hosts: number;
  clones: number;
  descriptor_bytes: number;
  parent_pause_ms: number;
  clones_ready_ms: number;
  total_ms: number;
  exit_code: number;
  /** Pages the clones fetched, and installed locally instead (avoidance heuristics). */
  pages_fetched: number;
  pages_avoided: number;
  /** Median over clones of their median fault service time. */
  fault_p50_us: number;
  result?: string;
  sequential_result?: string;
  sequential_ms?: number;
}

export function demoCommand(): Command {
  return new Command("demo")
    .description("run a guest that forks across an embedded cluster on loopback and report")
    .argument("[args...]", "guest arguments (after --); examples take <clones> first")
    .option("--guest <app.wasm|job.py>", "run this guest (or Python job) instead of an example")
    .option("--example <name>", `example to run: ${listExamples().join(", ")}`, "mandelbrot")
    .option("--hosts <n>", "agents to start", parseCount(1, 64), 4)
    .option("--clones <n>", "clones an example asks for (default: 2 per host)", parseCount(0, 4096))
    .option("--out <dir>", "copy the guest's /out here when it exits")
    .option("--json", "print one JSON object as the last line")
    .option("--monitor", "keep the cluster up after the guest ends and print the monitor's URL")
    .option(
      "--port <port>",
      "the embedded master's HTTP port (default: any free one)",
      parseCount(1, 65535),
    )
    .option("-v, --verbose", "log every event")
    .action(async (args: string[], f: DemoFlags) => {
      const report = await runDemo(args, f);
      // With --monitor the report was printed before waiting; the last line is still the JSON.
      if (f.json && !f.monitor) console.log(JSON.stringify(report));
      if (!report.ok) throw new DemoFailed(report);
    });
}

export class DemoFailed extends Error {
  constructor(report: DemoReport) {
    super(
      report.exit_code !== 0
        ? `Cannot complete demo: the guest exited with ${report.exit_code}`
        : `Cannot complete demo: result ${report.result} differs from the sequential run's ${report.sequential_result}`,
    );
    this.name = "DemoFailed";
  }
}

async function runDemo(args: string[], f: DemoFlags): Promise<DemoReport> {
  const logger = createLogger("demo", { verbose: f.verbose, quiet: !f.verbose });
  const say = (s: string) => f.json ? console.error(s) : console.log(s);
  const example = f.guest ? undefined : f.example;
  if (example && !listExamples().includes(example)) {
    throw new Error(`Cannot run example ${example}: choose one of ${listExamples().join(", ")}`);
  }
  const wasm = f.guest ?? await buildExample(example!, join(defaultCacheDir(), "examples"), {
    onProgress: (m) => say(`demo: ${m}`),
  });
  const dataDir = await Deno.makeTempDir({ prefix: "snowflock-demo-" });
  const cluster = await startEmbeddedCluster({
    hosts: f.hosts,
    slotsPerHost: 4,
    dataDir,
    logger,
    ...(f.port ? { port: f.port } : {}),
  });
  try {
    const client = new MasterClient(cluster.master.address, cluster.master.token);
    say(`demo: master on ${cluster.master.address}, ${f.hosts} agents on loopback`);
    const clones = f.clones ?? 2 * f.hosts;
    const guestArgs = example && args.length === 0 ? [String(clones)] : args;
    const resultOf = (lines: string[]) => lines.find((l) => l.startsWith("result:"));

    let sequential: { result?: string; ms: number } | undefined;
    if (example) {
      const lines: string[] = [];
      const t0 = performance.now();
      await runJob({
        client,
        wasmPath: wasm,
        args: ["0", ...guestArgs.slice(1)],
        onLine: (_c, _s, line) => lines.push(line),
      });
      sequential = { result: resultOf(lines), ms: performance.now() - t0 };
      say(`demo: sequential reference: ${sequential.result} in ${sequential.ms.toFixed(0)} ms`);
    }

    say(`demo: running ${example ?? wasm} ${guestArgs.join(" ")}`);
    const lines: string[] = [];
    const t0 = performance.now();
    const run = await runJob({
      client,
      wasmPath: wasm,
      args: guestArgs,
      ...(f.out ? { outDir: f.out } : {}),
      onLine: (clone, stream, line) => {
        if (clone === 0) lines.push(line);
        if (f.json) console.error(clone === 0 ? line : `[clone ${clone}] ${line}`);
        else printLine(clone, stream, line);
      },
    });
    const totalMs = performance.now() - t0;
    const forks = (await client.status()).clusters.filter((c) => c.parentVm === run.vm.id);
    const result = resultOf(lines);
    const report: DemoReport = {
      ok: run.exitCode === 0 && (!sequential || sequential.result === result),
      guest: example ?? wasm,
      hosts: f.hosts,
      clones: forks.reduce((n, c) => n + c.members.length, 0),
      descriptor_bytes: median(forks.map((c) => c.timeline.descriptorBytes ?? 0)),
      parent_pause_ms: round(median(forks.map((c) => c.timeline.pauseMs ?? 0))),
      clones_ready_ms: round(median(forks.map((c) => c.timeline.readyMs ?? 0))),
      total_ms: round(totalMs),
      exit_code: run.exitCode,
      ...memoryFigures(forks),
      ...(result ? { result } : {}),
      ...(sequential?.result ? { sequential_result: sequential.result } : {}),
      ...(sequential ? { sequential_ms: round(sequential.ms) } : {}),
    };
    say("");
    say(summary(report, forks));
    if (f.monitor) {
      if (f.json) console.log(JSON.stringify(report));
      say("");
      say(
        `monitor: http://${cluster.master.address}/  (log in with token ${cluster.master.token})`,
      );
      say("the cluster stays up until Ctrl-C");
      await untilSignal();
    }
    return report;
  } finally {
    await cluster.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

function summary(r: DemoReport, forks: ClusterView[]): string {
  const placement = forks.flatMap((c) => c.members).reduce((m, x) => {
    m.set(x.host, (m.get(x.host) ?? 0) + 1);
    return m;
  }, new Map<string, number>());
  return [
    `demo ${r.ok ? "OK" : "FAILED"}: ${r.guest} forked ${r.clones} clones over ${r.hosts} hosts (${
      [...placement].map(([h, n]) => `${h}×${n}`).join(" ")
    })`,
    `  descriptor ${r.descriptor_bytes} bytes, parent paused ${r.parent_pause_ms} ms, ` +
    `clones running ${r.clones_ready_ms} ms after sf_clone`,
    `  total ${r.total_ms} ms` +
    (r.sequential_ms !== undefined ? ` (sequential ${r.sequential_ms} ms)` : "") +
    `, exit code ${r.exit_code}`,
    ...(r.sequential_result
      ? [
        `  ${
          r.result === r.sequential_result ? "same result as" : "DIFFERENT result from"
        } the sequential run`,
      ]
      : []),
  ].join("\n");
}

function memoryFigures(
  forks: ClusterView[],
): Pick<DemoReport, "pages_fetched" | "pages_avoided" | "fault_p50_us"> {
  const stats = forks.flatMap((c) => c.members).flatMap((m) => m.memory ? [m.memory] : []);
  const avoided = (a: typeof stats[number]["pagesAvoided"]) =>
    a.zero + a.untouched + a.hinted + a.free;
  return {
    pages_fetched: stats.reduce((n, s) => n + s.pagesFetched, 0),
    pages_avoided: stats.reduce((n, s) => n + avoided(s.pagesAvoided), 0),
    fault_p50_us: round(median(stats.filter((s) => s.faults > 0).map((s) => s.faultP50Us))),
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * Running Python jobs in tests: the cached interpreter (built on first use by
 * scripts/build-python.sh; scripts/setup.sh builds it for the suite), an
 * embedded cluster, and a job's output split by clone.
 */
import { join } from "node:path";
import { runJob } from "../lib/cli/run_job.ts";
import { prepareModuleCached } from "../lib/backend/wasm/prepare.ts";
import { defaultCacheDir } from "../lib/control/agent_service.ts";
import { MasterClient } from "../lib/control/client.ts";
import { startEmbeddedCluster } from "../lib/control/embedded.ts";
import { buildPython, type PythonBuild } from "../lib/guest/python/build.ts";
import { pythonGuestModule } from "../lib/guest/python/guest.ts";
import { resolveGuest } from "../lib/guest/python/resolve.ts";
import { createLogger } from "../lib/log.ts";
import { tempDir } from "./harness/temp_dir.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });

let building: Promise<PythonBuild> | undefined;

/**
 * The interpreter build (from the cache; a cold build takes minutes), with
 * its guest module already prepared in the agents' cache: otherwise the
 * embedded agents, which share that cache, would each prepare it at once.
 */
export function python(): Promise<PythonBuild> {
  building ??= (async () => {
    const build = await buildPython({ onProgress: (l) => console.error(l) });
    const wasm = await Deno.readFile(await pythonGuestModule(build, "snowflock"));
    await prepareModuleCached(wasm, defaultCacheDir());
    return build;
  })();
  return building;
}

export interface PythonRun {
  exitCode: number;
  reason?: string;
  /** The parent's stdout and stderr lines. */
  stdout: string[];
  stderr: string[];
  /** Each clone's lines (stdout and stderr, in order), by clone id. */
  clones: Map<number, string[]>;
  /** Each clone's stderr lines, by clone id. */
  cloneStderr: Map<number, string[]>;
  vm: string;
}

/** Runs `source` as job.py with `args` through the master, as `snowflock run` does. */
export async function runPython(
  client: MasterClient,
  source: string,
  args: string[] = [],
  name = "job.py",
): Promise<PythonRun> {
  await python();
  await using dir = await tempDir("sf-py-job");
  const path = join(dir.path, name);
  await Deno.writeTextFile(path, source);
  const guest = await resolveGuest(path, args, { build: false });
  const r: PythonRun = {
    exitCode: -1,
    stdout: [],
    stderr: [],
    clones: new Map(),
    cloneStderr: new Map(),
    vm: "",
  };
  const result = await runJob({
    client,
    wasmPath: guest.wasm,
    args: guest.args,
    env: guest.env,
    onLine: (clone, stream, line) => {
      if (clone === 0) (stream === "stdout" ? r.stdout : r.stderr).push(line);
      else {
        r.clones.set(clone, [...(r.clones.get(clone) ?? []), line]);
        if (stream === "stderr") {
          r.cloneStderr.set(clone, [...(r.cloneStderr.get(clone) ?? []), line]);
        }
      }
    },
  });
  r.exitCode = result.exitCode;
  r.vm = result.vm.id;
  if (result.reason) r.reason = result.reason;
  return r;
}

/** An embedded master with `hosts` agents of `slots` slots, for `fn`. */
export async function withCluster(
  fn: (client: MasterClient) => Promise<void>,
  hosts = 4,
  slots = 2,
): Promise<void> {
  await python();
  await using data = await tempDir("sf-py-cluster");
  const cluster = await startEmbeddedCluster({
    hosts,
    slotsPerHost: slots,
    dataDir: data.path,
    logger: quiet,
  });
  try {
    await fn(new MasterClient(cluster.master.address, cluster.master.token));
  } finally {
    await cluster.close();
  }
}

/** A readable dump of a run for assertion messages. */
export function dump(r: PythonRun): string {
  const clones = [...r.clones].map(([id, lines]) => lines.map((l) => `[clone ${id}] ${l}`));
  return [
    `exit ${r.exitCode}${r.reason ? ` (${r.reason})` : ""}`,
    ...r.stdout,
    ...r.stderr.map((l) => `stderr: ${l}`),
    ...clones.flat(),
  ].join("\n");
}

/**
 * A real one-machine Slurm 22.05 cluster for tests and `deno task lab:slurm`:
 * munged, slurmctld, one slurmd per node (Debian builds slurmd with
 * MULTIPLE_SLURMD, so `slurmd -N nX` runs several nodes on one host) and
 * slurmrestd with JWT, all configured under one temp dir with free ports, so
 * nothing touches /etc/slurm, /run/munge or another Slurm on the machine.
 * `close()` kills every daemon (whole process groups) and removes the dir, also
 * after a failed start.
 */
import { join } from "node:path";
import { type HarnessProcess, spawnProcess } from "../lib/netns/process.ts";

/** Debian packages the cluster needs. */
export const SLURM_PACKAGES = ["munge", "slurmctld", "slurmd", "slurmrestd", "slurm-client"];

/** The unprivileged user slurmrestd runs as (it refuses root) and jobs run as. */
export const SLURM_LAB_USER = "sflab";

export interface SlurmClusterOptions {
  nodes: number;
  cpusPerNode: number;
}

export interface SlurmCluster {
  /** slurmrestd's base URL. */
  url: string;
  user: string;
  /** A JWT for `user`, valid for the cluster's lifetime. */
  token: string;
  /** Node names, n1..nN. */
  nodes: string[];
  partition: string;
  /** Runs scontrol against this cluster; returns stdout, throws on failure. */
  scontrol(...args: string[]): Promise<string>;
  drain(node: string, reason: string): Promise<void>;
  /** The job's state per scontrol, or undefined when Slurm no longer knows it. */
  jobState(id: string): Promise<string | undefined>;
  close(): Promise<void>;
}

export class SlurmLabError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SlurmLabError";
  }
}

/** Installs the Slurm packages that are missing (needs root and apt). */
export async function ensureSlurmPackages(): Promise<void> {
  const missing = [];
  for (const p of SLURM_PACKAGES) {
    const q = await run(["dpkg-query", "-W", "-f=${Status}", p], { check: false });
    if (!q.stdout.includes("install ok installed")) missing.push(p);
  }
  if (missing.length === 0) return;
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", ...missing];
  const first = await run(install, { env, check: false });
  if (first.code !== 0) {
    await run(["apt-get", "update", "-qq"], { env });
    await run(install, { env });
  }
}

/** Starts the cluster; with a failure on the way, whatever started is stopped again. */
export async function startSlurmCluster(o: SlurmClusterOptions): Promise<SlurmCluster> {
  await ensureSlurmPackages();
  await ensureUser(SLURM_LAB_USER);
  const dir = await Deno.makeTempDir({ prefix: "sf-slurm-" });
  const procs: HarnessProcess[] = [];
  const close = async () => {
    // slurmd first so no node reports to a dying controller; munged last.
    for (const p of procs.reverse()) await p.stop(1_000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    return await start(o, dir, procs, close);
  } catch (e) {
    const logs = await tailLogs(dir);
    await close();
    throw new SlurmLabError(`Cannot start the Slurm cluster: ${(e as Error).message}${logs}`, {
      cause: e,
    });
  }
}

async function start(
  o: SlurmClusterOptions,
  dir: string,
  procs: HarnessProcess[],
  close: () => Promise<void>,
): Promise<SlurmCluster> {
  // Every daemon and job runs as root or the lab user; the dir must be reachable for both.
  await Deno.chmod(dir, 0o755);
  const host = (await run(["hostname", "-s"])).stdout.trim();
  const nodes = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  const [ctldPort, restPort, ...nodePorts] = await freePorts(2 + o.nodes);
  const conf = join(dir, "slurm.conf");
  const munge = join(dir, "munge");
  await Deno.mkdir(munge, { mode: 0o700 });
  const socket = join(munge, "munge.socket");
  const key = join(munge, "munge.key");
  await Deno.writeFile(key, crypto.getRandomValues(new Uint8Array(128)), { mode: 0o400 });
  const jwtKey = join(dir, "jwt.key");
  await Deno.writeFile(jwtKey, crypto.getRandomValues(new Uint8Array(48)), { mode: 0o600 });
  const jobs = join(dir, "jobs");
  await Deno.mkdir(jobs);
  await Deno.chmod(jobs, 0o1777);
  for (const d of ["state", ...nodes.map((n) => `spool-${n}`)]) await Deno.mkdir(join(dir, d));

  await Deno.writeTextFile(
    conf,
    [
      "ClusterName=sflab",
      `SlurmctldHost=${host}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      "SlurmUser=root",
      "AuthType=auth/munge",
      `AuthInfo=socket=${socket}`,
      "AuthAltTypes=auth/jwt",
      `AuthAltParameters=jwt_key=${jwtKey}`,
      "CredType=cred/munge",
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none",
      "MpiDefault=none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core",
      "SchedulerType=sched/builtin",
      "ReturnToService=2",
      "SlurmdParameters=config_overrides",
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool-%n`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd-%n.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd-%n.log`,
      "SlurmctldTimeout=10",
      "SlurmdTimeout=30",
      "MessageTimeout=5",
      ...nodes.map((n, i) =>
        `NodeName=${n} NodeHostname=${host} NodeAddr=127.0.0.1 Port=${nodePorts[i]} ` +
        `CPUs=${o.cpusPerNode} State=UNKNOWN`
      ),
      "PartitionName=lab Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
      "",
    ].join("\n"),
  );
  const env = { SLURM_CONF: conf };

  procs.push(spawnProcess([
    "munged",
    "--foreground",
    "--force",
    `--socket=${socket}`,
    `--key-file=${key}`,
    `--pid-file=${join(munge, "munged.pid")}`,
    `--log-file=${join(dir, "munged.log")}`,
    `--seed-file=${join(munge, "seed")}`,
  ]));
  await waitFor(() => exists(socket), 5_000, "munged's socket");
  await Deno.chmod(socket, 0o777);

  procs.push(spawnProcess(["slurmctld", "-D", "-i", "-f", conf], { env }));
  for (const n of nodes) {
    procs.push(spawnProcess(["slurmd", "-D", "-N", n, "-f", conf], { env }));
  }
  const scontrol = async (...args: string[]) => (await run(["scontrol", ...args], { env })).stdout;
  await waitFor(
    async () => {
      const out = await run(["sinfo", "-h", "-N", "-o", "%N %t"], { env, check: false });
      const idle = out.stdout.split("\n").filter((l) => /\bidle$/.test(l.trim()));
      return idle.length === nodes.length;
    },
    20_000,
    `${nodes.length} idle nodes`,
  );

  const tokenOut = await scontrol("token", `username=${SLURM_LAB_USER}`, "lifespan=7200");
  const token = /SLURM_JWT=(\S+)/.exec(tokenOut)?.[1];
  if (!token) throw new SlurmLabError(`Cannot read a JWT from scontrol: ${tokenOut}`);

  // slurmrestd refuses to run as root; SLURM_JWT=daemon makes it accept per-request tokens.
  procs.push(spawnProcess([
    "setpriv",
    `--reuid=${SLURM_LAB_USER}`,
    `--regid=${SLURM_LAB_USER}`,
    "--init-groups",
    "slurmrestd",
    "-f",
    conf,
    "-s",
    "openapi/v0.0.38",
    "-a",
    "rest_auth/jwt",
    `127.0.0.1:${restPort}`,
  ], { env: { ...env, SLURM_JWT: "daemon" } }));
  const url = `http://127.0.0.1:${restPort}`;
  await waitFor(
    async () => {
      try {
        const r = await fetch(`${url}/slurm/v0.0.38/ping`, {
          headers: { "X-SLURM-USER-NAME": SLURM_LAB_USER, "X-SLURM-USER-TOKEN": token },
        });
        await r.body?.cancel();
        return r.ok;
      } catch {
        return false;
      }
    },
    10_000,
    "slurmrestd to answer /ping",
  );

  return {
    url,
    user: SLURM_LAB_USER,
    token,
    nodes,
    partition: "lab",
    scontrol,
    drain: async (node, reason) => {
      await scontrol("update", `nodename=${node}`, "state=drain", `reason=${reason}`);
    },
    jobState: async (id) => {
      const out = await run(["scontrol", "-o", "show", "job", id], { env, check: false });
      return /JobState=(\S+)/.exec(out.stdout)?.[1];
    },
    close,
  };
}

async function ensureUser(user: string): Promise<void> {
  if ((await run(["id", "-u", user], { check: false })).code === 0) return;
  await run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]);
}

/** Ports that were free a moment ago (bound, read, closed). */
async function freePorts(n: number): Promise<number[]> {
  const listeners = Array.from({ length: n }, () => Deno.listen({ port: 0 }));
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return await Promise.resolve(ports);
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(
  cmd: string[],
  o: { env?: Record<string, string>; check?: boolean } = {},
): Promise<RunResult> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: o.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (o.check !== false && r.code !== 0) {
    throw new SlurmLabError(`Cannot run ${cmd.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
  }
  return r;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(
  ok: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new SlurmLabError(`no ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The last lines of the daemons' logs, for an error message. */
async function tailLogs(dir: string): Promise<string> {
  const parts: string[] = [];
  for (const name of ["munged.log", "slurmctld.log", "slurmd-n1.log"]) {
    const text = await Deno.readTextFile(join(dir, name)).catch(() => "");
    if (text) parts.push(`\n--- ${name}\n${text.trim().split("\n").slice(-8).join("\n")}`);
  }
  return parts.join("");
}

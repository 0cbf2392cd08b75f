/**
 * The lab scenario, run in host 1's dom0 once the master and both agents are up:
 * a PV guest on host1 asks for 4 clones (2 per host); every clone prints its id
 * and a value inherited from the parent's memory; the parent's sf_join returns.
 * Then the same guest is copied the stock way (`xl save -c` + `xl restore` under a
 * new name) and timed. Last line: one JSON object.
 * Also, with the same parent: a malformed request gets EINVAL and the agent keeps
 * serving; then a second fork (one clone per host) during which host2's agent is
 * killed: that clone must be reported failed to the parent's sf_join.
 *   deno run -A scripts/lab/xen/scenario.ts MASTER TOKEN
 */
import { encodeManifest, xlConfig } from "../../../lib/backend/xen/manifest.ts";
import { xl } from "../../../lib/backend/xen/xl.ts";
import type { ClusterView } from "../../../lib/control/messages.ts";

const [master, token] = Deno.args;
const H = { authorization: `Bearer ${token}` };
const api = async (method: string, path: string, body?: BodyInit) => {
  const res = await fetch(`http://${master}${path}`, {
    method,
    headers: H,
    body,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
};
const log = (s: string) => console.log(`[scenario] ${s}`);
const t0 = performance.now();
const since = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;

// 1. both hosts up
for (;;) {
  const hosts = await api("GET", "/v1/hosts") as {
    name: string;
    state: string;
  }[];
  if (hosts.filter((h) => h.state === "up").length >= 2) break;
  await new Promise((r) => setTimeout(r, 500));
}
log(`2 hosts up at ${since()}`);

// 2. the guest image (a manifest) and the parent VM on host1
const manifest = (mode: string) =>
  encodeManifest({
    kernel: "/lab/vmlinuz",
    ramdisk: "/lab/domu.cpio.gz",
    extra: `console=hvc0 quiet sf_mode=${mode} sf_clones=4 sf_death=1`,
    memoryMiB: 128,
    vcpus: 1,
  });
const { module } = await api("PUT", "/v1/modules", manifest("fork"));
const vm = await api(
  "POST",
  "/v1/vms",
  JSON.stringify({ module, host: "host1" }),
);
log(`parent ${vm.id} started at ${since()}`);

// 3. follow the job until the parent joined
const clones = new Map<number, string>();
let joined = "";
let joined2 = "";
let malformed = "";
let ticket1 = "";
let ticket2 = "";
let killedAt = "";
/** Once the second fork is dispatched, host2's agent is killed (host2 "dies"). */
const killHost2 = async () => {
  for (let i = 0; i < 600 && !killedAt; i++) {
    const cs = await api("GET", "/v1/clusters").catch(() => []) as {
      ticket: string;
      state: string;
    }[];
    if (cs.some((x) => x.ticket === ticket2 && x.state !== "forking")) {
      Deno.writeTextFileSync("/lab/run/kill-host2", "");
      killedAt = since();
      log(`second fork dispatched: killing host2's agent at ${killedAt}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
};
const res = await fetch(`http://${master}/v1/jobs/${vm.job}/events`, {
  headers: H,
});
const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
let buf = "";
const deadline = Date.now() + 600_000;
outer: while (Date.now() < deadline) {
  const { value, done } = await reader.read();
  if (done) break;
  buf += value;
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (!line.trim()) continue;
    const e = JSON.parse(line);
    if (e.kind === "output") {
      console.log(`[${e.vm}#${e.clone}] ${e.line}`);
      const m = /SF-CLONE id=(\d+) inherited=(\S+)/.exec(e.line);
      if (m) clones.set(Number(m[1]), m[2]);
      const bad = /SF-MALFORMED (-?\d+)/.exec(e.line);
      if (bad) malformed = bad[1];
      const t = /\[guest\] ticket (\S+)/.exec(e.line);
      if (t) ticket1 = t[1];
      const t2 = /\[guest\] ticket2 (\S+)/.exec(e.line);
      if (t2) {
        ticket2 = t2[1];
        killHost2();
      }
      const j = /SF-JOINED rc=(-?\d+)/.exec(e.line);
      if (j) {
        joined = j[1];
        log(`first fork joined at ${since()}`);
      }
      const j2 = /SF-JOINED2 rc=(-?\d+)/.exec(e.line);
      if (j2) {
        joined2 = j2[1];
        break outer;
      }
    } else if (e.kind === "state") {
      log(
        `${e.vm}#${e.clone} ${e.state}${e.reason ? `: ${e.reason}` : ""} at ${since()}`,
      );
    } else if (e.kind === "end") break outer;
  }
}
await reader.cancel().catch(() => {});
const clusters = await api("GET", "/v1/clusters") as ClusterView[];
const c = clusters.find((x) => x.parentVm === vm.id && x.ticket === ticket1);
const c2 = clusters.find((x) => x.parentVm === vm.id && x.ticket === ticket2);
log(`joined rc=${joined}; cluster ${JSON.stringify(c)}`);
log(
  `second fork joined rc=${joined2} at ${since()}; cluster ${JSON.stringify(c2)}`,
);
const dead = c2?.members.find((m) => m.host === "host2");
const hostDeath = {
  join_rc: joined2 === "" ? null : Number(joined2),
  clone_on_dead_host: dead?.state ?? null,
  reason: (dead as { reason?: string } | undefined)?.reason ?? null,
  other_clone: c2?.members.find((m) => m.host === "host1")?.state ?? null,
};
const figures = JSON.parse(Deno.readTextFileSync("/tmp/sf-figures-host1.json"));

// 4. the stock copy, timed: xl save -c + xl restore under a new name
const xlParent = "xlparent";
await Deno.writeTextFile(
  `/tmp/${xlParent}.cfg`,
  xlConfig(xlParent, decodeFor("idle")),
);
await xl(["create", "-e", `/tmp/${xlParent}.cfg`], 300_000);
for (let i = 0; i < 240; i++) {
  const logText = await Deno.readTextFile(
    `/var/log/xen/console/guest-${xlParent}.log`,
  ).catch(() => "");
  if (logText.includes("[guest] idle")) break;
  await new Promise((r) => setTimeout(r, 500));
}
const s0 = performance.now();
await xl(["save", "-c", xlParent, "/tmp/xl.save"], 300_000);
const xlPauseMs = performance.now() - s0;
await Deno.writeTextFile(
  "/tmp/xlcopy.cfg",
  xlConfig("xlcopy", decodeFor("idle")),
);
await xl(["restore", "-p", "-e", "/tmp/xlcopy.cfg", "/tmp/xl.save"], 300_000);
await xl(["unpause", "xlcopy"]);
const xlCloneReadyMs = performance.now() - s0;
const list = (await xl(["list"])).stdout;
log(
  `stock copy: save -c ${xlPauseMs.toFixed(0)} ms, ready ${xlCloneReadyMs.toFixed(0)} ms\n${list}`,
);
await xl(["destroy", "xlcopy"]).catch(() => {});
await xl(["destroy", xlParent]).catch(() => {});
await Deno.remove("/tmp/xl.save").catch(() => {});

const members = c?.members ?? [];
const perHost = new Map<string, number>();
for (const m of members) {
  if (m.memory) perHost.set(m.host, m.memory.pagesFetched);
}
const avoided = members.find((m) => m.memory)?.memory?.pagesAvoided;
const hostsUsed = new Set(members.map((m) => m.host));
const result = {
  ok: joined === "0" && clones.size === 4 &&
    members.every((m) => m.state === "exited") &&
    hostsUsed.size === 2 && malformed === "-22" && hostDeath.join_rc === 1 &&
    hostDeath.clone_on_dead_host === "failed" && figures.pagesForeign > 0 &&
    figures.foreignMismatches === 0,
  hosts: hostsUsed.size,
  clones: clones.size,
  clone_ids: [...clones.keys()].sort(),
  inherited: [...new Set(clones.values())],
  placement: Object.fromEntries(
    [...hostsUsed].map((h) => [h, members.filter((m) => m.host === h).length]),
  ),
  descriptor_bytes: c?.timeline.descriptorBytes ?? figures.descriptorBytes,
  guest_memory_bytes: figures.guestMemoryBytes,
  parent_pause_ms: Math.round(c?.timeline.pauseMs ?? figures.pauseMs),
  clone_ready_ms: Math.round(c?.timeline.readyMs ?? -1),
  pages_sent: [...perHost.values()].reduce((a, b) => a + b, 0),
  pages_avoided: (avoided?.zero ?? 0) + (avoided?.untouched ?? 0),
  // Read from the paused parent through foreign mappings, and how many of them differed from
  // libxc's own copy in the save stream (must be none).
  pages_foreign: figures.pagesForeign,
  // Of the bytes the clones received, those that came by multicast (mcdist).
  multicast_bytes: members.reduce((n, m) => n + (m.memory?.multicastBytes ?? 0), 0),
  foreign_mismatches: figures.foreignMismatches,
  xl_pause_ms: Math.round(xlPauseMs),
  xl_clone_ready_ms: Math.round(xlCloneReadyMs),
  malformed_request_rc: malformed === "" ? null : Number(malformed),
  host_death: hostDeath,
};
const line = JSON.stringify(result);
Deno.writeTextFileSync("/lab/run/result.json", line + "\n");
console.log(`SNOWFLOCK-XEN-RESULT ${line}`);

function decodeFor(mode: string) {
  return {
    kernel: "/lab/vmlinuz",
    ramdisk: "/lab/domu.cpio.gz",
    extra: `console=hvc0 quiet sf_mode=${mode}`,
    memoryMiB: 128,
    vcpus: 1,
  };
}
void manifest;

/** `snowflock status`: hosts, tickets and impromptu clusters, as text or JSON. */
import { Command } from "commander";
import { MasterClient } from "../control/client.ts";
import type { CloneMemoryStats, StatusView } from "../control/messages.ts";
import { masterOption, tokenOption, UsageError } from "./options.ts";

interface StatusFlags {
  master: string;
  token?: string;
  json?: boolean;
}

export function statusCommand(): Command {
  return new Command("status")
    .description("show hosts, tickets and impromptu clusters")
    .addOption(masterOption())
    .addOption(tokenOption("the master's token"))
    .option("--json", "print the master's status as JSON")
    .action(async (f: StatusFlags) => {
      if (!f.token) throw new UsageError("missing --token <token> (or SNOWFLOCK_TOKEN)");
      const status = await new MasterClient(f.master, f.token).status();
      console.log(f.json ? JSON.stringify(status, null, 2) : formatStatus(status));
    });
}

export function formatStatus(s: StatusView): string {
  const lines = [`master ${s.version}, allocator ${s.allocator}, up since ${s.startedAt}`];
  lines.push("", `HOSTS (${s.hosts.length})`);
  lines.push(...table(
    ["NAME", "STATE", "BACKENDS", "SLOTS FREE/TOTAL", "DATA", "PAGES TO OTHER HOSTS", "NOTE"],
    s.hosts.map((h) => [
      h.name,
      h.state,
      h.backends.filter((b) => b.available).map((b) => b.kind).join(",") || "-",
      `${Math.max(0, h.slots - h.slotsInUse)}/${h.slots}`,
      h.dataAddress,
      transportOf(h),
      h.reason ?? "",
    ]),
  ));
  lines.push("", `TICKETS (${s.tickets.length})`);
  lines.push(...table(
    ["ID", "STATE", "GRANTED/ASKED", "PLACEMENT", "SOURCE", "NOTE"],
    s.tickets.map((t) => [
      t.id,
      t.state,
      `${t.granted}/${t.requested}`,
      t.placements.map((p) => `${p.host}×${p.slots}`).join(" ") || "-",
      t.source ? `${t.allocator}:${t.source}` : t.allocator,
      t.reason ?? "",
    ]),
  ));
  lines.push("", `IMPROMPTU CLUSTERS (${s.clusters.length})`);
  for (const c of s.clusters) {
    lines.push(`  ${c.id} ${c.state} ticket ${c.ticket}, parent ${c.parentVm} on ${c.parentHost}`);
    for (const m of c.members) {
      const code = m.exitCode !== undefined ? ` exit ${m.exitCode}` : "";
      lines.push(
        `    clone ${m.clone} on ${m.host}: ${m.state}${code}${m.reason ? ` (${m.reason})` : ""}`,
      );
      if (m.memory) lines.push(`      ${formatCloneMemory(m.memory)}`);
    }
    if (c.memory) {
      const f = c.memory;
      lines.push(
        `    memory server: ${f.pagesServed}/${f.pagesPresent} present pages served` +
          `${f.pagesPushed ? ` (${f.pagesPushed} before asked)` : ""}, ` +
          `${f.bytesSent} B sent, ${f.pagesSaved} pages saved copy-on-write`,
      );
    }
  }
  if (s.rejectedMessages > 0) lines.push("", `rejected messages: ${s.rejectedMessages}`);
  return lines.join("\n");
}

/** One line: how a clone got its memory. */
function formatCloneMemory(m: CloneMemoryStats): string {
  const a = m.pagesAvoided;
  return `memory ${m.mode}: ${m.pagesFetched} pages fetched, avoided zero ${a.zero} ` +
    `untouched ${a.untouched} hinted ${a.hinted} free ${a.free}; ${m.faults} faults, ` +
    `p50 ${m.faultP50Us.toFixed(0)} µs p99 ${m.faultP99Us.toFixed(0)} µs, ` +
    `stalled ${m.stalledMs.toFixed(1)} ms, ${m.bytesReceived} B in`;
}

function transportOf(h: StatusView["hosts"][number]): string {
  const t = h.memoryTransport;
  if (!t || t.mode === "off") return "unicast (tcp)";
  if (t.mode === "multicast") {
    return `mcdist ${t.group}:${t.port} on ${t.interface}${t.mtu ? ` mtu ${t.mtu}` : ""}`;
  }
  return `mcdist unicast fallback${t.reason ? ` (${t.reason})` : ""}`;
}

function table(head: string[], rows: string[][]): string[] {
  if (rows.length === 0) return ["  (none)"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => "  " + r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}

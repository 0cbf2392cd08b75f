// @ts-check
/**
 * What the monitor derives from a StatusView (lib/control/messages.ts): the
 * memory figures of a fork summed over its clones, their history while the
 * fork runs, the fork's timeline, and how numbers read. No DOM here, so the
 * derivations are unit-tested under Deno (model_test.ts), and type-checked
 * against the API's own types (browsers ignore the JSDoc).
 * @typedef {import("../../control/messages.ts").ClusterView} ClusterView
 * @typedef {import("../../control/messages.ts").ClusterState} ClusterState
 * @typedef {ReturnType<typeof memoryTotals>} MemoryTotals
 */

/** The avoidance heuristics, in the order CloneMemoryStats.pagesAvoided lists them. */
export const HEURISTICS = /** @type {const} */ (["zero", "untouched", "hinted", "free"]);

/**
 * One fork's memory figures now. Pages and fault latencies come from the clones'
 * memtaps; wire bytes from the parent's memory server when it reported (a
 * multicast reply counts once there, however many clones it reached), else
 * from what the clones received.
 * @param {ClusterView} cluster
 */
export function memoryTotals(cluster) {
  const t = {
    reporting: 0,
    faults: 0,
    pagesFetched: 0,
    avoided: { zero: 0, untouched: 0, hinted: 0, free: 0 },
    pagesAvoided: 0,
    multicastBytes: 0,
    unicastBytes: 0,
    /** Per-clone percentiles cannot be merged: the worst clone's are shown. */
    faultP50Us: 0,
    faultP99Us: 0,
    pagesServed: cluster.memory?.pagesServed ?? 0,
  };
  for (const m of cluster.members) {
    const s = m.memory;
    if (!s) continue;
    t.reporting++;
    t.faults += s.faults;
    t.pagesFetched += s.pagesFetched;
    for (const h of HEURISTICS) t.avoided[h] += s.pagesAvoided[h];
    t.multicastBytes += s.multicastBytes;
    t.unicastBytes += s.unicastBytes;
    t.faultP50Us = Math.max(t.faultP50Us, s.faultP50Us);
    t.faultP99Us = Math.max(t.faultP99Us, s.faultP99Us);
  }
  t.pagesAvoided = HEURISTICS.reduce((sum, h) => sum + t.avoided[h], 0);
  if (cluster.memory) {
    t.multicastBytes = cluster.memory.multicastBytes;
    t.unicastBytes = cluster.memory.unicastBytes;
  }
  return t;
}

/**
 * A fork is live until it is joined, killed or failed; only then do its figures stop moving.
 * @param {ClusterView} cluster
 */
function isLive(cluster) {
  return cluster.state === "forking" || cluster.state === "running";
}

/** Bounds a page left open for days. */
const MAX_SAMPLES = 600;

/**
 * The memory figures of each fork over time, as the page saw them: a sample on
 * every status while the fork is live, and one when it ends. x is seconds since
 * the fork began by the master's clock (createdAt), read with the page's clock.
 */
export class MemoryHistory {
  /** @type {Map<string, {t: number, totals: MemoryTotals}[]>} */
  #samples = new Map();
  /** @type {Map<string, boolean>} whether the last sample was taken while live */
  #wasLive = new Map();

  /**
   * @param {ClusterView} cluster
   * @param {number} now ms since the epoch
   */
  record(cluster, now) {
    const live = isLive(cluster);
    const seen = this.#samples.has(cluster.id);
    if (seen && !live && !this.#wasLive.get(cluster.id)) return;
    const samples = this.#samples.get(cluster.id) ?? [];
    const t = Math.max(0, (now - Date.parse(cluster.createdAt)) / 1000);
    samples.push({ t, totals: memoryTotals(cluster) });
    if (samples.length > MAX_SAMPLES) samples.splice(0, samples.length - MAX_SAMPLES);
    this.#samples.set(cluster.id, samples);
    this.#wasLive.set(cluster.id, live);
  }

  /** @param {string} id */
  samples(id) {
    return this.#samples.get(id) ?? [];
  }

  /** Forgets forks the master no longer lists. @param {Set<string>} ids */
  retain(ids) {
    for (const id of [...this.#samples.keys()]) {
      if (!ids.has(id)) {
        this.#samples.delete(id);
        this.#wasLive.delete(id);
      }
    }
  }
}

/**
 * The steps of a fork on one time axis from fork.begin (ms): the parent
 * resumes once its memory is captured; the descriptor is made and sent after.
 * @param {ClusterView} cluster
 */
export function timelineSteps(cluster) {
  const tl = cluster.timeline;
  return [
    { key: "begin", label: "fork begins", ms: 0 },
    { key: "resumed", label: "parent resumes", ms: tl.pauseMs },
    {
      key: "descriptor",
      label: "descriptor made + sent",
      ms: tl.dispatchedMs,
      detail: tl.descriptorBytes !== undefined ? formatBytes(tl.descriptorBytes) : undefined,
    },
    { key: "ready", label: "clones ready", ms: tl.readyMs },
    { key: "joined", label: endLabel(cluster.state), ms: tl.joinedMs },
  ];
}

/** @param {ClusterState} state */
function endLabel(state) {
  return state === "killed" ? "killed" : state === "failed" ? "failed" : "joined";
}

/** Members by state, e.g. { exited: 8 }. @param {ClusterView} cluster */
export function memberCounts(cluster) {
  /** @type {Record<string, number>} */
  const counts = {};
  for (const m of cluster.members) counts[m.state] = (counts[m.state] ?? 0) + 1;
  return counts;
}

/** @param {number} n */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** @param {number | undefined} ms */
export function formatMs(ms) {
  if (ms === undefined) return "…";
  if (ms === 0) return "0 ms";
  return ms < 10
    ? `${ms.toFixed(1)} ms`
    : ms < 10_000
    ? `${Math.round(ms)} ms`
    : `${(ms / 1000).toFixed(1)} s`;
}

/** @param {number} us */
export function formatUs(us) {
  if (us < 10) return `${Number(us.toFixed(1))} µs`;
  return us < 1000 ? `${Math.round(us)} µs` : formatMs(us / 1000);
}

/** @param {number} n */
export function formatCount(n) {
  return n.toLocaleString("en-US");
}

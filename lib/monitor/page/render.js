/**
 * Draws a StatusView: the master line, hosts, tickets and one card per
 * impromptu cluster (tree parent → clones, fork timeline, memory figures and
 * charts). Tables are redrawn on every status; cluster cards are kept by id so
 * their charts live on and update in place while the fork runs.
 */
import { ForkCharts } from "./charts.js";
import { h } from "./dom.js";
import {
  formatBytes,
  formatCount,
  formatMs,
  formatUs,
  HEURISTICS,
  memberCounts,
  MemoryHistory,
  memoryTotals,
  timelineSteps,
} from "./model.js";

/** @param {string | undefined} iso */
function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString("en-GB") : "";
}

/** @param {string} state */
function badge(state) {
  return h("span", { class: `badge s-${state}` }, state.replace("_", " "));
}

/** @param {HTMLElement} el @param {any} status */
export function renderMaster(el, status) {
  el.replaceChildren(
    `master ${status.version} · allocator ${status.allocator} · up since ${
      clock(status.startedAt)
    }`,
  );
  el.dataset.startedAt = status.startedAt;
}

/** @param {HTMLElement} tbody @param {any[]} hosts */
export function renderHosts(tbody, hosts) {
  tbody.replaceChildren(...hosts.map((host) =>
    h(
      "tr",
      { dataset: { host: host.name, state: host.state } },
      h(
        "td",
        null,
        h("strong", null, host.name),
        host.schedulerNode ? ` (${host.schedulerNode})` : "",
      ),
      h("td", { title: host.reason }, badge(host.state)),
      h(
        "td",
        null,
        ...host.backends.map((b) =>
          h(
            "span",
            { class: `backend ${b.available ? "on" : "off"}`, title: b.reason },
            b.kind,
          )
        ),
      ),
      h(
        "td",
        { class: "slots" },
        h("meter", { min: 0, max: Math.max(1, host.slots), value: host.slotsInUse }),
        ` ${host.slotsInUse} / ${host.slots}`,
      ),
      h("td", { class: "num" }, host.cores),
      h("td", { class: "num" }, formatBytes(host.memoryBytes)),
      h("td", { class: "muted" }, clock(host.lastSeen)),
    )
  ));
  if (hosts.length === 0) tbody.append(emptyRow(7, "No agent has joined yet."));
}

/** @param {HTMLElement} tbody @param {any[]} tickets */
export function renderTickets(tbody, tickets) {
  tbody.replaceChildren(...tickets.map((t) =>
    h(
      "tr",
      { dataset: { ticket: t.id, state: t.state } },
      h("td", { class: "mono" }, t.id),
      h("td", { title: t.reason }, badge(t.state)),
      h("td", { class: "num" }, `${t.granted} / ${t.requested}`),
      h("td", null, t.allocator, t.source ? h("span", { class: "muted" }, ` · ${t.source}`) : ""),
      h("td", { class: "wrap" }, t.placements.map((p) => `${p.host}×${p.slots}`).join(" ")),
      h("td", { class: "muted" }, clock(t.createdAt)),
    )
  ));
  if (tickets.length === 0) tbody.append(emptyRow(6, "No tickets yet."));
}

function emptyRow(columns, text) {
  return h("tr", null, h("td", { colspan: columns, class: "muted" }, text));
}

/** The cluster cards, newest first, with their charts and memory history. */
export class ClusterBoard {
  #el;
  #history = new MemoryHistory();
  /** @type {Map<string, { card: HTMLElement, parts: Record<string, HTMLElement>, charts: ForkCharts }>} */
  #cards = new Map();

  /** @param {HTMLElement} el */
  constructor(el) {
    this.#el = el;
  }

  /** @param {any} status @param {number} now */
  update(status, now) {
    const ids = new Set(status.clusters.map((c) => c.id));
    this.#history.retain(ids);
    for (const [id, entry] of this.#cards) {
      if (ids.has(id)) continue;
      entry.charts.destroy();
      entry.card.remove();
      this.#cards.delete(id);
    }
    const cards = status.clusters.map((cluster) => {
      this.#history.record(cluster, now);
      const entry = this.#cards.get(cluster.id) ?? this.#create(cluster);
      this.#fillCard(entry, cluster);
      return entry.card;
    });
    if (cards.length === 0) {
      this.#el.replaceChildren(
        h("p", { class: "muted" }, "No impromptu cluster yet: run a guest that calls sf_clone."),
      );
    } else {
      this.#el.replaceChildren(...cards); // moves kept cards; their charts stay
    }
  }

  clear() {
    for (const { charts } of this.#cards.values()) charts.destroy();
    this.#cards.clear();
    this.#history = new MemoryHistory();
    this.#el.replaceChildren();
  }

  #create(cluster) {
    const parts = {
      head: h("header", null),
      tree: h("div", { class: "tree" }),
      timeline: h("div", { class: "timeline" }),
      figures: h("dl", { class: "figures" }),
      charts: h("div", { class: "charts" }),
    };
    const card = h(
      "article",
      { class: "cluster", dataset: { cluster: cluster.id } },
      parts.head,
      h(
        "div",
        { class: "cluster-body" },
        parts.tree,
        h("div", { class: "fork" }, parts.timeline, parts.figures, parts.charts),
      ),
    );
    const entry = { card, parts, charts: new ForkCharts(parts.charts) };
    this.#cards.set(cluster.id, entry);
    return entry;
  }

  #fillCard({ card, parts, charts }, cluster) {
    card.dataset.state = cluster.state;
    const counts = Object.entries(memberCounts(cluster)).map(([s, n]) => `${n} ${s}`).join(", ");
    parts.head.replaceChildren(
      h("h3", { class: "mono" }, cluster.id),
      badge(cluster.state),
      h(
        "span",
        { class: "muted" },
        `ticket ${cluster.ticket} · ${clock(cluster.createdAt)} · ${counts || "no clones"}`,
      ),
    );
    parts.tree.replaceChildren(
      h(
        "div",
        { class: "parent", dataset: { parent: cluster.parentVm } },
        h("span", { class: "role" }, "parent"),
        h("span", { class: "mono" }, cluster.parentVm),
        h("span", { class: "host" }, cluster.parentHost),
      ),
      h("ul", { class: "clones" }, ...cluster.members.map(clone)),
    );
    renderTimeline(parts.timeline, cluster);
    renderFigures(parts.figures, cluster);
    charts.update(this.#history.samples(cluster.id));
  }
}

function clone(m) {
  return h(
    "li",
    { dataset: { clone: m.clone, state: m.state, host: m.host }, title: m.reason },
    h("span", { class: "role" }, `clone ${m.clone}`),
    h("span", { class: "host" }, m.host),
    badge(m.state),
    m.exitCode !== undefined ? h("span", { class: "exit" }, `exit ${m.exitCode}`) : null,
    m.reason ? h("span", { class: "reason" }, m.reason) : null,
  );
}

/** Steps as marks on one axis from fork.begin; steps not reached yet are hollow. */
function renderTimeline(el, cluster) {
  const steps = timelineSteps(cluster);
  const end = Math.max(1, ...steps.map((s) => s.ms ?? 0));
  el.replaceChildren(
    h(
      "div",
      { class: "track" },
      ...steps.filter((s) => s.ms !== undefined).map((s) =>
        h("span", { class: "mark", style: { left: `${(100 * s.ms) / end}%` }, title: s.label })
      ),
    ),
    h(
      "ol",
      { class: "steps" },
      ...steps.map((s) =>
        h(
          "li",
          { class: s.ms === undefined ? "pending" : "done", dataset: { step: s.key, ms: s.ms } },
          h("span", { class: "label" }, s.label),
          h("span", { class: "when" }, formatMs(s.ms)),
          s.detail ? h("span", { class: "muted" }, s.detail) : null,
        )
      ),
    ),
  );
}

function renderFigures(el, cluster) {
  const t = memoryTotals(cluster);
  const tl = cluster.timeline;
  const figure = (key, label, value, text, note) =>
    h(
      "div",
      { class: "figure", dataset: { figure: key, value } },
      h("dt", null, label),
      h("dd", null, text, note ? h("small", null, note) : null),
    );
  el.replaceChildren(
    figure(
      "descriptorBytes",
      "descriptor",
      tl.descriptorBytes ?? 0,
      formatBytes(tl.descriptorBytes ?? 0),
    ),
    figure("pauseMs", "parent paused", tl.pauseMs ?? 0, formatMs(tl.pauseMs)),
    figure("pagesFetched", "pages fetched", t.pagesFetched, formatCount(t.pagesFetched)),
    figure(
      "pagesAvoided",
      "pages avoided",
      t.pagesAvoided,
      formatCount(t.pagesAvoided),
      HEURISTICS.map((k) => `${k} ${formatCount(t.avoided[k])}`).join(" · "),
    ),
    figure("multicastBytes", "multicast", t.multicastBytes, formatBytes(t.multicastBytes)),
    figure("unicastBytes", "unicast", t.unicastBytes, formatBytes(t.unicastBytes)),
    figure("faultP50Us", "fault p50", t.faultP50Us, formatUs(t.faultP50Us)),
    figure("faultP99Us", "fault p99", t.faultP99Us, formatUs(t.faultP99Us), "worst clone"),
  );
  el.dataset.reporting = String(t.reporting);
  if (t.reporting === 0 && !cluster.memory) {
    el.append(h("p", { class: "muted note" }, "No memory figures reported for this fork yet."));
  }
}

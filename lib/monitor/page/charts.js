/**
 * The small live charts of one fork, drawn by uPlot (served from its npm
 * package): pages fetched vs avoided per heuristic, wire bytes multicast vs
 * unicast, and fault latency p50/p99, each against seconds since the fork began.
 */
import uPlot from "uplot";
import { formatBytes, formatCount, formatUs } from "./model.js";

const WIDTH = 270;
const HEIGHT = 140;

/** Byte ticks at round binary sizes (1, 2, 5, 10 ... KiB), not at 48.8 KiB. */
const BYTE_TICKS = [0, 1, 2, 3, 4].flatMap((k) =>
  [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * 1024 ** k)
);

/** Each chart: its title, how its values read, and its series drawn from a sample's totals. */
const CHARTS = [
  {
    key: "pages",
    title: "Pages",
    format: formatCount,
    series: [
      { label: "fetched", color: "#2563eb", value: (t) => t.pagesFetched },
      { label: "zero", color: "#16a34a", value: (t) => t.avoided.zero },
      { label: "untouched", color: "#84cc16", value: (t) => t.avoided.untouched },
      { label: "hinted", color: "#d97706", value: (t) => t.avoided.hinted },
      { label: "free", color: "#9333ea", value: (t) => t.avoided.free },
    ],
  },
  {
    key: "bytes",
    title: "Wire bytes",
    format: formatBytes,
    ticks: BYTE_TICKS,
    series: [
      { label: "multicast", color: "#0891b2", value: (t) => t.multicastBytes },
      { label: "unicast", color: "#dc2626", value: (t) => t.unicastBytes },
    ],
  },
  {
    key: "faults",
    title: "Fault latency",
    format: formatUs,
    series: [
      { label: "p50", color: "#2563eb", value: (t) => t.faultP50Us },
      { label: "p99", color: "#dc2626", value: (t) => t.faultP99Us },
    ],
  },
];

export class ForkCharts {
  /** @type {{ spec: typeof CHARTS[number], plot: uPlot }[]} */
  #charts;

  /** @param {HTMLElement} container */
  constructor(container) {
    this.#charts = CHARTS.map((spec) => {
      const holder = document.createElement("figure");
      holder.className = "chart";
      holder.dataset.chart = spec.key;
      container.append(holder);
      const plot = new uPlot(
        {
          title: spec.title,
          width: WIDTH,
          height: HEIGHT,
          // A legend that follows the cursor would jump on every update; the
          // figures beside the charts give the current values.
          legend: { live: false },
          cursor: { show: false },
          scales: {
            x: { time: false },
            y: { range: (_u, min, max) => [0, Math.max(1, min, max)] },
          },
          axes: [
            { size: 28, values: (_u, ticks) => ticks.map((s) => `${s} s`) },
            { size: 66, values: (_u, ticks) => ticks.map(spec.format), incrs: spec.ticks },
          ],
          series: [
            {},
            ...spec.series.map((s) => ({
              label: s.label,
              stroke: s.color,
              width: 2,
              points: { size: 4 },
            })),
          ],
        },
        [[], ...spec.series.map(() => [])],
        holder,
      );
      return { spec, plot };
    });
  }

  /** @param {{ t: number, totals: any }[]} samples */
  update(samples) {
    const x = samples.map((s) => s.t);
    for (const { spec, plot } of this.#charts) {
      plot.setData([x, ...spec.series.map((s) => samples.map((p) => s.value(p.totals)))]);
    }
  }

  destroy() {
    for (const { plot } of this.#charts) plot.destroy();
  }
}

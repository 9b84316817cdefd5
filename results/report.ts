/**
 * `report`: one or more results documents as one self-contained HTML file. Chart.js (vendored in
 * `deps/chart.js/`) is inlined by default, so the file opens offline; the chart data are computed
 * here and embedded as JSON, and every string from the input is escaped. A content security policy
 * allows only the page's own scripts (by hash), so the report cannot reach the network at view time.
 *
 * Charts: latency per method per workload, speedup over sequence, KV / mask / partial-result IO,
 * roofline position, latency along sweeps, and an SVG drawing of each workload tree with
 * DeFT-Flatten's blocks.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { CHART_JS_SOURCE, CHART_JS_VERSION } from "../deps/chart_js.ts";
import { flattenTree, type Tree } from "../workloads/tree.ts";
import {
  caseProblem,
  caseRefs,
  docSeries,
  formatBytes,
  formatNs,
  formatSi,
  runLabel,
  type Series,
  seriesLabel,
} from "./document.ts";
import { boundName, cacheBytesPerS } from "./roofline.ts";
import {
  type Calibration,
  type CaseResult,
  DEFAULT_RUNTIME,
  type MethodTotal,
  type ResultsDocument,
  type WorkloadResult,
} from "./schema.ts";

/**
 * The bundled chart.js version (inlined, or fetched from the CDN with `--cdn`) and its UMD bundle,
 * for writers that ship it beside the HTML (the dashboard).
 */
export { CHART_JS_SOURCE, CHART_JS_VERSION };
/** CDN address of the same bundle. */
export const CHART_JS_CDN: string =
  `https://cdn.jsdelivr.net/npm/chart.js@${CHART_JS_VERSION}/dist/chart.umd.min.js`;

/** Options of {@linkcode renderReport}. */
export interface ReportOptions {
  /**
   * Where the page gets chart.js: `inline` (default; works offline), `cdn` (smaller file, needs the
   * network), or `{ src }`, a relative address of a shared copy (the dashboard's).
   */
  chartJs?: "inline" | "cdn" | { src: string };
  /** Page title (default: "deft-bench report" and the run label). */
  title?: string;
  /** A link shown above the title, e.g. back to the dashboard. */
  backLink?: { href: string; text: string };
}

// ---------------------------------------------------------------------------------------------
// Escaping

/** Escapes text for HTML content and quoted attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}
const esc = escapeHtml;

/** JSON that is safe inside a `<script>` element: no `<`, `>`, `&` or line separators. */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** Script text that cannot close its `<script>` element early. */
function scriptSafe(js: string): string {
  return js.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

function sha256(text: string): string {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by the dashboard)

const PALETTE: Record<string, string> = {
  "sequence": "#4e79a7",
  "radix": "#76b7b2",
  "tree-mask": "#f28e2b",
  "deft-node": "#b07aa1",
  "deft-node-chunk": "#ff9da7",
  "deft-flatten": "#e15759",
  "cascade": "#9c755f",
};
const SPARE_COLOURS = ["#59a14f", "#edc948", "#bab0ac", "#86bcb6", "#8cd17d", "#d4a6c8"];

/** A fixed colour per method, the same in every chart and every report. */
export function methodColour(method: string): string {
  const known = PALETTE[method];
  if (known) return known;
  let h = 0;
  for (let i = 0; i < method.length; i++) h = (h * 31 + method.charCodeAt(i)) >>> 0;
  return SPARE_COLOURS[h % SPARE_COLOURS.length]!;
}

/**
 * The colour of a method on a runtime: the method's colour on Deno's built-in WebGPU, a darker
 * shade of it on any other runtime, so a method's runtimes sit side by side in one hue.
 */
export function seriesColour(method: string, runtime: string = DEFAULT_RUNTIME): string {
  const base = methodColour(method);
  if (runtime === DEFAULT_RUNTIME) return base;
  const m = /^#([0-9a-f]{6})$/i.exec(base);
  if (!m) return base;
  const n = parseInt(m[1]!, 16);
  const dark = [16, 8, 0].map((sh) => Math.round(((n >> sh) & 255) * 0.6));
  return `#${dark.map((c) => c.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * The order reports show methods in, read from the documents: a run's `settings.methods` (which
 * `bench` writes in the method registry's order), then methods only its cases name. Over several
 * runs, one order that keeps each run's: a method comes after every method listed before it in
 * any run, ties (and runs that disagree) going to the earliest listed.
 */
export function methodOrder(docs: readonly ResultsDocument[]): string[] {
  const lists = docs.map((d) => [
    ...new Set([
      ...d.settings.methods,
      ...d.workloads.flatMap((w) => w.snapshots.flatMap((s) => s.cases.map((c) => c.method))),
    ]),
  ]);
  const all = [...new Set(lists.flat())];
  const before = new Map(all.map((m) => [m, new Set<string>()]));
  for (const list of lists) {
    list.forEach((m, i) => list.slice(0, i).forEach((p) => before.get(m)!.add(p)));
  }
  const out: string[] = [];
  const placed = new Set<string>();
  while (out.length < all.length) {
    const left = all.filter((m) => !placed.has(m));
    const next = left.find((m) => [...before.get(m)!].every((p) => placed.has(p))) ?? left[0]!;
    out.push(next);
    placed.add(next);
  }
  return out;
}

/** `methods` in `order`'s order (see {@linkcode methodOrder}), any others after them as given. */
export function orderMethods(methods: Iterable<string>, order: readonly string[]): string[] {
  const set = new Set(methods);
  const known = order.filter((m) => set.has(m));
  return [...known, ...[...set].filter((m) => !known.includes(m))];
}

/** Status of a method on a workload: usable everywhere, failed or errored somewhere, or absent. */
export type CellStatus = "ok" | "failed" | "error" | "missing";

function methodStatus(
  w: WorkloadResult,
  method: string,
  runtime: string = DEFAULT_RUNTIME,
): CellStatus {
  let found = false;
  let status: CellStatus = "ok";
  for (const s of w.snapshots) {
    for (const c of s.cases) {
      if (c.method !== method || c.runtime !== runtime) continue;
      found = true;
      if (c.status === "error") status = "error";
      else if (caseProblem(c) !== null && status === "ok") status = "failed";
    }
  }
  return found ? status : "missing";
}

/** A chart: a canvas id, a chart.js configuration (plain JSON) and a one-sentence caption. */
export interface ChartSpec {
  id: string;
  title: string;
  caption: string;
  config: Record<string, unknown>;
  /** Canvas height in CSS pixels. */
  height?: number;
  /** Spans the whole row of the chart grid. */
  wide?: boolean;
}

/** Axis options with a unit hint that the page script turns into tick and tooltip formatters. */
export function axis(
  title: string,
  unit: "ns" | "bytes" | "ratio" | "flops" | "intensity" | "plain",
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { title: { display: true, text: title }, deftUnit: unit, ...extra };
}

/**
 * The script that turns embedded chart specs into charts: unit formatters, a marker for failed
 * cases (never drawn as fast: no bar, a red ✗ on the axis), and a dashed reference line.
 */
export const CHART_RUNTIME: string = `(() => {
"use strict";
const sig = (x) => { const a = Math.abs(x); return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2); };
const si = (v, unit) => { if (!isFinite(v)) return String(v); const p = ["", "k", "M", "G", "T", "P", "E"]; let i = 0; while (Math.abs(v) >= 1000 && i < p.length - 1) { v /= 1000; i++; } return sig(v) + " " + p[i] + unit; };
const F = {
  ns: (v) => { const a = Math.abs(v); return a >= 1e9 ? sig(v / 1e9) + " s" : a >= 1e6 ? sig(v / 1e6) + " ms" : a >= 1e3 ? sig(v / 1e3) + " µs" : sig(v) + " ns"; },
  bytes: (v) => si(v, "B"),
  ratio: (v) => sig(v) + "×",
  flops: (v) => si(v, "FLOP/s"),
  intensity: (v) => sig(v) + " FLOP/B",
  plain: (v) => String(v),
};
const nice = (v) => { if (!(v > 0)) return false; const m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9)); return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6); };
function hydrateAxis(ax) {
  const f = F[ax.deftUnit]; if (!f || ax.deftUnit === "plain") return;
  const log = ax.type === "logarithmic";
  ax.ticks = Object.assign({}, ax.ticks, { callback: (v) => (log && !nice(Number(v))) ? "" : f(Number(v)) });
}
const failedMarks = {
  id: "deftFailed",
  afterDatasetsDraw(chart) {
    const ctx = chart.ctx, area = chart.chartArea;
    ctx.save(); ctx.fillStyle = "#c62828"; ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.font = "bold 13px system-ui, sans-serif";
    chart.data.datasets.forEach((ds, di) => {
      if (!ds.deftStatus || !chart.isDatasetVisible(di)) return;
      const meta = chart.getDatasetMeta(di);
      ds.deftStatus.forEach((st, i) => {
        if (st === "ok" || st === "missing") return;
        const el = meta.data[i];
        if (chart.options.indexAxis === "y") { if (el && isFinite(el.y)) { ctx.textBaseline = "middle"; ctx.textAlign = "left"; ctx.fillText("✗ " + st, area.left + 4, el.y); } return; }
        if (!el || !isFinite(el.x)) return;
        ctx.fillText("✗", el.x, area.bottom - 2);
      });
    });
    ctx.restore();
  },
};
const refLine = {
  id: "deftRefLine",
  afterDatasetsDraw(chart, _args, opts) {
    if (!opts || typeof opts.value !== "number") return;
    const y = chart.scales.y.getPixelForValue(opts.value), area = chart.chartArea;
    if (!(y >= area.top && y <= area.bottom)) return;
    const ctx = chart.ctx; ctx.save(); ctx.strokeStyle = "#444"; ctx.setLineDash([6, 4]); ctx.beginPath(); ctx.moveTo(area.left, y); ctx.lineTo(area.right, y); ctx.stroke();
    if (opts.label) { ctx.fillStyle = "#444"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "right"; ctx.fillText(opts.label, area.right - 4, y - 4); }
    ctx.restore();
  },
};
function tooltipUnit(cfg) {
  const y = (cfg.options.scales || {}).y || {}, x = (cfg.options.scales || {}).x || {};
  const fy = F[y.deftUnit], fx = F[x.deftUnit];
  const horizontal = cfg.options.indexAxis === "y";
  return (item) => {
    const raw = item.raw, lab = item.dataset.label || "";
    if (raw && typeof raw === "object" && "x" in raw) {
      const ex = raw.deftLabel ? raw.deftLabel + ": " : "";
      return lab + ": " + ex + (fx ? fx(raw.x) : raw.x) + ", " + (fy ? fy(raw.y) : raw.y);
    }
    const f = horizontal ? fx : fy;
    return lab + ": " + (f ? f(Number(item.raw)) : item.formattedValue);
  };
}
Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', sans-serif";
Chart.defaults.animation = false;
const specs = JSON.parse(document.getElementById("deft-charts").textContent);
for (const spec of specs) {
  const canvas = document.getElementById(spec.id); if (!canvas) continue;
  const cfg = spec.config;
  cfg.options = cfg.options || {};
  cfg.options.responsive = true; cfg.options.maintainAspectRatio = false; cfg.options.animation = false;
  for (const ax of Object.values(cfg.options.scales || {})) hydrateAxis(ax);
  cfg.options.plugins = cfg.options.plugins || {};
  cfg.options.plugins.tooltip = Object.assign({}, cfg.options.plugins.tooltip, { callbacks: { label: tooltipUnit(cfg) } });
  cfg.plugins = [failedMarks, refLine];
  new Chart(canvas, cfg);
}
})();`;

const CSS = `
:root { color-scheme: light; --fg: #1d2329; --muted: #5b6570; --line: #d9dee3; --bad: #c62828; --warn: #8a5a00; --bg-warn: #fff6e0; --bg-bad: #fdecea; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f6f7f9; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 4px 0 2px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
a { color: #1f5fa8; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
figure h3 { margin: 0 0 6px; }
figure.wide { grid-column: 1 / -1; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
.chart { position: relative; width: 100%; }
table { border-collapse: collapse; background: #fff; font-size: 12.5px; width: 100%; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kv th { width: 34%; }
.tables { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 14px; }
.scroll { overflow-x: auto; }
tr.bad td { background: var(--bg-bad); }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 11px; font-weight: 700; }
.badge.bad { background: var(--bad); color: #fff; } .badge.ok { background: #2e7d32; color: #fff; } .badge.warn { background: #f0b429; color: #222; }
.notice { border-left: 4px solid #f0b429; background: var(--bg-warn); padding: 6px 10px; margin: 6px 0; }
.notice.bad { border-color: var(--bad); background: var(--bg-bad); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
.tree { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; overflow-x: auto; }
.tree svg { display: block; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
`;

// ---------------------------------------------------------------------------------------------
// Charts of one run

function workloadLabel(w: WorkloadResult): string {
  return w.sweep ? `${w.name} (${w.sweep.parameter}=${w.sweep.value})` : w.name;
}

/**
 * Every (method, runtime) of a run with at least one case, methods in the run's own order
 * (`settings.methods`, then methods only its cases name: {@linkcode methodOrder}).
 */
function seriesOf(doc: ResultsDocument): Series[] {
  return docSeries(doc);
}

/** The total of a series on a workload. */
function totalOf(
  w: WorkloadResult,
  s: Pick<Series, "method" | "runtime">,
): MethodTotal | undefined {
  return w.totals.find((x) => x.method === s.method && x.runtime === s.runtime);
}

/** Chart.js dataset styling of a series: its colour, dashed lines off the default runtime. */
function seriesStyle(s: Pick<Series, "method" | "runtime">, line = false): Record<string, unknown> {
  const colour = seriesColour(s.method, s.runtime);
  return {
    backgroundColor: colour,
    borderColor: colour,
    ...(line && s.runtime !== DEFAULT_RUNTIME ? { borderDash: [6, 3] } : {}),
  };
}

function latencyChart(doc: ResultsDocument, id: string): ChartSpec {
  const series = seriesOf(doc);
  return {
    id,
    title: "Latency per method per workload",
    caption:
      "Estimated mean attention latency of one decoding iteration for one layer (weighted median over the sampled iterations) of each method on each workload; lower is better, and a red ✗ marks a method that failed or errored there, drawn without a bar.",
    config: {
      type: "bar",
      data: {
        labels: doc.workloads.map(workloadLabel),
        datasets: series.map((x) => {
          const status = doc.workloads.map((w) => methodStatus(w, x.method, x.runtime));
          return {
            label: x.label,
            ...seriesStyle(x),
            data: doc.workloads.map((w, i) => {
              const t = totalOf(w, x);
              return status[i] === "ok" && t && t.complete ? t.meanIterationNs : null;
            }),
            deftStatus: status,
          };
        }),
      },
      options: {
        scales: {
          x: axis("workload", "plain"),
          y: axis("mean iteration latency (1 layer)", "ns", { beginAtZero: true }),
        },
      },
    },
  };
}

function speedupChart(doc: ResultsDocument, id: string): ChartSpec | null {
  const series = seriesOf(doc).filter((x) => x.method !== "sequence");
  const any = doc.workloads.some((w) => w.totals.some((t) => t.speedupVsSequence !== null));
  if (!any || series.length === 0) return null;
  return {
    id,
    title: "Speedup over sequence",
    caption:
      `Speedup of each method over sequence (Flash-Decoding style, every query reads its whole root-to-leaf KV) on the same workload${
        doc.settings.runtimes.length > 1 ? " and runtime" : ""
      } in this run, the sequence run time divided by the method's; bars above the dashed 1× line are faster, and ✗ marks a method that failed.`,
    config: {
      type: "bar",
      data: {
        labels: doc.workloads.map(workloadLabel),
        datasets: series.map((x) => {
          const status = doc.workloads.map((w) => methodStatus(w, x.method, x.runtime));
          return {
            label: x.label,
            ...seriesStyle(x),
            data: doc.workloads.map((w, i) => {
              const t = totalOf(w, x);
              return status[i] === "ok" && t ? t.speedupVsSequence : null;
            }),
            deftStatus: status,
          };
        }),
      },
      options: {
        scales: {
          x: axis("workload", "plain"),
          y: axis("speedup over sequence", "ratio", { beginAtZero: true }),
        },
        plugins: { deftRefLine: { value: 1, label: "sequence = 1×" } },
      },
    },
  };
}

/**
 * With several runtimes: each runtime's speedup over the first, method by method and workload by
 * workload, from the one run that measured both.
 */
function runtimeChart(doc: ResultsDocument, id: string): ChartSpec | null {
  const [first, ...others] = doc.settings.runtimes;
  if (!first || others.length === 0) return null;
  const series = seriesOf(doc).filter((x) => x.runtime !== first);
  return {
    id,
    title: `Speedup over ${first}`,
    caption: `Each method's run time on ${first} divided by its run time on ${
      others.join(" and ")
    } on the same workload, both measured in this run; bars above the dashed 1× line are faster than ${first}, and ✗ marks a side that failed.`,
    config: {
      type: "bar",
      data: {
        labels: doc.workloads.map(workloadLabel),
        datasets: series.map((x) => {
          const status = doc.workloads.map((w): CellStatus => {
            const a = methodStatus(w, x.method, first), b = methodStatus(w, x.method, x.runtime);
            return a === "ok" ? b : a;
          });
          return {
            label: x.label,
            ...seriesStyle(x),
            data: doc.workloads.map((w, i) => {
              const a = totalOf(w, { method: x.method, runtime: first });
              const b = totalOf(w, x);
              return status[i] === "ok" && a?.complete && b?.complete && b.runNs > 0
                ? a.runNs / b.runNs
                : null;
            }),
            deftStatus: status,
          };
        }),
      },
      options: {
        scales: {
          x: axis("workload", "plain"),
          y: axis(`speedup over ${first}`, "ratio", { beginAtZero: true }),
        },
        plugins: { deftRefLine: { value: 1, label: `${first} = 1×` } },
      },
    },
  };
}

function ioChart(doc: ResultsDocument, id: string): ChartSpec {
  // IO is a fact of the plan: one row per method (its first runtime's numbers).
  const seen = new Set<string>();
  const methods = seriesOf(doc).filter((x) => !seen.has(x.method) && seen.add(x.method));
  const labels: string[] = [];
  const kv: (number | null)[] = [];
  const mask: (number | null)[] = [];
  const partial: (number | null)[] = [];
  const real: (number | null)[] = [];
  const status: CellStatus[] = [];
  for (const w of doc.workloads) {
    for (const x of methods) {
      const st = methodStatus(w, x.method, x.runtime);
      if (st === "missing") continue;
      const t = totalOf(w, x);
      const ok = st === "ok" && t !== undefined;
      labels.push(`${workloadLabel(w)} · ${x.method}`);
      kv.push(ok ? t.paperIo.kvBytes : null);
      mask.push(ok ? t.paperIo.maskBytes : null);
      partial.push(ok ? t.paperIo.partialBytes : null);
      real.push(ok ? t.realBytes : null);
      status.push(st);
    }
  }
  return {
    id,
    title: "KV, mask and partial-result IO per method",
    caption:
      "Bytes each method moves over the whole run for the whole model in the paper's accounting (Tables 12 and 17: KV cache, mask and partial results, stacked), with the bytes this implementation really moves as black crosses; a red ✗ marks a method that failed.",
    height: Math.max(260, 60 + 15 * labels.length),
    wide: true,
    config: {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: "KV cache (paper)", data: kv, backgroundColor: "#4e79a7", stack: "paper" },
          { label: "mask (paper)", data: mask, backgroundColor: "#f28e2b", stack: "paper" },
          {
            label: "partial results (paper)",
            data: partial,
            backgroundColor: "#e15759",
            stack: "paper",
            deftStatus: status,
          },
          {
            label: "real bytes (this implementation)",
            type: "line",
            data: real,
            stack: "real",
            showLine: false,
            pointStyle: "crossRot",
            pointRadius: 6,
            pointBorderWidth: 2,
            borderColor: "#111",
            backgroundColor: "#111",
          },
        ],
      },
      options: {
        indexAxis: "y",
        scales: {
          x: axis("bytes over the run (whole model)", "bytes", {
            stacked: true,
            beginAtZero: true,
          }),
          y: axis("workload · method", "plain", { stacked: true, ticks: { autoSkip: false } }),
        },
      },
    },
  };
}

function logGrid(lo: number, hi: number, n: number): number[] {
  const a = Math.log10(lo), b = Math.log10(hi);
  return Array.from({ length: n }, (_, i) => 10 ** (a + (b - a) * i / (n - 1)));
}

function rooflineChart(doc: ResultsDocument, id: string): ChartSpec | null {
  const bySeries = new Map<string, { x: number; y: number; deftLabel: string }[]>();
  // The same cases at their DRAM intensity (FLOPs per byte that must cross DRAM).
  const dram: { x: number; y: number; deftLabel: string }[] = [];
  for (const r of caseRefs(doc)) {
    const c = r.case;
    if (caseProblem(c) !== null || c.counts.real.totalBytes <= 0 || c.counts.flops <= 0) continue;
    const y = c.roofline?.achievedFlopsPerS ?? c.counts.flops / c.timing!.medianNs * 1e9;
    if (!(y > 0)) continue;
    const k = `${c.method}\n${c.runtime}`;
    const list = bySeries.get(k) ?? [];
    list.push({ x: c.counts.flops / c.counts.real.totalBytes, y, deftLabel: r.key });
    bySeries.set(k, list);
    if (c.counts.dramBytes > 0) {
      dram.push({ x: c.counts.flops / c.counts.dramBytes, y, deftLabel: `${r.key} (DRAM bytes)` });
    }
  }
  if (bySeries.size === 0) return null;
  const points = [...bySeries.values()].flat();
  const xs = [...points, ...dram].map((p) => p.x);
  const datasets: Record<string, unknown>[] = seriesOf(doc)
    .filter((x) => bySeries.has(`${x.method}\n${x.runtime}`))
    .map((x) => ({
      label: x.label,
      type: "scatter",
      data: bySeries.get(`${x.method}\n${x.runtime}`)!,
      ...seriesStyle(x),
      pointRadius: 4,
    }));
  // One set of roofs per runtime with a calibration (their FMA peaks differ on the same GPU).
  const many = doc.runtimes.length > 1;
  const ceilings: { cal: Calibration; label: string }[] = doc.runtimes.length
    ? doc.runtimes.filter((r) => r.calibration).map((r) => ({
      cal: r.calibration!,
      label: many ? ` ${r.name}` : "",
    }))
    : doc.calibration
    ? [{ cal: doc.calibration, label: "" }]
    : [];
  const ROOF_COLOURS = [["#333", "#888"], ["#8a4f00", "#c99a4b"]];
  let ceiling = "";
  if (ceilings.length > 0 && dram.length > 0) {
    datasets.push({
      label: "cases at DRAM intensity (hollow)",
      type: "scatter",
      data: dram,
      backgroundColor: "rgba(0,0,0,0)",
      borderColor: "#777",
      pointRadius: 3,
    });
  }
  let anyL2 = false;
  for (const [i, { cal, label }] of ceilings.entries()) {
    const peakFlops = doc.settings.dtype === "f16" && cal.f16FlopsPerS !== null
      ? cal.f16FlopsPerS
      : cal.f32FlopsPerS;
    const bw = cal.peakReadBytesPerS;
    const l2 = cacheBytesPerS(cal);
    anyL2 ||= l2 !== null;
    // Loops, not Math.min(...xs): spreading an input-sized array overflows the stack.
    let lo = peakFlops / bw, hi = peakFlops / bw;
    for (const x of xs) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
    lo /= 4;
    hi *= 4;
    const [dramColour, l2Colour] = ROOF_COLOURS[Math.min(i, ROOF_COLOURS.length - 1)]!;
    const roof = (name: string, rate: number, colour: string, dash: number[]) =>
      datasets.push({
        label: name,
        type: "line",
        data: logGrid(lo, hi, 64).map((x) => ({ x, y: Math.min(peakFlops, x * rate) })),
        borderColor: colour,
        backgroundColor: colour,
        borderDash: dash,
        borderWidth: 1.5,
        pointRadius: 0,
        fill: false,
      });
    roof(
      `DRAM roof${label} (${formatSi(bw, "B/s")}, ${formatSi(peakFlops, "FLOP/s")})`,
      bw,
      dramColour!,
      [5, 3],
    );
    if (l2 !== null) roof(`L2 roof${label} (${formatSi(l2, "B/s")})`, l2, l2Colour!, [2, 2]);
    const mx = cal.matrixFlopsPerS;
    if (typeof mx === "number" && mx > 0) {
      // The matrix kernels' compute roof: flat at the subgroup-matrix peak, under the L2 (or DRAM)
      // bandwidth slope.
      const rate = l2 ?? bw;
      datasets.push({
        label: `matrix-unit roof${label} (${formatSi(mx, "FLOP/s")}, mma kernels)`,
        type: "line",
        data: logGrid(lo, hi * (mx / peakFlops), 64).map((x) => ({ x, y: Math.min(mx, x * rate) })),
        borderColor: l2Colour!,
        backgroundColor: l2Colour!,
        borderDash: [8, 2, 2, 2],
        borderWidth: 1.5,
        pointRadius: 0,
        fill: false,
      });
    }
  }
  if (ceilings.length > 0) {
    ceiling = ` under the calibrated roofs of ${
      many ? "each runtime" : "this adapter"
    }: FMA peak, ${
      anyL2 ? "L2 read bandwidth (for all bytes moved) and " : ""
    }DRAM read bandwidth (for the bytes that must cross DRAM, the hollow points at their DRAM intensity)`;
  }
  return {
    id,
    title: "Roofline position",
    caption:
      `Achieved FLOP/s of every successful case against its arithmetic intensity (executed FLOPs per byte really moved, filled points)${ceiling}${
        ceilings.length ? "" : " (no calibration in this run, so no ceiling is drawn)"
      }; points close to the line use the hardware well.`,
    config: {
      type: "scatter",
      data: { datasets },
      options: {
        scales: {
          x: axis("arithmetic intensity", "intensity", { type: "logarithmic" }),
          y: axis("achieved", "flops", { type: "logarithmic" }),
        },
      },
    },
  };
}

function sweepCharts(doc: ResultsDocument, idBase: string): ChartSpec[] {
  const params = [
    ...new Set(doc.workloads.flatMap((w) => (w.sweep ? [w.sweep.parameter] : []))),
  ];
  return params.map((param, k) => {
    const ws = doc.workloads.filter((w) => w.sweep?.parameter === param)
      .sort((a, b) => a.sweep!.value - b.sweep!.value);
    const series = seriesOf(doc).filter((x) => ws.some((w) => totalOf(w, x)));
    return {
      id: `${idBase}-${k}`,
      title: `Latency against ${param}`,
      caption:
        `Mean iteration latency (one layer) of each method as ${param} grows, one point per workload of the sweep; gaps with a ✗ are failed cases.`,
      config: {
        type: "line",
        data: {
          datasets: series.map((x) => {
            const status = ws.map((w) => methodStatus(w, x.method, x.runtime));
            return {
              label: x.label,
              ...seriesStyle(x, true),
              data: ws.map((w, i) => {
                const t = totalOf(w, x);
                return {
                  x: w.sweep!.value,
                  y: status[i] === "ok" && t && t.complete ? t.meanIterationNs : null,
                };
              }),
              deftStatus: status,
              spanGaps: false,
            };
          }),
        },
        options: {
          scales: {
            x: axis(param, "plain", { type: "linear" }),
            y: axis("mean iteration latency (1 layer)", "ns", { beginAtZero: true }),
          },
        },
      },
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Tree drawing

/** Largest value (at least `floor`), in a loop: `Math.max(...a)` overflows on large inputs. */
function maxOf(values: ArrayLike<number>, floor: number): number {
  let m = floor;
  for (let i = 0; i < values.length; i++) m = Math.max(m, values[i]!);
  return m;
}

const fmtNum = (x: number) => Math.round(x * 10) / 10;
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** Most blocks drawn one by one; larger trees draw groups of consecutive blocks. */
export const MAX_DRAWN_BLOCKS = 2048;

/**
 * An SVG of a tree: nodes as bars on one row per depth, placed left to right in DFS order at their
 * offset in the flattened KV (so children sit right of their parent, joined by elbows); the
 * flattened KV strip; DeFT-Flatten's blocks of `blockSize` tokens; and the queries per block.
 */
export function renderTreeSvg(tree: Tree, blockSize: number): string {
  const f = flattenTree(tree, blockSize);
  const { ix, order, offset } = f;
  const n = ix.nodeCount;
  // Width per node: a small minimum keeps one-token nodes visible next to long prompts.
  const W = Math.min(16000, Math.max(1120, n * 6));
  const minW = Math.min(4, (W * 0.4) / n);
  const k = (W - n * minW) / f.totalTokens;
  const X = new Array<number>(n).fill(0);
  const Wd = new Array<number>(n).fill(0);
  let x = 0;
  for (const v of order) {
    X[v] = x;
    Wd[v] = minW + k * ix.tokens(v);
    x += Wd[v]!;
  }
  const posX = (tok: number): number => {
    // Binary search for the node holding token `tok` in DFS order.
    let lo = 0, hi = order.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offset[order[mid]!]! <= tok) lo = mid;
      else hi = mid - 1;
    }
    const v = order[lo]!;
    const frac = Math.min(1, (tok - offset[v]!) / ix.tokens(v));
    return X[v]! + Wd[v]! * frac;
  };
  let depth = 0;
  for (let v = 0; v < n; v++) depth = Math.max(depth, ix.depth[v]!);
  const rowH = Math.max(5, Math.min(22, 380 / depth));
  const left = 70;
  const top = 8;
  const treeH = depth * rowH;
  const stripY = top + treeH + 14;
  const stripH = 16;
  const blockY = stripY + stripH + 4;
  const blockH = 14;
  const qY = blockY + blockH + 6;
  const qH = 34;
  const height = qY + qH + 18;
  const width = left + W + 10;
  const queriesOn = new Array<number>(n).fill(0);
  for (let q = 0; q < ix.queryCount; q++) queriesOn[ix.queryNode[q]!]!++;
  const hue = (i: number) => (i * 137.508) % 360;
  const dfsIndex = new Array<number>(n).fill(0);
  order.forEach((v, i) => (dfsIndex[v] = i));
  const out: string[] = [];
  const maxQ = maxOf(f.blockQueries, 1);
  // Past MAX_DRAWN_BLOCKS, consecutive blocks are drawn as one group (a pixel cannot hold more).
  const group = Math.max(1, Math.ceil(f.blocks / MAX_DRAWN_BLOCKS));
  const units = Math.ceil(f.blocks / group);
  const label =
    `Tree of ${n} nodes and ${ix.queryCount} queries, ${f.totalTokens} KV tokens flattened in DFS order and cut into ${f.blocks} blocks of ${blockSize} tokens${
      group > 1 ? `, drawn in groups of ${group} blocks` : ""
    }`;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" ${
      W <= 1120 ? `width="100%"` : `width="${fmtNum(width)}" height="${fmtNum(height)}"`
    } viewBox="0 0 ${fmtNum(width)} ${fmtNum(height)}" role="img" aria-label="${esc(label)}">`,
  );
  out.push(
    `<g font-family="system-ui, sans-serif" font-size="10" fill="#5b6570"><text x="4" y="${
      fmtNum(top + 10)
    }">depth 1</text><text x="4" y="${fmtNum(top + treeH)}">depth ${depth}</text><text x="4" y="${
      fmtNum(stripY + 12)
    }">DFS KV</text><text x="4" y="${fmtNum(blockY + 11)}">blocks</text><text x="4" y="${
      fmtNum(qY + 12)
    }">queries</text><text x="4" y="${fmtNum(qY + 24)}">per block</text></g>`,
  );
  // Block bands behind everything, alternating shades (one band per drawn group of blocks).
  const bands: string[] = [];
  for (let u = 0; u < units; u++) {
    const x0 = posX(u * group * blockSize);
    const x1 = u === units - 1
      ? X[order[order.length - 1]!]! + Wd[order[order.length - 1]!]!
      : posX((u + 1) * group * blockSize);
    if (u % 2 === 0) continue;
    bands.push(
      `M${fmtNum(left + x0)} ${top}h${fmtNum(Math.max(0.5, x1 - x0))}V${fmtNum(blockY + blockH)}h${
        fmtNum(-Math.max(0.5, x1 - x0))
      }Z`,
    );
  }
  if (bands.length) out.push(`<path d="${bands.join("")}" fill="#eef3fa"/>`);
  // Elbows from each parent to its children.
  const elbows: string[] = [];
  for (let v = 0; v < n; v++) {
    const p = ix.parent[v]!;
    if (p < 0) continue;
    const px = left + X[p]! + Math.min(2, Wd[p]! / 2);
    const py = top + (ix.depth[p]! - 1) * rowH + rowH - 2;
    const cy = top + (ix.depth[v]! - 1) * rowH + rowH / 2;
    elbows.push(`M${fmtNum(px)} ${fmtNum(py)}V${fmtNum(cy)}H${fmtNum(left + X[v]!)}`);
  }
  if (elbows.length) {
    out.push(`<path d="${elbows.join("")}" fill="none" stroke="#9aa5b1" stroke-width="0.8"/>`);
  }
  // Nodes on their depth rows and again in the flattened strip.
  for (const v of order) {
    const node = ix.tree.nodes[v]!;
    const tokens = ix.tokens(v);
    const first = Math.floor(offset[v]! / blockSize);
    const last = Math.floor((offset[v]! + tokens - 1) / blockSize);
    const colour = `hsl(${fmtNum(hue(dfsIndex[v]!))} 55% ${queriesOn[v]! > 0 ? 48 : 62}%)`;
    const tip = `node ${node.id}: ${tokens} tokens, depth ${ix.depth[v]}, ${
      plural(queriesOn[v]!, "query", "queries")
    } here; KV tokens ${offset[v]}–${offset[v]! + tokens - 1} of the DFS flattening, block${
      first === last ? ` ${first}` : `s ${first}–${last}`
    }`;
    const y = top + (ix.depth[v]! - 1) * rowH;
    const w = fmtNum(Math.max(0.6, Wd[v]! - 0.6));
    out.push(
      `<g><title>${esc(tip)}</title><rect x="${fmtNum(left + X[v]!)}" y="${
        fmtNum(y + 1)
      }" width="${w}" height="${fmtNum(rowH - 3)}" fill="${colour}"${
        queriesOn[v]! > 0 ? ` stroke="#1d2329" stroke-width="0.6"` : ""
      }/><rect x="${
        fmtNum(left + X[v]!)
      }" y="${stripY}" width="${w}" height="${stripH}" fill="${colour}"/></g>`,
    );
  }
  // Block boundaries across the drawing, block labels, padding and queries per block.
  const cuts: string[] = [];
  const qbars: string[] = [];
  const labels: string[] = [];
  const endX = X[order[order.length - 1]!]! + Wd[order[order.length - 1]!]!;
  for (let u = 0; u < units; u++) {
    const b0 = u * group;
    const b1 = Math.min(f.blocks, b0 + group) - 1;
    const x0 = posX(b0 * blockSize);
    const x1 = u === units - 1 ? endX : posX((b1 + 1) * blockSize);
    const name = b0 === b1 ? `b${b0}` : `b${b0}–${b1}`;
    if (u > 0) cuts.push(`M${fmtNum(left + x0)} ${top}V${fmtNum(blockY + blockH)}`);
    if (x1 - x0 >= 16 * (name.length / 3)) {
      labels.push(
        `<text x="${fmtNum(left + (x0 + x1) / 2)}" y="${fmtNum(blockY + 10.5)}">${name}</text>`,
      );
    }
    let q = 0;
    for (let b = b0; b <= b1; b++) q = Math.max(q, f.blockQueries[b]!);
    const h = (qH * q) / maxQ;
    qbars.push(
      `<rect x="${fmtNum(left + x0 + 0.3)}" y="${fmtNum(qY + qH - h)}" width="${
        fmtNum(Math.max(0.4, x1 - x0 - 0.6))
      }" height="${fmtNum(h)}"><title>${b0 === b1 ? `block ${b0}` : `blocks ${b0}–${b1}`}: tokens ${
        b0 * blockSize
      }–${Math.min(f.totalTokens, (b1 + 1) * blockSize) - 1}, ${b0 === b1 ? "" : "at most "}${
        plural(q, "query", "queries")
      }</title></rect>`,
    );
  }
  if (cuts.length) {
    out.push(
      `<path d="${
        cuts.join("")
      }" stroke="#1f5fa8" stroke-width="0.8" stroke-dasharray="3 2" opacity="0.7"/>`,
    );
  }
  out.push(
    `<rect x="${left}" y="${blockY}" width="${
      fmtNum(endX)
    }" height="${blockH}" fill="none" stroke="#1f5fa8" stroke-width="0.8"/>`,
  );
  out.push(
    `<g font-family="system-ui, sans-serif" font-size="9" fill="#1f5fa8" text-anchor="middle">${
      labels.join("")
    }</g>`,
  );
  out.push(`<g fill="#76b7b2">${qbars.join("")}</g>`);
  out.push(
    `<text x="${fmtNum(left + endX)}" y="${
      fmtNum(qY - 1)
    }" font-family="system-ui, sans-serif" font-size="9" fill="#5b6570" text-anchor="end">max ${maxQ}</text>`,
  );
  out.push(`</svg>`);
  return out.join("");
}

/** DeFT-Flatten's block size on a workload (its first case's, which tuning may set), else the run's. */
function flattenBlockSize(doc: ResultsDocument, w: WorkloadResult): number {
  for (const s of w.snapshots) {
    for (const c of s.cases) {
      const b = c.method === "deft-flatten" ? c.options.blockSize : undefined;
      if (typeof b === "number" && Number.isSafeInteger(b) && b > 0) return b;
    }
  }
  return doc.settings.blockSize;
}

function treeFigure(w: WorkloadResult, blockSize: number, open: boolean): string {
  const snap = w.snapshots.find((s) => s.tree !== null);
  const head = `<summary>${esc(workloadLabel(w))}: tree and DeFT-Flatten blocks</summary>`;
  if (!snap) {
    return `<details${
      open ? " open" : ""
    }>${head}<p class="sub">No snapshot of this workload stored its tree (trees over 4096 nodes are not kept).</p></details>`;
  }
  let body: string;
  try {
    const f = flattenTree(snap.tree!, blockSize);
    const pad = f.blocks * blockSize - f.totalTokens;
    const meanQ = f.blockQueries.reduce((s, q) => s + q, 0) / Math.max(1, f.blocks);
    body = `<div class="tree">${
      renderTreeSvg(snap.tree!, blockSize)
    }</div><p class="sub">Iteration ${esc(snap.iteration)} of ${
      esc(w.iterations)
    }: ${f.ix.nodeCount} nodes, ${f.ix.queryCount} queries, N_tree = ${f.totalTokens} tokens in ${f.blocks} block(s) of b_s = ${blockSize} (the last padded by ${pad}); queries per block: mean ${
      meanQ.toFixed(1)
    }, max ${maxOf(f.blockQueries, 0)}${
      f.blocks > MAX_DRAWN_BLOCKS
        ? `; drawn in groups of ${Math.ceil(f.blocks / MAX_DRAWN_BLOCKS)} blocks`
        : ""
    }. Hover a node or a block for details.</p>`;
  } catch (e) {
    body = `<p class="notice bad">The stored tree cannot be drawn: ${
      esc((e as Error).message)
    }</p>`;
  }
  return `<details${
    open ? " open" : ""
  }>${head}<figure><figcaption>The workload tree (one row per depth; children right of their parent in depth-first order, at their place in the flattened KV), the DFS-flattened KV below it, and how DeFT-Flatten cuts that KV into equal blocks of b_s tokens (dashed lines, shaded bands), with the number of queries each block serves.</figcaption>${body}</figure></details>`;
}

// ---------------------------------------------------------------------------------------------
// Tables

function kvTable(rows: [string, string][]): string {
  return `<table class="kv">${
    rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("")
  }</table>`;
}

function environmentTable(doc: ResultsDocument): string {
  const e = doc.environment;
  const a = e.adapter;
  const duration = (Date.parse(e.finishedAt) - Date.parse(e.startedAt)) / 1000;
  const rows: [string, string][] = [
    [
      "adapter",
      `${esc([a.vendor, a.architecture, a.device].filter((s) => s).join(" / ") || "unknown")}${
        a.description ? ` — ${esc(a.description)}` : ""
      }${a.isFallbackAdapter ? ` <span class="badge warn">fallback (software)</span>` : ""}`,
    ],
    [
      "features",
      a.features.length ? a.features.map((f) => `<code>${esc(f)}</code>`).join(" ") : "none",
    ],
    ["Deno / V8 / TypeScript", `${esc(e.deno)} / ${esc(e.v8)} / ${esc(e.typescript)}`],
    ...doc.runtimes.map((r): [string, string] => [
      `runtime ${r.name}`,
      `${esc(r.version)}${r.source ? ` from <code>${esc(r.source)}</code>` : ""}${
        r.flags.length ? `; flags ${r.flags.map((f) => `<code>${esc(f)}</code>`).join(" ")}` : ""
      }; adapter ${
        esc(r.adapter.description || [r.adapter.vendor, r.adapter.architecture].join(" "))
      }${
        r.adapter.isFallbackAdapter ? ` <span class="badge warn">fallback</span>` : ""
      }; features ${r.adapter.features.map((f) => `<code>${esc(f)}</code>`).join(" ")}${
        r.adapter.subgroupMatrixConfigs?.length
          ? `; subgroup matrices ${
            esc(
              r.adapter.subgroupMatrixConfigs.map((c) =>
                `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`
              ).join(", "),
            )
          }`
          : ""
      }; ${esc(r.timingMode)} timing${
        r.tickRatio === null ? "" : `, tick check ${esc(r.tickRatio.toFixed(4))}`
      }`,
    ]),
    ["OS / arch / CPU", `${esc(e.os)} / ${esc(e.arch)} / ${esc(e.cpu ?? "unknown")}`],
    [
      "commit",
      e.gitCommit
        ? `<code>${esc(e.gitCommit)}</code>${
          e.gitDirty ? ` <span class="badge warn">dirty</span>` : ""
        }`
        : "unknown",
    ],
    [
      "time",
      `${esc(e.startedAt)} → ${esc(e.finishedAt)}${
        Number.isFinite(duration) ? ` (${duration.toFixed(0)} s)` : ""
      }`,
    ],
    ["command", `<code>${esc(["deft-bench", ...e.command].join(" "))}</code>`],
    [
      "timestamp tick check",
      e.tickRatio === null
        ? "not checked"
        : `${esc(e.tickRatio.toFixed(4))} (GPU time / wall time)`,
    ],
    ["clock check", clockText(e.clock ?? null)],
  ];
  const limits = Object.entries(a.limits);
  let extra = "";
  if (limits.length) {
    extra += `<details><summary>Device limits</summary>${
      kvTable(limits.map(([k, v]) => [k, esc(v)]))
    }</details>`;
  }
  if (e.nvidiaSmi) {
    const keys = [
      ...new Set([...Object.keys(e.nvidiaSmi.before), ...Object.keys(e.nvidiaSmi.after)]),
    ];
    extra += `<details><summary>nvidia-smi before / after</summary>${
      kvTable(
        keys.map((
          k,
        ) => [k, `${esc(e.nvidiaSmi!.before[k] ?? "–")} / ${esc(e.nvidiaSmi!.after[k] ?? "–")}`]),
      )
    }</details>`;
  }
  return kvTable(rows) + extra;
}

function clockText(k: ResultsDocument["environment"]["clock"] | null): string {
  if (!k) return `not checked <span class="badge warn">no clock guard</span>`;
  const smi = k.smi
    ? `; nvidia-smi: ${esc(k.smi.readings)} readings, working SM clock ${
      k.smi.workingSmMHz === null ? "–" : `${esc(k.smi.workingSmMHz)} MHz`
    } of ${k.smi.maxSmMHz === null ? "–" : `${esc(k.smi.maxSmMHz)} MHz`}`
    : "";
  return `reference ${esc(formatNs(k.workingNs))} per dispatch at the working clock (${
    esc(k.workingSource === "calibration" ? "calibrated" : "best of this run")
  }); ${esc(k.stableSpinUps)}/${esc(k.spinUps)} spin-ups stable (${
    esc((k.spinUpMs / 1000).toFixed(1))
  } s); lead ${esc(formatNs(k.leadNs))}${smi}; ${
    k.lowClockCases > 0
      ? `<span class="badge bad">${esc(k.lowClockCases)} case(s) below ${
        esc(k.lowClockFraction * 100)
      } % of the working speed</span>`
      : `no case below ${esc(k.lowClockFraction * 100)} % of the working speed`
  }`;
}

function settingsTable(doc: ResultsDocument): string {
  const s = doc.settings;
  const t = s.timing;
  const rows: [string, string][] = [
    ["methods", s.methods.map((m) => `<code>${esc(m)}</code>`).join(" ")],
    [
      "model shape / dtype",
      `${esc(s.shape.name)}: ${esc(s.shape.qHeads)} query heads, ${
        esc(s.shape.kvHeads)
      } KV heads, d = ${esc(s.shape.headDim)}, ${esc(s.shape.layers)} layers / ${esc(s.dtype)}`,
    ],
    ["block size / chunk size", `${esc(s.blockSize)} / ${esc(s.chunkSize)} tokens`],
    ["runtimes / kernel family", `${esc(s.runtimes.join(", "))} / ${esc(s.kernel)}`],
    ...doc.runtimes.filter((r) => r.tuning).map((r): [string, string] => [
      `stored tuning (${r.name})`,
      `<code>${esc(r.tuning!.file)}</code>, tuned ${esc(r.tuning!.tunedAt)}: ${
        esc(
          Object.entries(r.tuning!.applied).map(([m, o]) =>
            `${m} ${Object.entries(o ?? {}).map(([k, v]) => `${k}=${v}`).join(" ")}`
          ).join("; "),
        )
      }`,
    ]),
    [
      "scale",
      s.scale === 1
        ? "1 (the paper's sizes)"
        : `${esc(s.scale)} <span class="badge warn">scaled</span>${
          s.scaleReason ? ` — ${esc(s.scaleReason)}` : ""
        }`,
    ],
    ["sampled iterations / seed", `${esc(s.samplesPerRun)} per workload / ${esc(s.seed)}`],
    [
      "verification",
      s.verify ? `on, ${esc(s.verifyRows)} rows per case against the float64 reference` : "off",
    ],
    [
      "timing mode",
      t.mode === "timestamp"
        ? "timestamp queries around each sample's compute pass"
        : `wall clock, batched <span class="badge warn">coarse</span> — no timestamp-query; many repetitions per submit timed by the wall clock`,
    ],
    [
      "samples",
      `${
        t.repetitionsPerSample > 0
          ? `${esc(t.repetitionsPerSample)} repetition(s) per sample`
          : "repetitions per sample chosen per case"
      }; ${esc(t.minSamples)}–${esc(t.maxSamples)} samples, stop at a 95 % CI half-width below ${
        esc(+(t.targetRelativeCi * 100).toFixed(2))
      } % of the median`,
    ],
    [
      "budget",
      `warm-up ${esc(t.warmupMs)} ms, ${esc(t.budgetMs)} ms per case; ${
        t.cold ? "cold (L2 flushed between samples)" : "hot"
      }; ${t.interleaved ? "methods interleaved round-robin" : "methods in sequence"}`,
    ],
  ];
  return kvTable(rows);
}

function calibrationTable(doc: ResultsDocument): string {
  if (doc.runtimes.length > 1) {
    return doc.runtimes.map((r) => `<h3>${esc(r.name)}</h3>${calibrationRows(r.calibration)}`).join(
      "",
    );
  }
  return calibrationRows(doc.calibration);
}

function calibrationRows(c: Calibration | null): string {
  if (!c) return `<p class="sub">No calibration in this run: the roofline has no ceiling.</p>`;
  return kvTable([
    ["adapter", esc(c.adapterKey)],
    ["measured", esc(c.measuredAt)],
    ["DRAM read bandwidth (peak)", esc(formatSi(c.peakReadBytesPerS, "B/s"))],
    [
      "L2 read bandwidth",
      typeof c.l2ReadBytesPerS === "number"
        ? `${esc(formatSi(c.l2ReadBytesPerS, "B/s"))}${
          c.l2ReadBandwidth?.length
            ? ` (working sets ${
              c.l2ReadBandwidth.map((x) => esc(formatBytes(x.bytes))).join(", ")
            })`
            : ""
        }`
        : "not measured (older calibration): no L2 roof",
    ],
    [
      "clock reference",
      c.reference
        ? `${esc(formatNs(c.reference.nsPerDispatch))} per dispatch (${esc(c.reference.kernel)}, ${
          esc(c.reference.workgroups)
        } workgroups × ${esc(c.reference.iterations)} iterations, ${esc(c.reference.timingMode)})`
        : "not calibrated",
    ],
    [
      "f32 / f16 FMA peak",
      `${esc(formatSi(c.f32FlopsPerS, "FLOP/s"))} / ${
        c.f16FlopsPerS === null ? "n/a" : esc(formatSi(c.f16FlopsPerS, "FLOP/s"))
      }`,
    ],
    [
      "subgroup-matrix f16->f32 peak (mma kernels)",
      typeof c.matrixFlopsPerS === "number" ? esc(formatSi(c.matrixFlopsPerS, "FLOP/s")) : "n/a",
    ],
    [
      "empty dispatch / extra dispatch",
      `${esc(formatNs(c.dispatchNs))} / ${esc(formatNs(c.extraDispatchNs))}`,
    ],
  ]);
}

/** A status badge of a case: ok, FAILED, ERROR, or NO TIMING (ok status without samples). */
export function statusBadge(c: CaseResult): string {
  const problem = caseProblem(c);
  if (problem === null) return `<span class="badge ok">ok</span>`;
  const word = c.status !== "ok"
    ? c.status.toUpperCase()
    : c.verification.checked && !c.verification.passed
    ? "FAILED"
    : "NO TIMING";
  return `<span class="badge bad">${esc(word)}</span>`;
}

function caseTable(doc: ResultsDocument): string {
  const rows = caseRefs(doc).map((r) => {
    const c = r.case;
    const problem = caseProblem(c);
    const t = problem === null ? c.timing : null;
    const v = c.verification;
    const ver = v.checked
      ? `${v.passed ? "" : `<span class="badge bad">FAILED</span> `}${
        v.maxRelError.toExponential(2)
      } / ${esc(v.tolerance)}${v.unwritten ? `, ${esc(v.unwritten)} unwritten` : ""}${
        v.nonFinite ? `, ${esc(v.nonFinite)} non-finite` : ""
      }`
      : "not checked";
    const o = c.timing?.outliers;
    const outl = o ? o.lowSevere + o.lowMild + o.highMild + o.highSevere : 0;
    const cells = t
      ? [
        formatNs(t.medianNs),
        `${formatNs(t.ci95Ns[0])} – ${formatNs(t.ci95Ns[1])}`,
        formatNs(t.madNs),
        `${t.samplesNs.length}${(t.repetitions ?? 1) > 1 ? ` × ${t.repetitions} reps` : ""}${
          outl ? ` (${outl} outl.)` : ""
        }`,
      ].map((s) => `<td class="num">${esc(s)}</td>`).join("")
      : `<td class="num" colspan="4">— ${esc(problem ?? "")}</td>`;
    const roof = t && c.roofline
      ? `${(c.roofline.fraction * 100).toFixed(1)} % (${esc(boundName(c.roofline.bound))})${
        c.roofline.fraction > 1 ? ` <span class="badge bad">exceeds roof: model wrong</span>` : ""
      }`
      : "–";
    const k = c.clock;
    const clock = !t || !k
      ? "–"
      : `${k.lowClock ? `<span class="badge bad">low clock</span> ` : ""}${
        esc((k.fraction * 100).toFixed(0))
      } %${k.smMHz !== null ? ` · ${esc(k.smMHz.toFixed(0))} MHz` : ""}`;
    return `<tr${problem === null ? "" : ` class="bad"`}><td class="mono">${esc(r.key)}</td><td>${
      esc(c.method)
    }</td><td>${statusBadge(c)}</td><td>${esc(c.runtime)}</td><td class="mono">${
      esc(c.kernel)
    }</td>${cells}<td class="num">${roof}</td><td class="num">${clock}</td><td>${ver}</td><td class="mono">${
      esc(c.sourceHash.slice(0, 12))
    }</td></tr>`;
  });
  return `<div class="scroll"><table><thead><tr><th>case</th><th>method</th><th>status</th><th>runtime</th><th>kernel</th><th>median</th><th>95 % CI of median</th><th>MAD</th><th>samples</th><th>roofline (binding floor)</th><th>clock (reference speed / working speed)</th><th>verification (max rel. error / tolerance)</th><th>source</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table></div>`;
}

function totalsTable(doc: ResultsDocument): string {
  const series = seriesOf(doc);
  const rows: string[] = [];
  for (const w of doc.workloads) {
    const f = w.runFacts;
    rows.push(
      `<tr><th colspan="9">${esc(workloadLabel(w))} <span class="sub">— ${esc(w.kind)}, ${
        esc(w.iterations)
      } iterations, ${esc(w.snapshots.length)} sampled; mean N_tree ${
        esc((f.treeTokens / w.iterations).toFixed(0))
      }, mean ΣN_i ${esc((f.pathTokens / w.iterations).toFixed(0))}, KV IO reduction ${
        esc((f.kvIoReduction * 100).toFixed(2))
      } %</span></th></tr>`,
    );
    for (const x of series) {
      const st = methodStatus(w, x.method, x.runtime);
      if (st === "missing") continue;
      const t = totalOf(w, x);
      const ok = st === "ok" && t !== undefined && t.complete;
      const num = (s: string) => `<td class="num">${esc(s)}</td>`;
      rows.push(
        `<tr${ok ? "" : ` class="bad"`}><td>${esc(x.label)}</td><td>${
          ok
            ? `<span class="badge ok">ok</span>`
            : `<span class="badge bad">${esc(st === "ok" ? "INCOMPLETE" : st.toUpperCase())}</span>`
        }</td>${
          ok
            ? num(formatNs(t.meanIterationNs)) + num(formatNs(t.modelRunNs)) +
              num(t.speedupVsSequence === null ? "–" : `${t.speedupVsSequence.toFixed(2)}×`) +
              num(formatBytes(t.paperIo.kvBytes)) + num(formatBytes(t.paperIo.maskBytes)) +
              num(formatBytes(t.paperIo.partialBytes)) + num(formatBytes(t.realBytes))
            : `<td colspan="7">— not every sampled iteration ran and verified, so no run total</td>`
        }</tr>`,
      );
    }
  }
  return `<div class="scroll"><table><thead><tr><th>method</th><th>status</th><th>mean iteration (1 layer)</th><th>whole run (model)</th><th>speedup vs sequence</th><th>KV IO (paper)</th><th>mask IO (paper)</th><th>partial IO (paper)</th><th>real bytes</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table></div>`;
}

function notices(doc: ResultsDocument): string {
  const out: string[] = [];
  const e = doc.environment;
  if (doc.partial) {
    out.push(
      `<p class="notice bad"><b>Partial run</b>: ${esc(doc.partial.reason)}; it holds ${
        esc(doc.partial.completedCases)
      } of the ${
        esc(doc.partial.plannedCases)
      } planned cases. Workloads it did not finish have no whole-run totals.</p>`,
    );
  }
  if (e.adapter.isFallbackAdapter || doc.runtimes.some((r) => r.adapter.isFallbackAdapter)) {
    out.push(
      `<p class="notice">This run used a fallback (software) adapter: latencies describe a CPU rasterizer, not a GPU.</p>`,
    );
  }
  if (doc.settings.scale !== 1) {
    out.push(
      `<p class="notice">Workloads were scaled by ${esc(doc.settings.scale)}${
        doc.settings.scaleReason ? ` (${esc(doc.settings.scaleReason)})` : ""
      }: sizes are smaller than the paper's.</p>`,
    );
  }
  if (doc.settings.timing.mode !== "timestamp") {
    out.push(
      `<p class="notice">Timings are wall-clock batches (no timestamp queries): coarse.</p>`,
    );
  }
  const slow = caseRefs(doc).filter((r) => r.case.clock?.lowClock === true);
  if (slow.length) {
    out.push(
      `<p class="notice bad"><b>${slow.length} case(s) were measured below ${
        esc((doc.environment.clock?.lowClockFraction ?? 0.9) * 100)
      } % of the adapter's working clock</b> (the clock reference ran slower beside them): their latencies are not comparable, and <code>compare</code> does not judge them. ${
        slow.slice(0, 6).map((r) =>
          `<code>${esc(r.key)}</code> (${esc(((r.case.clock?.fraction ?? 0) * 100).toFixed(0))} %)`
        ).join(", ")
      }${slow.length > 6 ? ` and ${slow.length - 6} more` : ""}.</p>`,
    );
  }
  const bad = caseRefs(doc).filter((r) => caseProblem(r.case) !== null);
  if (bad.length) {
    out.push(
      `<p class="notice bad"><b>${bad.length} case(s) failed or errored</b> and are not drawn as measurements: ${
        bad.slice(0, 6).map((r) => `<code>${esc(r.key)}</code> (${esc(caseProblem(r.case))})`).join(
          ", ",
        )
      }${bad.length > 6 ? ` and ${bad.length - 6} more` : ""}.</p>`,
    );
  }
  if (doc.warnings.length) {
    // Warnings grouped by code; a code with many (one per case) folds into a details element.
    const item = (w: ResultsDocument["warnings"][number]) =>
      `<li><code>${esc(w.code)}</code> ${esc(w.message)}${
        w.key ? ` <span class="sub">(${esc(w.key)})</span>` : ""
      }</li>`;
    const byCode = new Map<string, ResultsDocument["warnings"]>();
    for (const w of doc.warnings) byCode.set(w.code, [...(byCode.get(w.code) ?? []), w]);
    const parts = [...byCode].map(([code, ws]) =>
      ws.length <= 3
        ? ws.map(item).join("")
        : `<li><details><summary><code>${esc(code)}</code> × ${ws.length}: ${
          esc(ws[0]!.message)
        } …</summary><ul>${ws.map(item).join("")}</ul></details></li>`
    );
    out.push(`<h3>Warnings</h3><ul>${parts.join("")}</ul>`);
  }
  return out.join("");
}

function figure(spec: ChartSpec): string {
  return `<figure${spec.wide ? ` class="wide"` : ""}><h3>${
    esc(spec.title)
  }</h3><div class="chart" style="height:${spec.height ?? 300}px"><canvas id="${
    esc(spec.id)
  }" role="img" aria-label="${esc(spec.caption)}"></canvas></div><figcaption>${
    esc(spec.caption)
  }</figcaption></figure>`;
}

/** The charts of one run, in page order. */
export function runCharts(doc: ResultsDocument, prefix: string): ChartSpec[] {
  const charts: ChartSpec[] = [latencyChart(doc, `${prefix}-latency`)];
  const speed = speedupChart(doc, `${prefix}-speedup`);
  if (speed) charts.push(speed);
  const rt = runtimeChart(doc, `${prefix}-runtime`);
  if (rt) charts.push(rt);
  charts.push(ioChart(doc, `${prefix}-io`));
  const roof = rooflineChart(doc, `${prefix}-roofline`);
  if (roof) charts.push(roof);
  charts.push(...sweepCharts(doc, `${prefix}-sweep`));
  return charts;
}

function runSection(doc: ResultsDocument, i: number, charts: ChartSpec[], many: boolean): string {
  const anchor = `run-${i}`;
  const parts: string[] = [];
  parts.push(
    `<section id="${anchor}"><h2>${many ? `Run ${i + 1}: ` : "Run "}${esc(runLabel(doc))}</h2>`,
  );
  const a = doc.environment.adapter;
  const cases = caseRefs(doc).length;
  parts.push(
    `<p class="sub">${
      esc(a.description || [a.vendor, a.architecture].join(" ") || "unknown adapter")
    } · ${esc(doc.runtimes.map((r) => r.version).join(" and "))} · ${
      esc(doc.settings.shape.name)
    } ${esc(doc.settings.dtype)} · ${esc(doc.settings.timing.mode)} timing · scale ${
      esc(doc.settings.scale)
    } · ${doc.workloads.length} workload(s), ${cases} case(s) · <a href="#${anchor}-env">environment and settings</a></p>`,
  );
  parts.push(notices(doc));
  if (doc.workloads.length === 0) {
    parts.push(`<p class="notice bad">This run holds no workloads.</p>`);
  } else {
    parts.push(`<div class="grid">${charts.map(figure).join("")}</div>`);
    parts.push(`<h3>Workload trees and DeFT-Flatten blocks</h3>`);
    parts.push(
      doc.workloads.map((w, k) => treeFigure(w, flattenBlockSize(doc, w), k === 0)).join(""),
    );
    parts.push(`<h3>Totals per workload and method</h3>${totalsTable(doc)}`);
    parts.push(`<h3>Cases</h3>${caseTable(doc)}`);
  }
  parts.push(
    `<div class="tables" id="${anchor}-env"><div><h3>Environment</h3>${
      environmentTable(doc)
    }</div><div><h3>Settings</h3>${settingsTable(doc)}<h3>Calibration</h3>${
      calibrationTable(doc)
    }</div></div>`,
  );
  parts.push(`</section>`);
  return parts.join("");
}

function runsOverview(docs: ResultsDocument[]): string {
  const rows = docs.map((d, i) => {
    const bad = caseRefs(d).filter((r) => caseProblem(r.case) !== null).length;
    return `<tr><td><a href="#run-${i}">Run ${i + 1}</a></td><td>${esc(runLabel(d))}</td><td>${
      esc(d.environment.adapter.description || d.environment.adapter.vendor)
    }</td><td class="num">${esc(d.workloads.length)}</td><td class="num">${
      esc(caseRefs(d).length)
    }</td><td class="num">${bad ? `<span class="badge bad">${bad}</span>` : "0"}</td></tr>`;
  });
  const keyed = new Map<string, (number | null)[]>();
  docs.forEach((d, i) => {
    for (const w of d.workloads) {
      for (const t of w.totals) {
        // Runtimes apart: a Deno-only run labels methods plainly, others add the runtime.
        const k = `${workloadLabel(w)} / ${seriesLabel(t.method, t.runtime, [t.runtime])}`;
        const row = keyed.get(k) ?? new Array<number | null>(docs.length).fill(null);
        row[i] = t.complete && methodStatus(w, t.method, t.runtime) === "ok"
          ? t.meanIterationNs
          : null;
        keyed.set(k, row);
      }
    }
  });
  const cross = [...keyed].map(([k, vals]) => {
    const first = vals[0];
    const last = vals[vals.length - 1];
    const ratio = first && last ? (last / first).toFixed(3) : "–";
    return `<tr><td>${esc(k)}</td>${
      vals.map((v) => `<td class="num">${v === null ? "—" : esc(formatNs(v))}</td>`).join("")
    }<td class="num">${esc(ratio)}</td></tr>`;
  });
  return `<h2>Runs</h2><table><thead><tr><th>run</th><th>commit and time</th><th>adapter</th><th>workloads</th><th>cases</th><th>failed</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table><h3>Mean iteration latency across runs</h3><div class="scroll"><table><thead><tr><th>workload / method</th>${
    docs.map((_, i) => `<th>run ${i + 1}</th>`).join("")
  }<th>last / first</th></tr></thead><tbody>${cross.join("")}</tbody></table></div>`;
}

/** The HTML page around a body: CSP, styles, chart.js and the chart runtime. */
export function htmlPage(
  title: string,
  body: string,
  charts: ChartSpec[],
  chartJs: ReportOptions["chartJs"] = "inline",
): string {
  const runtime = scriptSafe(CHART_RUNTIME);
  const scripts: string[] = [];
  const hashes: string[] = [];
  let sources = "";
  if (charts.length > 0) {
    if (chartJs === "inline") {
      const lib = scriptSafe(CHART_JS_SOURCE);
      scripts.push(`<script>${lib}</script>`);
      hashes.push(sha256(lib));
    } else if (chartJs === "cdn") {
      scripts.push(`<script src="${esc(CHART_JS_CDN)}" crossorigin="anonymous"></script>`);
      sources = " https://cdn.jsdelivr.net";
    } else {
      scripts.push(`<script src="${esc(chartJs.src)}"></script>`);
      sources = " 'self'";
    }
    scripts.push(`<script type="application/json" id="deft-charts">${scriptJson(charts)}</script>`);
    scripts.push(`<script>${runtime}</script>`);
    hashes.push(sha256(runtime));
  }
  const csp = `default-src 'none'; script-src ${
    hashes.join(" ") || "'none'"
  }${sources}; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${body}
<footer>Generated by deft-bench from results documents; charts by chart.js ${
    esc(CHART_JS_VERSION)
  }${chartJs === "inline" ? " (inlined: this file needs no network)" : ""}.</footer>
</main>
${scripts.join("\n")}
</body>
</html>
`;
}

/**
 * Renders one or more runs as one self-contained HTML page: environment, settings, warnings and
 * failed cases first, then the charts, the tree drawings, and per-workload and per-case tables.
 * Throws `RangeError` when `docs` is empty.
 */
export function renderReport(docs: ResultsDocument[], options: ReportOptions = {}): string {
  if (docs.length === 0) throw new RangeError("A report needs at least one results document");
  const many = docs.length > 1;
  const title = options.title ??
    (many ? `deft-bench report: ${docs.length} runs` : `deft-bench report: ${runLabel(docs[0]!)}`);
  const charts: ChartSpec[] = [];
  const sections = docs.map((d, i) => {
    const c = runCharts(d, `r${i}`);
    charts.push(...c);
    return runSection(d, i, c, many);
  });
  const back = options.backLink
    ? `<p class="sub"><a href="${esc(options.backLink.href)}">← ${
      esc(options.backLink.text)
    }</a></p>`
    : "";
  const lead =
    `<p class="sub">Tree-structured decoding attention on WebGPU (DeFT, arXiv 2404.00242, and its baselines). Latencies are per layer; IO is in the paper's accounting unless marked real.</p>`;
  const body = `${back}<h1>${esc(title)}</h1>${lead}${many ? runsOverview(docs) : ""}${
    sections.join("")
  }`;
  return htmlPage(title, body, charts, options.chartJs);
}

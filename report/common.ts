/**
 * What the report's charts, tables and the dashboard share: a fixed colour per method and runtime,
 * the method order (read from the documents), a method's status on a workload, run series and
 * totals, and the chart spec that the page's chart runtime draws.
 *
 * @module
 */

import { caseProblem, docSeries, type Series } from "../results/document.ts";
import {
  DEFAULT_RUNTIME,
  type MethodTotal,
  type ResultsDocument,
  type WorkloadResult,
} from "../results/schema.ts";

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

/** The {@linkcode CellStatus} of a method on a runtime over a workload's snapshots. */
export function methodStatus(
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

/** A workload as charts and tables name it: with its sweep coordinate, if any. */
export function workloadLabel(w: WorkloadResult): string {
  return w.sweep ? `${w.name} (${w.sweep.parameter}=${w.sweep.value})` : w.name;
}

/**
 * Every (method, runtime) of a run with at least one case, methods in the run's own order
 * (`settings.methods`, then methods only its cases name: {@linkcode methodOrder}).
 */
export function seriesOf(doc: ResultsDocument): Series[] {
  return docSeries(doc);
}

/** The total of a series on a workload. */
export function totalOf(
  w: WorkloadResult,
  s: Pick<Series, "method" | "runtime">,
): MethodTotal | undefined {
  return w.totals.find((x) => x.method === s.method && x.runtime === s.runtime);
}

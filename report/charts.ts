/**
 * The charts of one run, as chart.js configurations (plain JSON the page embeds): latency per
 * method per workload, speedup over sequence, speedup between runtimes, KV / mask / partial-result
 * IO, roofline position, and latency along sweeps. A failed or errored case is never drawn as a
 * measurement: no bar, and a status the chart runtime marks with a red ✗.
 *
 * @module
 */

import { caseProblem, caseRefs, formatSi, type Series } from "../results/document.ts";
import { cacheBytesPerS } from "../results/roofline.ts";
import { type Calibration, DEFAULT_RUNTIME, type ResultsDocument } from "../results/schema.ts";
import {
  axis,
  type CellStatus,
  type ChartSpec,
  methodStatus,
  seriesColour,
  seriesOf,
  totalOf,
  workloadLabel,
} from "./common.ts";

/** Chart.js dataset styling of a series: its colour, dashed lines off the default runtime. */
function seriesStyle(s: Pick<Series, "method" | "runtime">, line = false): Record<string, unknown> {
  const colour = seriesColour(s.method, s.runtime);
  return {
    backgroundColor: colour,
    borderColor: colour,
    ...(line && s.runtime !== DEFAULT_RUNTIME ? { borderDash: [6, 3] } : {}),
  };
}

/**
 * One bar dataset per series over the run's workloads: `value` of the series' whole-run total where
 * the method ran ok there, no bar otherwise, and the status the chart runtime marks with ✗.
 */
function workloadBars(
  doc: ResultsDocument,
  series: Series[],
  value: (t: NonNullable<ReturnType<typeof totalOf>>) => number | null,
): Record<string, unknown>[] {
  return series.map((x) => {
    const status = doc.workloads.map((w) => methodStatus(w, x.method, x.runtime));
    return {
      label: x.label,
      ...seriesStyle(x),
      data: doc.workloads.map((w, i) => {
        const t = totalOf(w, x);
        return status[i] === "ok" && t ? value(t) : null;
      }),
      deftStatus: status,
    };
  });
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
        datasets: workloadBars(
          doc,
          series,
          (t) => t.complete ? t.meanIterationNs : null,
        ),
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
        datasets: workloadBars(doc, series, (t) => t.speedupVsSequence),
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

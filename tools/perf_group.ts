/**
 * Times group-attention kernel variants of deft-flatten against the default kernel and against
 * `tree-mask`, on the trees the H200 first look found slow: speculative t=256 and t=64, few-shot b=50 and b=20, a sorting snapshot
 * (Llama-3-8B shape, f16, one layer). Every variant is first run once on a poisoned output and 32
 * sampled rows are checked against the float64 reference (a wrong one is never timed;
 * `_verify_time.ts`); then all methods of a tree are timed interleaved (round-robin, hot cache)
 * with pass timestamps, and the median is reported.
 *
 *     deno run -A tools/perf_group.ts [--small] [--samples 40] [--variants a,b] [--trees x,y]
 *
 * `--small` uses tiny trees (for the software adapter). Writes `${OUT:-out}/perf_group.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createTimer } from "../bench/timer.ts";
import { Gpu } from "../kernels/gpu.ts";
import {
  groupKernelConfig,
  type GroupKernelOptions,
  type GroupPlan,
} from "../kernels/group_attention.ts";
import { deftFlatten } from "../kernels/methods/deft_flatten.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import { Problem } from "../kernels/problem.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { getPreset } from "../workloads/presets.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import type { Tree } from "../workloads/tree.ts";
import { type ToolVariant, verifyAndTime } from "./_verify_time.ts";

/** One timed method: a deft-flatten kernel variant or the reference. */
interface Entry extends ToolVariant {
  /** Group-kernel options of a new variant (null: the old kernel or tree-mask). */
  kernel: Partial<GroupKernelOptions> | null;
}

/**
 * The kernel variants (`options.fma`, the FMA kernel); the first is the default. On an H200 (f16
 * Llama-3-8B) the default was 1.43x the first kernel in geometric mean, the others 1.01-1.31x.
 */
const VARIANTS: [string, Partial<GroupKernelOptions>][] = [
  ["default (qnone-t256-r64-k64)", {}],
  ["q16-t128-r64-k32", { threads: 128, rows: 64, keys: 32, qResident: "auto" }],
  ["qnone-t128-r64-k32", { threads: 128, rows: 64, keys: 32, qResident: "none" }],
  ["qnone-t128-r64-k64", { threads: 128, rows: 64, keys: 64, qResident: "none" }],
  ["qnone-t256-r128-k32", { threads: 256, rows: 128, keys: 32, qResident: "none" }],
];

function entries(): Entry[] {
  return [
    ...VARIANTS.map(([label, kernel]): Entry => ({
      label,
      method: deftFlatten,
      options: Object.keys(kernel).length === 0 ? {} : { kernel: "fma", fma: kernel },
      kernel,
    })),
    { label: "tree-mask", method: getMethod("tree-mask"), kernel: null },
  ];
}

function trees(small: boolean): [string, Tree][] {
  const spec = (prefix: number, t: number) =>
    new SpeculativeRun({ prefix, treeTokens: t, steps: 1, seed: 1, topology: "medusa" })
      .snapshot(0);
  const few = (prompt: number, b: number, generated: number, i: number) =>
    new FewShotRun({ prompt, branches: b, generated }).snapshot(i);
  if (small) {
    const sorting = getPreset("sorting").build(1, 0.05);
    return [
      ["speculative t=40, prefix 150", spec(150, 40)],
      ["speculative t=16, prefix 200", spec(200, 16)],
      ["few-shot b=12, prompt 200, iteration 10", few(200, 12, 20, 10)],
      ["few-shot b=5, prompt 200, iteration 10", few(200, 5, 20, 10)],
      [
        "sorting (scale 0.05), iteration 60",
        sorting.snapshot(Math.min(60, sorting.iterations - 1)),
      ],
    ];
  }
  return [
    ["speculative t=256, prefix 3400", spec(3400, 256)],
    ["speculative t=64, prefix 4000", spec(4000, 64)],
    ["few-shot b=50, prompt 4000, iteration 200", few(4000, 50, 400, 200)],
    ["few-shot b=20, prompt 4000, iteration 200", few(4000, 20, 400, 200)],
    ["sorting, iteration 1800", getPreset("sorting").build(1).snapshot(1800)],
  ];
}

interface Result {
  label: string;
  kernel: Partial<GroupKernelOptions> | null;
  /** Staging the device got (new variants only). */
  config: Record<string, number | string | null> | null;
  status: "ok" | "wrong" | "error";
  message: string | null;
  medianUs: number | null;
  minUs: number | null;
  samples: number;
  maxRelError: number | null;
  unwritten: number;
  nonFinite: number;
  /** Useful FLOPs / median time. */
  usefulTflops: number | null;
  stats: Record<string, number>;
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      small: { type: "boolean", default: false },
      samples: { type: "string", default: "40" },
      warmup: { type: "string", default: "5" },
      variants: { type: "string" },
      trees: { type: "string" },
    },
  });
  const small = values.small!;
  const samples = Math.max(1, Number(values.samples));
  const warmup = Math.max(0, Number(values.warmup));
  const t0 = performance.now();
  const gpu = await Gpu.open();
  const storage = gpu.limit("maxComputeWorkgroupStorageSize");
  console.log(
    `Adapter: ${
      gpu.info.description || gpu.info.vendor
    } (fallback ${gpu.info.isFallbackAdapter}), workgroup storage ${storage} B, timestamps ${gpu.hasTimestamps}`,
  );
  const shape = MODEL_SHAPES["llama3-8b"]!;
  const dtype = "f16" as const;
  const timer = createTimer(gpu);
  const pick = (list: string | undefined) => list?.split(",").map((s) => s.trim());
  const wantVariants = pick(values.variants);
  const wantTrees = pick(values.trees);
  const methods = entries().filter((e) =>
    !wantVariants || wantVariants.some((w) => e.label.startsWith(w))
  );
  const out: Record<string, unknown>[] = [];

  for (const [treeName, tree] of trees(small)) {
    if (wantTrees && !wantTrees.some((w) => treeName.startsWith(w))) continue;
    const problem = Problem.create(gpu, tree, { shape, dtype, seed: 1 });
    const ix = problem.ix;
    const nTree = ix.treeTokens;
    console.log(`\n${treeName}: ${ix.nodeCount} nodes, ${nTree} tokens, ${ix.queryCount} queries`);
    let results: Result[];
    try {
      const measured = await verifyAndTime(problem, timer, methods, {
        samples,
        warmup,
        log: (line) => console.log(line),
      });
      results = measured.map((m, i): Result => {
        const e = methods[i]!;
        let config: Result["config"] = null;
        if (e.kernel && m.plan) {
          const c = groupKernelConfig(shape, dtype, (m.plan as GroupPlan).kernel, storage);
          config = {
            threads: c.threads,
            rows: c.rows,
            keys: c.keys,
            qType: c.qType,
            chunkV: c.chunkV,
            vKeys: c.vKeys,
            maskWords: c.maskWords,
          };
        }
        return {
          label: m.label,
          kernel: e.kernel,
          config,
          status: m.status,
          message: m.message,
          medianUs: m.medianUs,
          minUs: m.minUs,
          samples: m.samplesUs.length,
          maxRelError: m.verdict?.maxRelError ?? null,
          unwritten: m.verdict?.unwritten ?? 0,
          nonFinite: m.verdict?.nonFinite ?? 0,
          usefulTflops: m.usefulTflops,
          stats: m.plan
            ? {
              ...m.plan.stats,
              flops: m.plan.counts.flops,
              usefulFlops: m.plan.counts.usefulFlops,
              realBytes: m.plan.counts.real.totalBytes,
            }
            : {},
        };
      });
    } finally {
      problem.destroy();
    }
    printTable(results);
    out.push({
      tree: treeName,
      nodes: ix.nodeCount,
      treeTokens: nTree,
      queries: ix.queryCount,
      results,
    });
  }

  printSummary(out);
  const dir = Deno.env.get("OUT") ?? "out";
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/perf_group.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify(
      {
        format: "deft-bench/perf-group",
        adapter: gpu.info,
        timing: {
          mode: timer.mode,
          warmupRounds: warmup,
          samples,
          statistic: "median",
          cache: "hot",
        },
        shape,
        dtype,
        small,
        elapsedS: (performance.now() - t0) / 1e3,
        trees: out,
      },
      null,
      2,
    ) + "\n",
  );
  timer.destroy();
  gpu.destroy();
  console.log(`\nWrote ${path} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
}

function printTable(results: Result[]) {
  const base = results.find((r) => r.label.startsWith("default"))?.medianUs ?? null;
  const tm = results.find((r) => r.label === "tree-mask")?.medianUs ?? null;
  const f = (x: number | null, d = 1) => (x === null ? "-" : x.toFixed(d));
  const header = [
    "method",
    "median us",
    "min us",
    "x default",
    "x tree-mask",
    "TFLOP/s",
    "max rel err",
    "wgs",
    "staging",
  ];
  const rows = results.map((r) => {
    const c = r.config;
    const staging = c
      ? `Q ${c.qType ?? "staged"}, K chunk ${c.chunkV} vec4, V slice ${c.vKeys}`
      : "";
    return [
      r.label,
      r.status === "ok" ? f(r.medianUs) : r.status.toUpperCase(),
      f(r.minUs),
      r.medianUs && base ? f(base / r.medianUs, 2) : "-",
      r.medianUs && tm ? f(tm / r.medianUs, 2) : "-",
      f(r.usefulTflops, 2),
      r.maxRelError === null ? "-" : r.maxRelError.toExponential(2),
      String(r.stats.workgroups ?? "-"),
      staging,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    "  " +
    cells.map((
      c,
      i,
    ) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(
      "  ",
    );
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

/** Geometric-mean speedup of every method over the old kernel and over tree-mask, across trees. */
function printSummary(trees: Record<string, unknown>[]) {
  const labels = entries().map((e) => e.label);
  console.log("\nGeometric mean over trees (speedup > 1: faster than the reference):");
  for (const label of labels) {
    const ratios = { base: [] as number[], tm: [] as number[] };
    for (const t of trees) {
      const rs = t.results as Result[];
      const me = rs.find((r) => r.label === label)?.medianUs;
      const base = rs.find((r) => r.label.startsWith("default"))?.medianUs;
      const tm = rs.find((r) => r.label === "tree-mask")?.medianUs;
      if (me && base) ratios.base.push(base / me);
      if (me && tm) ratios.tm.push(tm / me);
    }
    const g = (xs: number[]) =>
      xs.length ? Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length).toFixed(2) : "-";
    if (ratios.base.length || ratios.tm.length) {
      console.log(
        `  ${label.padEnd(28)}  x default ${g(ratios.base).padStart(5)}  x tree-mask ${
          g(ratios.tm).padStart(5)
        }`,
      );
    }
  }
}

if (import.meta.main) await main();

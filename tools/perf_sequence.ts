/**
 * Times `sequence` kernel variants against its default variant and `radix`
 * on the trees that matter for the baseline (Llama-3-8B, f16, one layer): speculative t=256 on a
 * 3400-token prefix, speculative t=64 on 4000, few-shot b=50 and b=20 (prompt 4000, iteration
 * 200), and a sorting snapshot. Every method is first checked once against the float64 reference
 * on 32 sampled rows, then timed with GPU timestamps around its compute pass (hot caches, passes
 * interleaved round-robin, warm-up passes first, one readback per tree); the table shows medians.
 *
 * Usage: `deno run -A tools/perf_sequence.ts [--small] [--samples=N] [--warmup=N]
 * [--trees=a,b] [--methods=a,b] [--variant='{"name":"x","threads":128}' ...]`. `--small` runs
 * tiny trees (for a software adapter). Writes `${OUT:-out}/perf_sequence.json`.
 *
 * @module
 */

import { createTimer } from "../bench/timer.ts";
import { Gpu } from "../kernels/gpu.ts";
import type { Plan } from "../kernels/method.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import type { SequenceParams } from "../kernels/methods/sequence.ts";
import { Problem } from "../kernels/problem.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { getPreset } from "../workloads/presets.ts";
import { type Dtype, MODEL_SHAPES } from "../workloads/shapes.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import { type Tree, treeFacts } from "../workloads/tree.ts";
import { type ToolVariant, verifyAndTime } from "./_verify_time.ts";

const args = Deno.args;
const flag = (name: string) => args.includes(`--${name}`);
const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const small = flag("small");
const samples = Number(opt("samples") ?? (small ? 5 : 30));
const warmup = Number(opt("warmup") ?? (small ? 1 : 3));
const onlyTrees = opt("trees")?.split(",");
const onlyMethods = opt("methods")?.split(",");

/** New-kernel variants timed by default (overrides of the default variant). */
/** Kernel variants (`options.sequence`, the method's variant parameters), each with a label. */
const VARIANTS: (SequenceParams & { name: string })[] = [
  { name: "default" },
  { name: "t256-b128", threads: 256, blockKeys: 128 },
  { name: "q-wgmem", qPlacement: "workgroup" },
  { name: "lanes16", lanes: 16 },
  { name: "prefetch-v", prefetchV: 1 },
  { name: "target2048", targetWorkgroups: 2048 },
];
for (const a of args.filter((a) => a.startsWith("--variant="))) {
  const v = JSON.parse(a.slice("--variant=".length));
  VARIANTS.push({ name: v.name ?? `custom${VARIANTS.length}`, ...v });
}

const spec = (prefix: number, t: number) =>
  new SpeculativeRun({ prefix, treeTokens: t, steps: 1, seed: 1, topology: "medusa" }).snapshot(0);
const fewShot = (prompt: number, b: number, generated: number, i: number) =>
  new FewShotRun({ prompt, branches: b, generated }).snapshot(i);
function sorting(scale: number): Tree {
  const run = getPreset("sorting").build(1, scale);
  return run.snapshot(scale === 1 ? 1800 : Math.floor(run.iterations * 0.58));
}
const TREES: [string, () => Tree][] = small
  ? [
    ["spec-t256-p3400", () => spec(150, 24)],
    ["spec-t64-p4000", () => spec(300, 8)],
    ["fewshot-b50", () => fewShot(300, 6, 40, 20)],
    ["fewshot-b20", () => fewShot(200, 3, 40, 20)],
    ["sorting-1800", () => sorting(0.05)],
  ]
  : [
    ["spec-t256-p3400", () => spec(3400, 256)],
    ["spec-t64-p4000", () => spec(4000, 64)],
    ["fewshot-b50", () => fewShot(4000, 50, 400, 200)],
    ["fewshot-b20", () => fewShot(4000, 20, 400, 200)],
    ["sorting-1800", () => sorting(1)],
  ];

const METHODS: ToolVariant[] = [
  ...VARIANTS.map(({ name, ...sequence }): ToolVariant => ({
    label: name,
    method: getMethod("sequence"),
    options: { sequence },
  })),
  { label: "radix", method: getMethod("radix") },
];

const t0 = performance.now();
const gpu = await Gpu.open();
const dtype: Dtype = gpu.hasF16 ? "f16" : "f32";
const shape = MODEL_SHAPES["llama3-8b"]!;
const timer = createTimer(gpu);
console.log(
  `${gpu.info.description || gpu.info.vendor} (${
    gpu.info.architecture || "?"
  }), ${shape.name} ${dtype}, ${timer.mode} timing, ${samples} samples, ${warmup} warm-up`,
);

const quantile = (sorted: number[], p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

interface Result {
  method: string;
  variant: SequenceParams | null;
  /** The kernel variant the plan reports (`fma-threads256-blockKeys128-t256-k128-h4`). */
  kernel: string | null;
  status: "ok" | "failed";
  message?: string;
  medianUs?: number;
  minUs?: number;
  p10Us?: number;
  p90Us?: number;
  samplesUs?: number[];
  maxRelError?: number;
  unwritten?: number;
  nonFinite?: number;
  kvTBs?: number;
  usefulTflops?: number;
  speedupVsDefault?: number;
  threads?: number;
  stats?: Record<string, number>;
  counts?: Plan["counts"];
}

const report: {
  adapter: typeof gpu.info;
  date: string;
  shape: string;
  dtype: Dtype;
  timing: string;
  samples: number;
  warmup: number;
  small: boolean;
  trees: { name: string; facts: Record<string, number>; results: Result[] }[];
} = {
  adapter: gpu.info,
  date: new Date().toISOString(),
  shape: shape.name,
  dtype,
  timing: `${timer.mode}, hot caches, interleaved, 1 dispatch set per pass`,
  samples,
  warmup,
  small,
  trees: [],
};

for (const [treeName, make] of TREES) {
  if (onlyTrees && !onlyTrees.includes(treeName)) continue;
  const problem = Problem.create(gpu, make(), { shape, dtype, seed: 5 });
  const facts = treeFacts(problem.ix);
  console.log(
    `\n== ${treeName}: ${facts.queries} queries, ${facts.nodes} nodes, ΣN ${facts.pathTokens}, tree tokens ${facts.treeTokens}`,
  );
  const chosen = METHODS.filter((m) => !onlyMethods || onlyMethods.includes(m.label));
  let measured;
  try {
    measured = await verifyAndTime(problem, timer, chosen, { samples, warmup });
  } finally {
    problem.destroy();
  }
  const results = measured.map((m): Result => {
    const r: Result = {
      method: m.label,
      variant: VARIANTS.find((v) => v.name === m.label) ?? null,
      kernel: m.plan?.kernelVariant ?? null,
      status: m.status === "ok" ? "ok" : "failed",
    };
    if (m.status !== "ok") r.message = m.message?.slice(0, 500);
    if (m.verdict) {
      r.maxRelError = m.verdict.maxRelError;
      r.unwritten = m.verdict.unwritten;
      r.nonFinite = m.verdict.nonFinite;
    }
    if (m.plan) {
      r.stats = { ...m.plan.stats };
      r.threads = m.plan.dispatches[0]!.workgroupSize;
      r.counts = m.plan.counts;
    }
    if (m.status === "ok" && m.medianUs !== null) {
      const us = m.samplesUs.slice().sort((a, b) => a - b);
      r.samplesUs = m.samplesUs.map((x) => Math.round(x * 100) / 100);
      r.medianUs = m.medianUs;
      r.minUs = us[0];
      r.p10Us = quantile(us, 0.1);
      r.p90Us = quantile(us, 0.9);
      r.kvTBs = m.plan!.counts.real.kvBytes / (r.medianUs * 1e6);
      r.usefulTflops = m.plan!.counts.usefulFlops / (r.medianUs * 1e6);
    }
    return r;
  });
  const base = results.find((r) => r.method === "default")?.medianUs;
  for (const r of results) {
    if (base && r.medianUs) r.speedupVsDefault = base / r.medianUs;
  }
  const fmt = (x: number | undefined, d = 1) => (x === undefined ? "-" : x.toFixed(d));
  console.log(
    "method".padEnd(14) + "median us".padStart(11) + "p10".padStart(9) + "p90".padStart(9) +
      "vs dflt".padStart(7) + "KV TB/s".padStart(9) + "TFLOP/s".padStart(9) +
      "max rel err".padStart(13) + "  wg x thr, B, chunk, direct",
  );
  for (const r of results) {
    if (r.status !== "ok") {
      console.log(`${r.method.padEnd(14)} FAILED: ${r.message}`);
      continue;
    }
    const st = r.stats ?? {};
    const geo = st.chunkTokens !== undefined
      ? `${st.workgroups} x ${r.threads}, ${st.keysPerTile}, ${st.chunkTokens}, ${st.direct}`
      : `${st.workgroups ?? "-"} x ${r.threads}`;
    const bad = (r.unwritten ?? 0) + (r.nonFinite ?? 0);
    console.log(
      r.method.padEnd(14) + fmt(r.medianUs).padStart(11) + fmt(r.p10Us).padStart(9) +
        fmt(r.p90Us).padStart(9) + fmt(r.speedupVsDefault, 2).padStart(7) +
        fmt(r.kvTBs, 2).padStart(9) + fmt(r.usefulTflops, 2).padStart(9) +
        (r.maxRelError?.toExponential(1) ?? "-").padStart(13) + "  " + geo +
        (bad > 0 ? `  (${r.unwritten} unwritten, ${r.nonFinite} non-finite!)` : ""),
    );
  }
  report.trees.push({ name: treeName, facts: { ...facts }, results });
}

const dir = Deno.env.get("OUT") ?? "out";
await Deno.mkdir(dir, { recursive: true });
const path = `${dir}/perf_sequence.json`;
await Deno.writeTextFile(path, JSON.stringify(report, null, 1) + "\n");
console.log(`\nWrote ${path} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
gpu.destroy();

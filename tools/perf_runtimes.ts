/**
 * Times kernel variants on both WebGPU runtimes in one process, so that every ratio (Dawn vs Deno,
 * matrix units vs FMA, DeFT vs Flash-Decoding) comes from one run: the trees of the tensor-core
 * issue (the paper's Table 14 tree, few-shot b=50, speculative t=64, the 4000+50x200 grid, an
 * unshared batch of 32 x 4096 tokens), Llama-3-8B shape, f16, one layer. Every variant is first
 * run once on a poisoned output and 32 sampled rows are checked against the float64 reference (a
 * wrong variant is reported and never timed; `_verify_time.ts`); then the variants of a tree on a runtime are timed
 * interleaved with pass timestamps, cold (a 128 MiB cache-flush pass before every sample) unless
 * `--hot`, and the median is reported with useful TFLOP/s and the matrix-unit peak share.
 *
 *     deno run -A tools/perf_runtimes.ts [--small] [--hot] [--samples 30] [--runtimes deno,dawn]
 *       [--trees a,b] [--variants a,b] [--peak]
 *
 * `--small` uses tiny trees (software adapters). `--peak` measures the register-resident
 * subgroup-matrix peak on Dawn first. Writes `${OUT:-out}/perf_runtimes.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createTimer } from "../bench/timer.ts";
import { createFlushPass } from "../bench/measure.ts";
import { measureMatrixPeak } from "../bench/calibrate.ts";
import { Gpu, type RuntimeName } from "../kernels/gpu.ts";
import type { MethodOptions } from "../kernels/method.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import { Problem } from "../kernels/problem.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import { getPreset } from "../workloads/presets.ts";
import type { Tree, TreeNode } from "../workloads/tree.ts";
import { levelGridTree, parseGridSpec } from "../workloads/level_grid.ts";
import type { MethodName } from "../kernels/method.ts";
import {
  type ClockWitness,
  describeWitness,
  verifyAndTime,
  witnessFraction,
} from "./_verify_time.ts";

/** One timed variant: a method with options. */
interface Variant {
  label: string;
  method: MethodName;
  options: Partial<MethodOptions>;
  /** Runtimes it runs on (default both). */
  runtimes?: RuntimeName[];
}

/**
 * The matrix kernel's tiles worth comparing: rows x keys per sub-tile x head-dim split (change 8 of
 * docs/performance.md), at 512-token blocks (deft-flatten halves them on trees that do not fill the
 * GPU).
 */
function mmaVariants(): Variant[] {
  const out: Variant[] = [];
  for (const split of [1, 2, 4]) {
    for (const rows of [32, 64]) {
      for (const keys of [16, 32]) {
        out.push({
          label: `flatten-mma-r${rows}-k${keys}-s${split}`,
          method: "deft-flatten",
          options: { kernel: "mma", blockSize: 512, mma: { rows, keys, split, fit: 0 } },
          runtimes: ["dawn"],
        });
      }
    }
  }
  return out;
}

/**
 * deft-flatten as each runtime's stored tuning runs it on the H200 (Dawn: 128-token blocks, the
 * r64-k16 matrix tile; Deno: the FMA kernel at 512), with the default `privateMin` (-1: private
 * suffixes on Flash-Decoding with the FMA kernel only), with every token in the blocks (`-p0`, as
 * the paper does) and, on Dawn, with suffixes of 64 tokens or more routed (`-p64`).
 */
function flattenVariants(): Variant[] {
  const dawn = { blockSize: 128, mma: { rows: 64, keys: 16 } };
  const deno = { kernel: "fma" as const, blockSize: 512 };
  return [
    { label: "flat-dawn", method: "deft-flatten", options: dawn, runtimes: ["dawn"] },
    {
      label: "flat-dawn-p0",
      method: "deft-flatten",
      options: { ...dawn, privateMin: 0 },
      runtimes: ["dawn"],
    },
    {
      label: "flat-dawn-p64",
      method: "deft-flatten",
      options: { ...dawn, privateMin: 64 },
      runtimes: ["dawn"],
    },
    // Change 18: blocks kept as given at sizes that make whole waves of workgroups on the Table 14
    // tree (396 resident: 1184, 768 and 384 workgroups); `x-dawn` is `flat-dawn` again.
    ...([
      ["x-dawn", {}],
      ["x-dawn-b112", { blockSize: 112, targetWorkgroups: 1 }],
      ["x-dawn-b176", { blockSize: 176, targetWorkgroups: 1 }],
      ["x-dawn-b352", { blockSize: 352, targetWorkgroups: 1 }],
      // The plan's own choice under the rounds model for 132 SMs (an H200), the tile's resident
      // workgroups from its workgroup memory (run 24 had them as given: 396 and 528).
      ["x-dawn-sm132", { multiprocessors: 132 }],
      // Change 19 (run 26): `r-dawn` is the plan bench makes on a calibrated H200 (the rounds
      // model with the reduction's reads); `-b128` the blocks change 18 kept on the late
      // speculative snapshot. The split tiles halve Q and O per invocation (more, lighter warps),
      // sized by the same model from their workgroup memory.
      ["r-dawn", { multiprocessors: 132 }],
      ["r-dawn-b128", { blockSize: 128, targetWorkgroups: 1 }],
      ["r-dawn-s2", { multiprocessors: 132, mma: { rows: 64, keys: 16, split: 2 } }],
      ["r-dawn-r32-s2", { multiprocessors: 132, mma: { rows: 32, keys: 16, split: 2, fit: 0 } }],
      ["r-dawn-r128-s2", { multiprocessors: 132, mma: { rows: 128, keys: 16, split: 2, fit: 0 } }],
      // Run 27: what the rounds model would pick with run 26's measured fixed cost (about 6
      // sub-tiles, not 2): one round of 1936-token blocks on the late speculative snapshot, the
      // 64-row tile at 544 on few-shot b=50 step 66; `f-plan` is the plan with today's model.
      ["f-plan", { multiprocessors: 132 }],
      ["f-b1936", { blockSize: 1936, targetWorkgroups: 1 }],
      ["f-r64-b544", { blockSize: 544, targetWorkgroups: 1, mma: { rows: 64, keys: 16, fit: 0 } }],
      // Run 28: block sizes around the model's choice on the speculative t=256 snapshots (one
      // round at 688 and 1264 tokens, two near 336 and 592, more below), and the 32-row tile.
      ...[176, 336, 384, 592, 688, 1264].map((b) =>
        [`s-b${b}`, { blockSize: b, targetWorkgroups: 1 }] as const
      ),
      ["s-r32", { multiprocessors: 132, mma: { rows: 32, keys: 16, fit: 0 } }],
    ] as const).map(([label, o]): Variant => ({
      label,
      method: "deft-flatten",
      options: { ...dawn, ...o },
      runtimes: ["dawn"],
    })),
    // Change 12 undone (every block masked, mask words read inside the sub-tile): its A/B.
    {
      label: "flat-dawn-legacymask",
      method: "deft-flatten",
      options: { ...dawn, mma: { ...dawn.mma, legacyMask: 1 } },
      runtimes: ["dawn"],
    },
    // Smaller row tiles for blocks with few rows (sharing-4 and the level grid: 16 per block).
    ...[32, 16].map((rows): Variant => ({
      label: `flat-dawn-r${rows}`,
      method: "deft-flatten",
      options: { ...dawn, mma: { rows, keys: 16, fit: 0 } },
      runtimes: ["dawn"],
    })),
    { label: "flat-deno", method: "deft-flatten", options: deno, runtimes: ["deno"] },
    // Change 21 (run 29): the FMA kernel with less workgroup memory, so that 2 or 3 workgroups
    // share an SM's 48 KiB (the default declares 46.8 KiB: one per SM).
    ...([
      ["d-t128-k32", { threads: 128, rows: 64, keys: 32 }],
      ["d-t128-k32-s24k", { threads: 128, rows: 64, keys: 32, storage: 24576 }],
      ["d-t128-k32-s16k", { threads: 128, rows: 64, keys: 32, storage: 16384 }],
      ["d-t128-r32-k64-s24k", { threads: 128, rows: 32, keys: 64, storage: 24576 }],
    ] as const).map(([label, fma]): Variant => ({
      label,
      method: "deft-flatten",
      options: { ...deno, fma },
      runtimes: ["deno"],
    })),
    {
      label: "flat-deno-p0",
      method: "deft-flatten",
      options: { ...deno, privateMin: 0 },
      runtimes: ["deno"],
    },
    // Change 29 (run 39): the methods as bench runs them on a calibrated H200 with the stored
    // tuning (its A/B against the two-pass reduction, `-tree`, needs commit 85c1c9e); change 30:
    // the 128-row FMA tile (256 threads), alone on an SM (38 KiB) or two under a 24 KiB budget.
    ...([
      ["c29-dawn", "dawn", { ...tunedDawn, multiprocessors: 132 }],
      ["c29-deno", "deno", { ...tunedDeno, multiprocessors: 132 }],
    ] as const).map(([label, runtime, options]): Variant => ({
      label,
      method: "deft-flatten",
      options,
      runtimes: [runtime],
    })),
    // Change 31 (run 42): the last queries of a shared prompt routed whole to Flash-Decoding (on
    // by default with the FMA kernel: `c29-deno`), off, and asked for on the matrix kernel.
    {
      label: "c31-deno-off",
      method: "deft-flatten",
      options: { ...tunedDeno, multiprocessors: 132, tailQueries: 0 },
      runtimes: ["deno"],
    },
    {
      label: "c31-dawn-t4",
      method: "deft-flatten",
      options: { ...tunedDawn, multiprocessors: 132, tailQueries: 4 },
      runtimes: ["dawn"],
    },
    // Run 43: the FMA plan's halving of its blocks toward 1024 workgroups (`c29-deno`), against
    // none (`-w1`: the tuned 128-token blocks as given) and a lower target.
    ...([["c32-deno-w1", 1], ["c32-deno-w512", 512]] as const).map(([label, w]): Variant => ({
      label,
      method: "deft-flatten",
      options: { ...tunedDeno, multiprocessors: 132, targetWorkgroups: w },
      runtimes: ["deno"],
    })),
    // Run 48: the tuned FMA tile at larger blocks kept as given (the plan only halves its blocks
    // toward 1024 workgroups; on the speculative trees it keeps 128 tokens, thousands of
    // workgroups and partials).
    ...([256, 512, 1024] as const).map((b): Variant => ({
      label: `c34-deno-b${b}`,
      method: "deft-flatten",
      options: { ...tunedDeno, multiprocessors: 132, blockSize: b, targetWorkgroups: 1 },
      runtimes: ["deno"],
    })),
    // Change 35: deft-flatten's Flash-Decoding parts (tails, private suffixes, the unshared
    // fallback) on the lanes kernel of change 34, which leads where little is shared on Deno.
    {
      label: "c35-deno-fd-lanes",
      method: "deft-flatten",
      options: {
        ...tunedDeno,
        multiprocessors: 132,
        sequence: {
          targetWorkgroups: 1536,
          design: "lanes",
          scatter: 1,
          unroll: 8,
          threads: 64,
          lanes: 16,
        },
      },
      runtimes: ["deno"],
    },
    ...([
      ["c30-r128-k32", { threads: 256, rows: 128, keys: 32, qResident: "none" }, 128],
      ["c30-r128-k32-b256", { threads: 256, rows: 128, keys: 32, qResident: "none" }, 256],
      [
        "c30-r128-k32-s24k",
        { threads: 256, rows: 128, keys: 32, qResident: "none", storage: 24576 },
        128,
      ],
    ] as const).map(([label, fma, blockSize]): Variant => ({
      label,
      method: "deft-flatten",
      options: { ...tunedDeno, blockSize, fma, multiprocessors: 132 },
      runtimes: ["deno"],
    })),
  ];
}

/**
 * deft-flatten as `bench` runs it on the H200's Deno runtime with the stored tuning (run 38): the
 * tuned tile, and `sequence`'s tuned split count for its Flash-Decoding parts.
 */
const tunedDeno = {
  kernel: "fma" as const,
  blockSize: 128,
  fma: { threads: 128, rows: 64, keys: 64, qResident: "none", storage: 24576 },
  sequence: { targetWorkgroups: 1536 },
} satisfies Partial<MethodOptions>;

/** The same on Dawn (run 27's tuning). */
const tunedDawn = {
  kernel: "mma" as const,
  blockSize: 128,
  mma: { rows: 64, keys: 16 },
  sequence: { targetWorkgroups: 1536 },
} satisfies Partial<MethodOptions>;

/** `sequence`'s geometry and split count, for the bandwidth of the baseline (`options.sequence`). */
function sequenceVariants(): Variant[] {
  const grid: [string, NonNullable<MethodOptions["sequence"]>][] = [
    ["seq-t256-k128", { threads: 256, blockKeys: 128 }],
    ["seq-pv", { prefetchV: 1 }],
    ["seq-t256-pv", { threads: 256, prefetchV: 1 }],
    ["seq-w2048", { targetWorkgroups: 2048 }],
    ["seq-w4096", { targetWorkgroups: 4096 }],
    // Run 26: whole rounds of its 3 resident workgroups per SM (396 on an H200) on the unshared
    // batch (768: 3 chunks a query) and Table 14 (1536: 3 chunks), and 4 or 16 lanes per key
    // (4: 9 KiB of workgroup memory, 5 per SM; Q from workgroup memory).
    ["seq-w768", { targetWorkgroups: 768 }],
    ["seq-w1536", { targetWorkgroups: 1536 }],
    ["seq-l4", { lanes: 4 }],
    ["seq-l16", { lanes: 16 }],
  ];
  return [
    ...grid.map(([label, sequence]): Variant => ({
      label,
      method: "sequence",
      options: { sequence },
    })),
    // Change 29: the tuned split count.
    { label: "c29-seq", method: "sequence", options: { sequence: { targetWorkgroups: 1536 } } },
    // Run 45: 32-key blocks (7.6 KiB of workgroup memory: six workgroups per SM under the 48 KiB
    // rule instead of three), with V issued before the first barrier, at 768 workgroups, and with 64
    // threads.
    ...([
      ["c33-seq-k32", { blockKeys: 32 }],
      ["c33-seq-k32-pv", { blockKeys: 32, prefetchV: 1 }],
      ["c33-seq-k32-w768", { blockKeys: 32, targetWorkgroups: 768 }],
      ["c33-seq-t64-k32", { threads: 64, blockKeys: 32 }],
    ] as const).map(([label, v]): Variant => ({
      label,
      method: "sequence",
      options: { sequence: { targetWorkgroups: 1536, ...v } },
    })),
    // Change 32: the `lanes` design (no barrier in the loop): lanes per key, threads, keys per
    // key group and step, and the split count.
    ...([
      ["c32-l16-t64-u4", { lanes: 16, threads: 64, unroll: 4 }],
      ["c32-l16-t128-u4", { lanes: 16, threads: 128, unroll: 4 }],
      ["c32-l8-t64-u4", { lanes: 8, threads: 64, unroll: 4 }],
      ["c32-l16-t64-u2", { lanes: 16, threads: 64, unroll: 2 }],
      ["c32-l16-t64-u8", { lanes: 16, threads: 64, unroll: 8 }],
      ["c32-l32-t64-u4", { lanes: 32, threads: 64, unroll: 4 }],
      ["c32-l16-t64-u4-w768", { lanes: 16, threads: 64, unroll: 4, targetWorkgroups: 768 }],
      ["c32-l16-t64-u4-w3072", { lanes: 16, threads: 64, unroll: 4, targetWorkgroups: 3072 }],
      // Change 34: the logits reduce-scattered, one head's exponentials per lane.
      ["c34-sc-l16-t64-u4", { lanes: 16, threads: 64, unroll: 4, scatter: 1 }],
      ["c34-sc-l16-t64-u8", { lanes: 16, threads: 64, unroll: 8, scatter: 1 }],
      ["c34-sc-l8-t64-u4", { lanes: 8, threads: 64, unroll: 4, scatter: 1 }],
    ] as const).map(([label, v]): Variant => ({
      label,
      method: "sequence",
      options: { sequence: { targetWorkgroups: 1536, design: "lanes", ...v } },
    })),
  ];
}

const VARIANTS: Variant[] = [
  { label: "sequence", method: "sequence", options: {} },
  ...sequenceVariants(),
  ...flattenVariants(),
  { label: "tree-mask", method: "tree-mask", options: {} },
  // Change 36: tree-mask's two GEMMs on matrix units, against its FMA GEMMs (the other steps are
  // the same kernels).
  { label: "c36-tm-fma", method: "tree-mask", options: { kernel: "fma" } },
  { label: "c36-tm-mma", method: "tree-mask", options: { kernel: "mma" }, runtimes: ["dawn"] },
  // Flash-Decoding on matrix units, measured through deft-flatten with sharing off: every block
  // serves one query (4 real rows of a 16-row tile on Llama-3-8B) where a tree shares nothing.
  ...[16, 32].map((rows): Variant => ({
    label: `c37-fd-mma-r${rows}`,
    method: "deft-flatten",
    options: {
      kernel: "mma",
      blockSize: 128,
      fallbackReuse: 0,
      privateMin: 0,
      tailQueries: 0,
      mma: { rows, keys: 16, fit: 0 },
    },
    runtimes: ["dawn"],
  })),
  { label: "flatten-fma-b256", method: "deft-flatten", options: { kernel: "fma", blockSize: 256 } },
  { label: "flatten-fma-b512", method: "deft-flatten", options: { kernel: "fma", blockSize: 512 } },
  ...mmaVariants(),
  { label: "cascade-mma", method: "cascade", options: { kernel: "mma" }, runtimes: ["dawn"] },
  {
    label: "node-chunk-mma",
    method: "deft-node-chunk",
    options: { kernel: "mma" },
    runtimes: ["dawn"],
  },
];

/** A root of `rootTokens` with `leaves` leaves of `leafTokens`, a query on every leaf. */
export function star(rootTokens: number, leaves: number, leafTokens: number): Tree {
  const nodes: TreeNode[] = [{ id: 0, parent: null, tokens: rootTokens }];
  for (let i = 1; i <= leaves; i++) nodes.push({ id: i, parent: 0, tokens: leafTokens });
  return { nodes, queries: nodes.slice(1).map((n) => ({ node: n.id })) };
}

function trees(small: boolean): [string, Tree][] {
  const spec = (prefix: number, t: number) =>
    new SpeculativeRun({ prefix, treeTokens: t, steps: 1, seed: 1, topology: "medusa" })
      .snapshot(0);
  const few = (prompt: number, b: number, generated: number, i: number) =>
    new FewShotRun({ prompt, branches: b, generated }).snapshot(i);
  if (small) {
    return [
      ["table14-small (300 + 16 x 1)", star(300, 16, 1)],
      ["few-shot b=6, prompt 200", few(200, 6, 20, 10)],
      ["speculative t=16, prefix 200", spec(200, 16)],
      ["unshared 4 x 300", star(1, 4, 300)],
    ];
  }
  return [
    ["table14 (4000 + 64 x 1)", star(4000, 64, 1)],
    ["few-shot b=50, iteration 200", few(4000, 50, 400, 200)],
    ["few-shot b=20, iteration 200", few(4000, 20, 400, 200)],
    ["few-shot b=30, iteration 200", few(4000, 30, 400, 200)],
    ["speculative t=64, prefix 4000", spec(4000, 64)],
    ["speculative t=256, prefix 3400", spec(3400, 256)],
    [
      "speculative-t256 step 832 (4562 + 256)",
      getPreset("speculative-t256").build(1).snapshot(832),
    ],
    ["speculative-t256 step 166", getPreset("speculative-t256").build(1).snapshot(166)],
    ["speculative-t256 step 499", getPreset("speculative-t256").build(1).snapshot(499)],
    ["speculative-t64 step 499", getPreset("speculative-t64").build(1).snapshot(499)],
    ["speculative-t32 step 499", getPreset("speculative-t32").build(1).snapshot(499)],
    ["speculative-t128 step 499", getPreset("speculative-t128").build(1).snapshot(499)],
    ["few-shot-b50 step 66", getPreset("few-shot-b50").build(1).snapshot(66)],
    ["grid 4000 + 50 x 200", star(4000, 50, 200)],
    ["grid 1024 + 16 x 256 + 64 x 32", levelGridTree(parseGridSpec("1x1024,16x256,64x32"))],
    ["sharing-4 (16 x 4094, 4 queries each)", levelGridTree(parseGridSpec("1x1,16x4094,64x1"))],
    ["unshared 1 + 32 x 4096", star(1, 32, 4096)],
  ];
}

interface Result {
  runtime: RuntimeName;
  label: string;
  variant: string | null;
  status: "ok" | "error" | "wrong";
  message: string | null;
  medianUs: number | null;
  minUs: number | null;
  samples: number;
  maxRelError: number | null;
  usefulTflops: number | null;
  realBytes: number;
  stats: Record<string, number>;
}

async function runRuntime(
  runtime: RuntimeName,
  opts: {
    small: boolean;
    hot: boolean;
    samples: number;
    warmup: number;
    peak: boolean;
    spinMs: number;
    leadUs: number;
  },
  want: { trees?: string[]; variants?: string[] },
): Promise<Record<string, unknown>> {
  const gpu = await Gpu.open({ runtime });
  const info = {
    runtime: gpu.runtime,
    adapter: gpu.info.description || gpu.info.vendor,
    subgroups: gpu.hasSubgroups,
    subgroupSize: [gpu.info.subgroupMinSize, gpu.info.subgroupMaxSize],
    matrix: gpu.matrixConfig(),
    timestamps: gpu.hasTimestamps,
  };
  console.log(`\n=== runtime ${runtime}: ${JSON.stringify(info)}`);
  const timer = createTimer(gpu);
  const peakTflops = opts.peak
    ? await measureMatrixPeak(gpu, timer).then((f) => f === null ? null : f / 1e12).catch((e) => {
      console.log(`  matrix peak failed: ${(e as Error).message}`);
      return null;
    })
    : null;
  if (peakTflops) console.log(`  subgroup-matrix peak: ${peakTflops.toFixed(1)} TFLOP/s`);
  const shape = MODEL_SHAPES["llama3-8b"]!;
  const dtype = "f16" as const;
  const flush = opts.hot ? undefined : await createFlushPass(gpu, {});
  const out: Record<string, unknown>[] = [];
  for (const [treeName, tree] of trees(opts.small)) {
    if (want.trees && !want.trees.some((w) => treeName.startsWith(w))) continue;
    const problem = Problem.create(gpu, tree, { shape, dtype, seed: 1 });
    const ix = problem.ix;
    let results: Result[];
    const witness: ClockWitness = { witnessUs: [] };
    try {
      const variants = VARIANTS.filter((v) =>
        (!v.runtimes || v.runtimes.includes(runtime)) &&
        (!want.variants || want.variants.some((w) => v.label.startsWith(w)))
      );
      const measured = await verifyAndTime(
        problem,
        timer,
        variants.map((v) => ({
          label: v.label,
          method: getMethod(v.method),
          options: v.options,
        })),
        {
          samples: opts.samples,
          warmup: opts.warmup,
          flush,
          spinMs: opts.spinMs,
          leadUs: opts.leadUs,
          log: (line) => console.log(line),
        },
        witness,
      );
      results = measured.map((m): Result => ({
        runtime,
        label: m.label,
        variant: m.plan?.kernelVariant ?? null,
        status: m.status,
        message: m.message,
        medianUs: m.medianUs,
        minUs: m.minUs,
        samples: m.samplesUs.length,
        maxRelError: m.verdict?.maxRelError ?? null,
        usefulTflops: m.usefulTflops,
        realBytes: m.plan?.counts.real.totalBytes ?? 0,
        stats: m.plan
          ? { ...m.plan.stats, flops: m.plan.counts.flops, usefulFlops: m.plan.counts.usefulFlops }
          : {},
      }));
    } finally {
      problem.destroy();
    }
    const clock = witnessFraction(witness);
    console.log(
      `\n${runtime} | ${treeName}: ${ix.nodeCount} nodes, ${ix.queryCount} queries; clock witness ${
        describeWitness(witness)
      }`,
    );
    printTable(results, peakTflops);
    out.push({
      tree: treeName,
      nodes: ix.nodeCount,
      queries: ix.queryCount,
      clockFraction: clock,
      witnessUs: witness.witnessUs,
      results,
    });
  }
  flush?.destroy();
  timer.destroy();
  gpu.destroy();
  return { ...info, peakTflops, timing: timer.mode, trees: out };
}

function printTable(results: Result[], peak: number | null) {
  const seq = results.find((r) => r.label === "sequence")?.medianUs ?? null;
  const f = (x: number | null, d = 1) => (x === null ? "-" : x.toFixed(d));
  for (const r of results) {
    const cells = [
      r.label.padEnd(24),
      (r.status === "ok" ? f(r.medianUs) : r.status.toUpperCase()).padStart(9),
      (r.medianUs && seq ? f(seq / r.medianUs, 2) + "x" : "-").padStart(7),
      f(r.usefulTflops, 1).padStart(7),
      (peak && r.usefulTflops ? f((100 * r.usefulTflops) / peak, 1) + "%" : "-").padStart(7),
      (r.maxRelError === null ? "-" : r.maxRelError.toExponential(1)).padStart(8),
      String(r.stats.workgroups ?? "-").padStart(6),
      r.variant ?? "",
    ];
    console.log("  " + cells.join(" "));
  }
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      small: { type: "boolean", default: false },
      hot: { type: "boolean", default: false },
      peak: { type: "boolean", default: false },
      samples: { type: "string", default: "30" },
      warmup: { type: "string", default: "3" },
      lead: { type: "string", default: "1000" },
      spin: { type: "string", default: "1000" },
      runtimes: { type: "string", default: "deno,dawn" },
      trees: { type: "string" },
      variants: { type: "string" },
    },
  });
  const t0 = performance.now();
  const pick = (list: string | undefined) => list?.split(",").map((s) => s.trim());
  const opts = {
    small: values.small!,
    hot: values.hot!,
    peak: values.peak!,
    samples: Math.max(1, Number(values.samples)),
    warmup: Math.max(0, Number(values.warmup)),
    spinMs: Math.max(0, Number(values.spin)),
    leadUs: Math.max(0, Number(values.lead)),
  };
  const runs: Record<string, unknown>[] = [];
  for (const rt of pick(values.runtimes)!) {
    try {
      runs.push(
        await runRuntime(rt as RuntimeName, opts, {
          trees: pick(values.trees),
          variants: pick(values.variants),
        }),
      );
    } catch (e) {
      console.log(`runtime ${rt} failed: ${(e as Error).message}`);
      runs.push({ runtime: rt, error: (e as Error).message });
    }
  }
  const dir = Deno.env.get("OUT") ?? "out";
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/perf_runtimes.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify(
      {
        format: "deft-bench/perf-runtimes",
        date: new Date().toISOString(),
        shape: "llama3-8b",
        dtype: "f16",
        cache: opts.hot ? "hot" : "cold (128 MiB flush before every sample)",
        ...opts,
        elapsedS: (performance.now() - t0) / 1e3,
        runs,
      },
      null,
      1,
    ) + "\n",
  );
  console.log(`\nWrote ${path} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
  // Dawn's objects keep the process alive.
  Deno.exit(0);
}

if (import.meta.main) await main();

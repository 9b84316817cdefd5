/**
 * A profile by subtraction of a group-attention kernel: the matrix (subgroup-matrix) one by default,
 * the FMA one with `--family fma` (on Deno's runtime unless `--runtime dawn`). No profiler reaches
 * the GPU through WebGPU, so each part of the kernel (for the matrix kernel the K/V loads from the
 * KV pool, their staging into workgroup memory, S = Q K^T, the softmax, O += P V, and the fragment
 * loads of the two products) is knocked out in turn (`MmaKernelOptions.ablate` or
 * `GroupKernelOptions.ablate`, wrong by design and timed anyway), and the time it saves is what it
 * costs. The full kernel is checked against the float64 reference first; `sequence` (its default
 * split count, not a tuned one) is timed beside it as the clock witness. Llama-3-8B shape, f16, cold
 * L2 (a 128 MiB flush before every sample), variants of a tree interleaved.
 *
 *     deno run -A tools/profile_mma.ts [--small] [--samples 20] [--trees a,b] [--rows 32]
 *       [--keys 16] [--split 1] [--tiles r32-k16,r32-k16-o1] [--blocks 0,512] [--target 0]
 *       [--spin 1500] [--parts] [--knockouts kv-load,qk+pv]
 *
 * `--tiles` lists matrix tiles (`r<rows>-k<keys>[-s<split>][-o<output rounds>][-p<unused workgroup
 * bytes>]`), each profiled in full (default: the one of `--rows`, `--keys` and `--split`).
 * `--blocks` lists block sizes, each profiled in full: `0` is deft-flatten's own choice, the plan
 * `bench` runs (with the resident workgroups of the stored calibration, `out/calibration/`, blocks
 * sized to whole rounds of them; without one, the stored default halved while the tree leaves the
 * device short of workgroups), a size is kept as given (`--target`, the workgroup target of the
 * halving, applies to every entry when set). `--parts`
 * also times the stage-1 dispatch and the reduction alone. `--knockouts ""` times no knock-out.
 * `--small` uses tiny trees (software adapters). Writes `${OUT:-out}/profile_mma.json`
 * (`profile_fma.json` with `--family fma`). For the FMA kernel, `--tiles` lists
 * `t<threads>-r<rows>-k<keys>[-s<storage bytes>][-q<Q residency>][-h]` (`-h`: K, V and P staged in
 * f16, the default with f16 storage anyway; default: the kernel's default tile) and the knock-outs
 * are the {@linkcode FMA_ABLATIONS}.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createTimer } from "../bench/timer.ts";
import { createFlushPass } from "../bench/measure.ts";
import { Gpu, type RuntimeName } from "../kernels/gpu.ts";
import { MMA_ABLATIONS } from "../kernels/group_attention_mma.ts";
import { FMA_ABLATIONS, type GroupKernelOptions } from "../kernels/group_attention.ts";
import type { MethodOptions } from "../kernels/method.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import { useStoredResidency } from "../cli/runtime_args.ts";
import { Problem } from "../kernels/problem.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import type { Tree } from "../workloads/tree.ts";
import { star } from "./perf_runtimes.ts";
import {
  type ClockWitness,
  describeWitness,
  type ToolVariant,
  verifyAndTime,
  witnessFraction,
} from "./_verify_time.ts";

function trees(small: boolean): [string, Tree][] {
  if (small) {
    return [
      ["table14-small (300 + 16 x 1)", star(300, 16, 1)],
      ["unshared 4 x 300", star(1, 4, 300)],
    ];
  }
  return [
    ["table14 (4000 + 64 x 1)", star(4000, 64, 1)],
    [
      "few-shot b=50, iteration 200",
      new FewShotRun({ prompt: 4000, branches: 50, generated: 400 }).snapshot(200),
    ],
    [
      "speculative t=64, prefix 4000",
      new SpeculativeRun({ prefix: 4000, treeTokens: 64, steps: 1, seed: 1, topology: "medusa" })
        .snapshot(0),
    ],
    ["unshared 1 + 32 x 4096", star(1, 32, 4096)],
  ];
}

/**
 * The knock-outs timed: each part alone, the two load-only ones, every part of the sub-tile loop at
 * once, and the output pass with and without the loop (what is left is a workgroup's fixed cost).
 */
const KNOCKOUTS: string[] = [
  ...MMA_ABLATIONS.filter((a) => a !== "loop"),
  "qk+pv",
  "kv-load+stage",
  "kv-load+stage+qk+softmax+pv",
  "loop",
  "loop+output",
];

/** The FMA kernel's knock-outs: each part alone, the three of the sub-tile's math at once, the loop. */
const FMA_TIMED_KNOCKOUTS: string[] = [
  ...FMA_ABLATIONS.filter((a) => a !== "loop"),
  "kv-load+stage",
  "scores+softmax+pv",
  "kv-load+scores+softmax+pv",
  "loop",
];

/** `--tiles` for the FMA kernel: `t<threads>-r<rows>-k<keys>[-s<storage bytes>][-q<Q residency>][-h]`. */
function fmaTiles(spec: string): { name: string; fma: Partial<GroupKernelOptions> }[] {
  return spec.split(",").map((t) => {
    const m = t.trim().match(/^t(\d+)-r(\d+)-k(\d+)(?:-s(\d+))?(?:-q(none|f16|f32|auto))?(-h)?$/);
    if (!m) {
      throw new RangeError(
        `--tiles: ${
          JSON.stringify(t)
        } is not t<threads>-r<rows>-k<keys>[-s<bytes>][-q<residency>][-h]`,
      );
    }
    return {
      name: t.trim(),
      fma: {
        threads: Number(m[1]),
        rows: Number(m[2]),
        keys: Number(m[3]),
        ...(m[4] ? { storage: Number(m[4]) } : {}),
        ...(m[5] ? { qResident: m[5] as GroupKernelOptions["qResident"] } : {}),
        ...(m[6] ? { kvHalf: 1 } : {}),
      },
    };
  });
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      small: { type: "boolean", default: false },
      samples: { type: "string", default: "20" },
      warmup: { type: "string", default: "3" },
      lead: { type: "string", default: "1000" },
      spin: { type: "string", default: "1500" },
      rows: { type: "string", default: "32" },
      keys: { type: "string", default: "16" },
      split: { type: "string", default: "1" },
      tiles: { type: "string" },
      blocks: { type: "string", default: "0" },
      target: { type: "string", default: "0" },
      parts: { type: "boolean", default: false },
      trees: { type: "string" },
      knockouts: { type: "string" },
      family: { type: "string", default: "mma" },
      runtime: { type: "string" },
    },
  });
  const t0 = performance.now();
  const fma = values.family === "fma";
  if (!fma && values.family !== "mma") {
    throw new RangeError(`--family: mma or fma, got ${JSON.stringify(values.family)}`);
  }
  const runtime = (values.runtime ?? (fma ? "deno" : "dawn")) as RuntimeName;
  const gpu = await Gpu.open({ runtime });
  // Plan as `bench` does: the stored calibration's resident workgroups size `--blocks 0`'s blocks.
  await useStoredResidency(gpu);
  console.log(
    `Resident workgroups: ${
      gpu.residentWorkgroups ?? "unknown (no stored calibration: blocks halved to a target)"
    }`,
  );
  const timer = createTimer(gpu);
  const flush = await createFlushPass(gpu, {});
  const shape = MODEL_SHAPES["llama3-8b"]!;
  const blocks = values.blocks!.split(",").map((b) => Number(b));
  if (blocks.some((b) => !Number.isSafeInteger(b) || b < 0)) {
    throw new RangeError(`--blocks: block sizes are whole numbers >= 0, got ${values.blocks}`);
  }
  const target = Number(values.target);
  const tiles: { name: string; mma?: Record<string, number>; fma?: Partial<GroupKernelOptions> }[] =
    fma
      ? (values.tiles ? fmaTiles(values.tiles) : [{ name: "default", fma: {} }])
      : (values.tiles ?? `r${values.rows}-k${values.keys}-s${values.split}`).split(",").map(
        (t) => {
          const m = t.trim().match(/^r(\d+)-k(\d+)(?:-s(\d+))?(?:-o(\d+))?(?:-p(\d+))?$/);
          if (!m) {
            throw new RangeError(
              `--tiles: ${
                JSON.stringify(t)
              } is not r<rows>-k<keys>[-s<split>][-o<rounds>][-p<bytes>]`,
            );
          }
          return {
            name: t.trim(),
            mma: {
              rows: Number(m[1]),
              keys: Number(m[2]),
              split: Number(m[3] ?? 1),
              fit: 0, // the tile asked for, on every tree
              ...(m[4] ? { outRounds: Number(m[4]) } : {}),
              ...(m[5] ? { padBytes: Number(m[5]) } : {}),
            },
          };
        },
      );
  const knockouts = values.knockouts === undefined
    ? (fma ? FMA_TIMED_KNOCKOUTS : KNOCKOUTS)
    : values.knockouts.split(",").filter((k) => k !== "");
  const variants: ToolVariant[] = [{ label: "sequence", method: getMethod("sequence") }];
  /** The label of the full kernel each knock-out is measured against. */
  const fullLabel = new Map<string, string>();
  for (const tile of tiles) {
    for (const block of blocks) {
      const base: Partial<MethodOptions> = {
        kernel: fma ? "fma" : "mma",
        fallbackReuse: 0, // the group kernel on every tree, the unshared batch too
        ...(block > 0 ? { blockSize: block } : {}),
        ...(target > 0 ? { targetWorkgroups: target } : block > 0 ? { targetWorkgroups: 1 } : {}),
        ...(fma ? { fma: tile.fma } : { mma: tile.mma }),
      };
      const knocked = (k: string): Partial<MethodOptions> =>
        fma
          ? { ...base, fma: { ...tile.fma, ablate: k } }
          : { ...base, mma: { ...tile.mma!, ablate: k } };
      const at = (tiles.length > 1 ? ` ${tile.name}` : "") +
        (blocks.length > 1 ? ` b=${block || "auto"}` : "");
      const flatten = getMethod("deft-flatten");
      variants.push(
        { label: `full${at}`, method: flatten, options: base },
        ...(values.parts
          ? ["stage-1", "reduce"].map((part) => ({
            label: `${part} only${at}`,
            method: flatten,
            options: base,
            part,
          }))
          : []),
        ...knockouts.map((k) => ({
          label: `without ${k}${at}`,
          method: flatten,
          options: knocked(k),
          timeOnly: true,
        })),
      );
      for (const k of knockouts) fullLabel.set(`without ${k}${at}`, `full${at}`);
    }
  }
  const want = values.trees?.split(",").map((s) => s.trim());
  const out: Record<string, unknown>[] = [];
  for (const [name, tree] of trees(values.small!)) {
    if (want && !want.some((w) => name.startsWith(w))) continue;
    const problem = Problem.create(gpu, tree, { shape, dtype: "f16", seed: 1 });
    const witness: ClockWitness = { witnessUs: [] };
    try {
      const results = await verifyAndTime(problem, timer, variants, {
        samples: Math.max(1, Number(values.samples)),
        warmup: Math.max(0, Number(values.warmup)),
        flush,
        spinMs: Math.max(0, Number(values.spin)),
        leadUs: Math.max(0, Number(values.lead)),
        log: (line) => console.log(line),
      }, witness);
      const clock = witnessFraction(witness);
      const medianOf = new Map(results.map((r) => [r.label, r.medianUs]));
      console.log(
        `\n${name}: ${problem.ix.nodeCount} nodes, ${problem.ix.queryCount} queries; clock witness ${
          describeWitness(witness)
        }`,
      );
      for (const r of results) {
        const t = r.medianUs;
        const full = medianOf.get(fullLabel.get(r.label) ?? "") ?? null;
        const saved = t !== null && full !== null
          ? `saves ${(full - t).toFixed(1).padStart(6)} us (${
            (100 * (full - t) / full).toFixed(0)
          }%)`
          : "";
        console.log(
          `  ${r.label.padEnd(44)} ${
            r.status === "ok" && t !== null ? t.toFixed(1).padStart(8) : r.status.padStart(8)
          } us  ${saved}  ${r.plan?.kernelVariant ?? ""} ${r.status === "ok" ? "" : r.message}`,
        );
      }
      out.push({
        tree: name,
        nodes: problem.ix.nodeCount,
        queries: problem.ix.queryCount,
        clockFraction: clock,
        witnessUs: witness.witnessUs,
        results: results.map((r) => ({
          label: r.label,
          status: r.status,
          message: r.message,
          variant: r.plan?.kernelVariant ?? null,
          workgroups: r.plan?.stats.workgroups ?? null,
          blockSize: (r.plan as { blockSize?: number } | null)?.blockSize ?? null,
          medianUs: r.medianUs,
          minUs: r.minUs,
          samplesUs: r.samplesUs,
          maxRelError: r.verdict?.maxRelError ?? null,
        })),
      });
    } finally {
      problem.destroy();
    }
  }
  const dir = Deno.env.get("OUT") ?? "out";
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/profile_${fma ? "fma" : "mma"}.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify(
      {
        format: `deft-bench/profile-${fma ? "fma" : "mma"}`,
        date: new Date().toISOString(),
        adapter: gpu.info.description || gpu.info.vendor,
        runtime: gpu.runtime,
        matrix: gpu.matrixConfig(),
        shape: "llama3-8b",
        dtype: "f16",
        cache: "cold (128 MiB flush before every sample)",
        options: {
          blocks,
          target,
          tiles,
          flags: gpu.runtime.flags,
          residentWorkgroups: gpu.residentWorkgroups,
        },
        elapsedS: (performance.now() - t0) / 1e3,
        trees: out,
      },
      null,
      1,
    ) + "\n",
  );
  console.log(`\nWrote ${path} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
  Deno.exit(0); // Dawn's objects keep the process alive
}

if (import.meta.main) await main();

/**
 * How many workgroups of the matrix group-attention kernel the driver keeps resident at once, per
 * tile: Dawn reports neither registers nor occupancy, so the kernel counts itself
 * (`MmaKernelOptions.occupancy`: a storage counter of live workgroups and its maximum), and the
 * maximum over a dispatch that has more workgroups than fit is the residency of the whole GPU.
 * Divided by the SM count (`--sms`, 132 on an H200) it gives workgroups and warps per SM, beside the
 * kernel's workgroup memory and its time (hot L2, median of `--samples`, after a spin-up), so that
 * a tile's speed can be read against its residency.
 *
 *     deno run -A tools/occupancy_mma.ts [--tiles r32-k16,r64-k16,r32-k16-p2048] [--sms 132]
 *       [--block 128] [--samples 9] [--small]
 *
 * A tile is `r<rows>-k<keys>[-s<split>][-p<unused workgroup bytes>]`. Dawn only (the matrix
 * kernel); the Table 14 tree at the Llama-3-8B shape, f16 (`--small`: a tiny tree for software
 * adapters). Writes `${OUT:-out}/occupancy_mma.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createTimer, type PassSpec } from "../bench/timer.ts";
import { Gpu } from "../kernels/gpu.ts";
import { tileMaskWords } from "../kernels/group_attention.ts";
import { mmaWorkgroupBytes } from "../kernels/group_attention_mma.ts";
import type { MethodOptions } from "../kernels/method.ts";
import { deftFlatten } from "../kernels/methods/deft_flatten.ts";
import { Problem, runPrepared } from "../kernels/problem.ts";
import { median } from "../results/stats.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import { star } from "./perf_runtimes.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tiles: {
      type: "string",
      default:
        "r32-k16,r64-k16,r128-k16,r32-k32,r32-k16-s2,r32-k16-p2048,r32-k16-p8192,r64-k16-p8192",
    },
    sms: { type: "string", default: "132" },
    block: { type: "string", default: "128" },
    samples: { type: "string", default: "9" },
    small: { type: "boolean", default: false },
  },
});

interface Tile {
  label: string;
  rows: number;
  keys: number;
  split: number;
  padBytes: number;
}

function parseTile(t: string): Tile {
  const m = /^r(\d+)-k(\d+)(?:-s(\d+))?(?:-p(\d+))?$/.exec(t);
  if (!m) {
    console.error(
      `Bad tile ${JSON.stringify(t)}: expected r<rows>-k<keys>[-s<split>][-p<bytes>]`,
    );
    Deno.exit(2);
  }
  return {
    label: t,
    rows: Number(m[1]),
    keys: Number(m[2]),
    split: Number(m[3] ?? 1),
    padBytes: Number(m[4] ?? 0),
  };
}

const tiles = values.tiles!.split(",").filter(Boolean).map(parseTile);
const sms = Number(values.sms);
const gpu = await Gpu.open({ runtime: "dawn" });
if (!gpu.matrixConfig()) {
  console.error("The matrix kernel needs an adapter with f16 subgroup matrices (Dawn).");
  Deno.exit(2);
}
const shape = MODEL_SHAPES["llama3-8b"]!;
const tree = values.small ? star(300, 16, 1) : star(4000, 64, 1);
const problem = Problem.create(gpu, tree, { shape, dtype: "f16", seed: 1 });
const timer = createTimer(gpu);
const rows: Record<string, unknown>[] = [];
console.log(`${gpu.info.description}, Table 14 tree${values.small ? " (small)" : ""}, ${sms} SMs`);
console.log(
  "tile                 wg memory  threads  workgroups  live max  per SM  warps/SM   median us",
);
for (const t of tiles) {
  const options: Partial<MethodOptions> = {
    kernel: "mma",
    blockSize: Number(values.block),
    mma: {
      rows: t.rows,
      keys: t.keys,
      split: t.split,
      fit: 0,
      occupancy: 1,
      ...(t.padBytes ? { padBytes: t.padBytes } : {}),
    },
  };
  try {
    const plan = problem.plan(deftFlatten, options);
    const mma = plan.mma;
    if (!mma) throw new Error("the plan has no matrix tile");
    const prepared = await deftFlatten.prepare(gpu, plan, problem.buffers);
    await runPrepared(problem, prepared, t.label);
    const pass: PassSpec = { label: t.label, encode: prepared.encode, repetitions: 5 };
    const spinUntil = performance.now() + 1000;
    while (performance.now() < spinUntil) await timer.time([pass]);
    const times: number[] = [];
    for (let i = 0; i < Number(values.samples); i++) {
      const [ns] = await timer.time([pass]);
      if (ns !== null && ns !== undefined) times.push(ns / 1e3);
    }
    const counter = prepared.counters?.occupancy;
    if (!counter) throw new Error("the prepared method has no occupancy counter");
    const words = new Uint32Array(await gpu.read(counter));
    const live = words[1]!;
    const workgroups = (plan.items.length / 2) * shape.kvHeads;
    const threads = mma.threads;
    const bytes = mmaWorkgroupBytes(
      shape,
      mma,
      tileMaskWords(mma.rows, shape.qHeads / shape.kvHeads),
    );
    const row = {
      tile: t.label,
      workgroupBytes: bytes,
      threads,
      workgroups,
      liveMax: live,
      perSm: live / sms,
      warpsPerSm: (live * threads) / 32 / sms,
      medianUs: median(times),
      stillLive: words[0],
    };
    rows.push(row);
    console.log(
      `${t.label.padEnd(20)}${String(bytes).padStart(10)}${String(threads).padStart(9)}${
        String(workgroups).padStart(12)
      }${String(live).padStart(10)}${row.perSm.toFixed(2).padStart(8)}${
        row.warpsPerSm.toFixed(1).padStart(10)
      }${row.medianUs.toFixed(1).padStart(12)}`,
    );
    prepared.destroy();
  } catch (e) {
    console.log(`${t.label.padEnd(20)} error: ${(e as Error).message.split("\n")[0]}`);
    rows.push({ tile: t.label, error: (e as Error).message });
  }
}
const dir = Deno.env.get("OUT") ?? "out";
await Deno.mkdir(dir, { recursive: true });
await Deno.writeTextFile(
  `${dir}/occupancy_mma.json`,
  JSON.stringify(
    { adapter: gpu.info.description, sms, block: Number(values.block), rows },
    null,
    1,
  ),
);
timer.destroy();
Deno.exit(0);

/**
 * Does the KV pool's layout bound `sequence`'s bandwidth? Times pure reads of 512 MiB (far more
 * than the L2) in the access patterns of the attention kernels, interleaved in one group:
 *
 * - `pool`: a workgroup per (chunk of slots, KV head) reads that head's 256-byte row of every slot
 *   of its chunk from the pool's `[slot][kvHead][d]` layout (8 heads of 128 f16 dims: rows 2 KiB
 *   apart), as `sequence` and every Flash-Decoding part do;
 * - `head`: the same workgroups and bytes from a `[kvHead][slot][d]` layout (each workgroup's rows
 *   contiguous);
 * - `flat`: a workgroup per chunk of consecutive 256-byte rows (contiguous, the same bytes per
 *   workgroup);
 * - `grid`: calibrate's read kernel (8192 workgroups of 256 threads, grid-stride, one vec4 each).
 *
 * Rows are read with 16-byte loads (16 lanes per row) or 8-byte loads (32 lanes, as the f16 kernels
 * load `vec4<f16>`), 4 rows per lane in flight per iteration. Prints GB/s per case and writes
 * `${OUT:-out}/probe_layout.json`.
 *
 *     deno run -A tools/probe_layout.ts [--runtime deno|dawn] [--budget-ms 400] [--slots 262144]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { READ_WGSL } from "../bench/calibrate.ts";
import { createTimer } from "../bench/timer.ts";
import { type MeasureCase, measureInterleaved } from "../bench/measure.ts";
import { Gpu, RUNTIME_NAMES, type RuntimeName } from "../kernels/gpu.ts";
import { median } from "../results/stats.ts";

const HEADS = 8;
const ROW_BYTES = 256;
const THREADS = 128;

type Mode = "pool" | "head" | "flat";

function shader(mode: Mode, loadBytes: 8 | 16, chunk: number, slots: number): string {
  const rowv = ROW_BYTES / loadBytes;
  const lv = loadBytes === 16 ? "vec4<u32>" : "vec2<u32>";
  const row = {
    pool: "(index / HEADS * CHUNK + j) * HEADS + index % HEADS",
    head: "(index % HEADS) * SLOTS + index / HEADS * CHUNK + j",
    flat: "index * CHUNK + j",
  }[mode];
  return `
const HEADS: u32 = ${HEADS}u;
const SLOTS: u32 = ${slots}u;
const CHUNK: u32 = ${chunk}u;
const ROWV: u32 = ${rowv}u;
const RP: u32 = ${THREADS / rowv}u;
@group(0) @binding(0) var<storage, read> src: array<${lv}>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
fn at(index: u32, j: u32, lane: u32) -> ${lv} {
  return src[(${row}) * ROWV + lane];
}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) n: vec3u,
        @builtin(local_invocation_index) t: u32) {
  let index = wg.x + wg.y * n.x;
  let lane = t % ROWV;
  var acc = ${lv}(0u);
  for (var j = t / ROWV; j < CHUNK; j += 4u * RP) {
    let a = at(index, j, lane);
    let b = at(index, j + RP, lane);
    let c = at(index, j + 2u * RP, lane);
    let d = at(index, j + 3u * RP, lane);
    acc ^= a ^ b ^ c ^ d;
  }
  // The buffer holds zeros: the store never happens, but the loads cannot be removed.
  if (acc.x == 0x12345678u) { sink[t] = acc.x; }
}`;
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runtime: { type: "string", default: "deno" },
      "budget-ms": { type: "string", default: "400" },
      slots: { type: "string", default: String(1 << 18) },
    },
  });
  if (!(RUNTIME_NAMES as readonly string[]).includes(values.runtime!)) {
    console.error(`--runtime must be one of ${RUNTIME_NAMES.join(", ")}, got ${values.runtime}`);
    Deno.exit(2);
  }
  const budgetMs = Number(values["budget-ms"]);
  if (!Number.isFinite(budgetMs) || budgetMs <= 0) {
    console.error(`--budget-ms must be a positive number, got ${values["budget-ms"]}`);
    Deno.exit(2);
  }
  const slots = Number(values.slots);
  if (!Number.isSafeInteger(slots) || slots < 2048 || slots % 2048 !== 0) {
    console.error(`--slots must be a positive multiple of 2048, got ${values.slots}`);
    Deno.exit(2);
  }
  const BYTES = slots * HEADS * ROW_BYTES; // 512 MiB by default
  const gpu = await Gpu.open({ runtime: values.runtime as RuntimeName });
  const d = gpu.device;
  const src = d.createBuffer({ label: "probe src", size: BYTES, usage: GPUBufferUsage.STORAGE });
  const sink = gpu.buffer("probe sink", 8192 * 256 * 4); // a word per thread of the grid kernel
  try {
    const variants: [string, string, number][] = [];
    for (
      const [mode, load, chunk] of [
        ["pool", 16, 2048],
        ["pool", 8, 2048],
        ["pool", 16, 512],
        ["pool", 8, 512],
        ["head", 16, 2048],
        ["head", 8, 2048],
        ["flat", 16, 2048],
        ["flat", 8, 2048],
      ] as const
    ) {
      const rows = mode === "flat" ? slots * HEADS : slots;
      const wgs = mode === "flat" ? rows / chunk : (rows / chunk) * HEADS;
      variants.push([
        `${mode}-${load}B-c${chunk} (${wgs} wg)`,
        shader(mode, load, chunk, slots),
        wgs,
      ]);
    }
    variants.push(["grid (calibrate's read, 8192 wg x 256)", READ_WGSL, 8192]);
    const cases: MeasureCase[] = [];
    for (const [key, code, wgs] of variants) {
      const pipeline = await gpu.pipeline(`probe ${key}`, code);
      const bindGroup = d.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: src } }, {
          binding: 1,
          resource: { buffer: sink },
        }],
      });
      const x = Math.min(wgs, 65535);
      const y = Math.ceil(wgs / x);
      if (x * y !== wgs) throw new Error(`${key}: ${wgs} workgroups do not fold`);
      cases.push({
        key,
        encode(pass) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(x, y);
        },
      });
    }
    const timer = createTimer(gpu);
    const ms = await measureInterleaved(timer, cases, {
      warmupMs: 300,
      budgetMs,
      minSamples: 10,
      maxSamples: 200,
      targetRelativeCi: 0.005,
    });
    console.log(`${gpu.runtime.version} on ${gpu.info.description || gpu.info.vendor}`);
    const out = ms.map((m) => {
      const ns = median(m.samplesNs);
      return { key: m.key, medianNs: ns, gbPerS: BYTES / ns, samples: m.samplesNs.length };
    });
    for (const o of out) {
      console.log(
        `  ${o.key.padEnd(44)} ${(o.medianNs / 1e3).toFixed(1).padStart(8)} us ${
          o.gbPerS.toFixed(0).padStart(6)
        } GB/s  (${o.samples} samples)`,
      );
    }
    const dir = Deno.env.get("OUT") ?? "out";
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/probe_layout.json`,
      JSON.stringify(
        { runtime: gpu.runtime, adapter: gpu.info, bytes: BYTES, cases: out },
        null,
        1,
      ),
    );
  } finally {
    src.destroy();
    sink.destroy();
    gpu.destroy();
  }
}

if (import.meta.main) await main();

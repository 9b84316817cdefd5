/**
 * What one subgroup-matrix operation costs on this adapter, by kind: fragment loads from workgroup
 * memory (left row-major, right column-major as the matrix kernel's K^T, right row-major as its V),
 * at constant and at per-subgroup offsets, with a padded and an unpadded row stride; a result store
 * as the kernel's S; and scalar f16 staging stores as the kernel's K/V staging. Each variant is one
 * kernel whose loop runs 8 MMAs per iteration after a workgroup barrier (the matrix kernel's sub-tile
 * shape), plus the operation under test; the `reg` variant (operands in registers) is the floor. The
 * output is the time per (workgroup, iteration) per SM in ns and in cycles at the clock given by
 * `--mhz` (the H200 runs 1980 MHz under load), and the cost of the operation over `reg`.
 *
 *     deno run -A tools/probe_fragments.ts [--runtime dawn] [--mhz 1980] [--iters 256] [--wg 64,128]
 *
 * Timed with timestamp queries: 2 s of the `reg` kernel first to lift the clock, then 7 rounds of
 * every variant, interleaved; the minimum of each is reported. Results are written as JSON to
 * $OUT/probe_fragments.json when OUT is set.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createTimer } from "../bench/timer.ts";
import { Gpu, type RuntimeName } from "../kernels/gpu.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runtime: { type: "string", default: "dawn" },
    mhz: { type: "string", default: "1980" },
    iters: { type: "string", default: "256" },
    wg: { type: "string", default: "64,128" },
    sms: { type: "string", default: "132" },
    pad: { type: "string", default: "0" },
  },
});
const gpu = await Gpu.open({ runtime: values.runtime as RuntimeName });
const c = gpu.matrixConfig();
if (!c) {
  console.error("no f16 subgroup-matrix config on this adapter");
  Deno.exit(2);
}
if (!gpu.hasTimestamps) {
  console.error("this probe needs timestamp-query");
  Deno.exit(2);
}
const { M, N, K } = c;
const SG = gpu.info.subgroupMinSize;
const ITERS = Number(values.iters);
const MHZ = Number(values.mhz);
const SMS = Number(values.sms);
const PAD = Number(values.pad) * 256; // f32 words of unused workgroup memory (--pad KiB)
const F = 8; // fragments (MMAs) per iteration, as the matrix kernel's 8 K-steps of d = 128
const L = `subgroup_matrix_left<f16, ${K}, ${M}>`;
const R = `subgroup_matrix_right<f16, ${N}, ${K}>`;
const C = `subgroup_matrix_result<f32, ${N}, ${M}>`;

interface Variant {
  name: string;
  /** The loop body after the barrier; `a${i}`/`b${i}` hold register operands, `c0`/`c1` accumulate. */
  body: (stride: number) => string;
  strides: number[];
}

const mmaChains = (chains: number) => (a: (i: number) => string, b: (i: number) => string) =>
  Array.from(
    { length: F },
    (_, i) =>
      `    c${i % chains} = subgroupMatrixMultiplyAccumulate(${a(i)}, ${b(i)}, c${i % chains});`,
  ).join("\n");
// K^T and V fragments straight from a KV-pool-like storage array ([slot][8 heads][128], L2-resident).
const kvRow = "(((it * 16u) + wgid.x * 64u) & 4095u) * 1024u";
const globalCol = (i: number) =>
  `subgroupMatrixLoad<${R}, col_major>(&kv, ${kvRow} + ${i * K}u, 1024u)`;
const globalRow = (i: number) =>
  `subgroupMatrixLoad<${R}, row_major>(&kv, ${kvRow} + ${i * N}u, 1024u)`;
const mma = (a: (i: number) => string, b: (i: number) => string) =>
  Array.from(
    { length: F },
    (_, i) => `    c${i & 1} = subgroupMatrixMultiplyAccumulate(${a(i)}, ${b(i)}, c${i & 1});`,
  )
    .join("\n");
const ra = (i: number) => `a${i}`;
const rb = (i: number) => `b${i}`;
const left = (s: number, rt: boolean) => (i: number) =>
  `subgroupMatrixLoad<${L}, row_major>(&h, ${rt ? `sgi * ${M * s}u + ` : ""}${i * K}u, ${s}u)`;
const rightCol = (s: number, rt: boolean) => (i: number) =>
  `subgroupMatrixLoad<${R}, col_major>(&h, ${rt ? `sgi * ${N * s}u + ` : ""}${i * K}u, ${s}u)`;
const rightRow = (s: number, rt: boolean) => (i: number) =>
  `subgroupMatrixLoad<${R}, row_major>(&h, ${rt ? `sgi * ${K * s}u + ` : ""}${i * N}u, ${s}u)`;

// A global load per invocation and iteration (L2-resident data), whose value is used one
// iteration later (a prefetch across the barrier) or at once; with and without the barrier.
const gload = "src[(wgid.x * 977u + it * WG + lid) & 131071u]";
const prefetch = `    let nx = ${gload};\n    acc += f32(px.x);\n    px = nx;`;
const VARIANTS: Variant[] = [
  { name: "reg", body: () => mma(ra, rb), strides: [136] },
  { name: "reg-nobar", body: () => mma(ra, rb), strides: [136] },
  { name: "reg-chain1", body: () => mmaChains(1)(ra, rb), strides: [136] },
  { name: "reg-chain4", body: () => mmaChains(4)(ra, rb), strides: [136] },
  { name: "global-right-col", body: () => mma(ra, globalCol), strides: [136] },
  { name: "global-right-row", body: () => mma(ra, globalRow), strides: [136] },
  { name: "prefetch", body: () => mma(ra, rb) + "\n" + prefetch, strides: [136] },
  { name: "prefetch-nobar", body: () => mma(ra, rb) + "\n" + prefetch, strides: [136] },
  { name: "load-use", body: () => mma(ra, rb) + `\n    acc += f32(${gload}.x);`, strides: [136] },
  { name: "left-row", body: (s) => mma(left(s, false), rb), strides: [128, 136] },
  { name: "left-row-rt", body: (s) => mma(left(s, true), rb), strides: [24, 136] },
  { name: "right-col", body: (s) => mma(ra, rightCol(s, false)), strides: [128, 136] },
  { name: "right-col-rt", body: (s) => mma(ra, rightCol(s, true)), strides: [136] },
  { name: "right-row", body: (s) => mma(ra, rightRow(s, false)), strides: [128, 136] },
  {
    name: "qk (left-row + right-col)",
    body: (s) => mma(left(s, false), rightCol(s, false)),
    strides: [136],
  },
  {
    name: "store-S (8 f32 result stores)",
    body: (s) =>
      mma(ra, rb) + "\n" +
      Array.from({ length: F }, (_, i) =>
        `    subgroupMatrixStore<row_major>(&f, sgi * ${M * 20}u + ${(i % 2) * 0}u, c${
          i & 1
        }, 20u);`)
        .join("\n") +
      `\n    _ = ${s}u;`,
    strides: [136],
  },
  {
    name: "stage (32 scalar f16 stores / invocation)",
    body: (s) =>
      mma(ra, rb) + "\n" +
      Array.from({ length: 8 }, (_, i) =>
        `    { let e = lid + ${i}u * WG; let at = (e / 32u) * ${s}u + 4u * (e % 32u); let x = src[(e + it) & 1023u];
      h[at] = x.x; h[at + 1u] = x.y; h[at + 2u] = x.z; h[at + 3u] = x.w; }`).join("\n"),
    strides: [136],
  },
];

function source(v: Variant, stride: number, wg: number): string {
  const rows = Math.max(64, (wg / SG) * M, wg / 4); // runtime offsets and the staging's rows
  const hSize = rows * stride + 64;
  return `${
    gpu.wgslEnables({ f16: true, subgroups: true, subgroupMatrix: true })
  }enable chromium_disable_uniformity_analysis;
const WG: u32 = ${wg}u;
@group(0) @binding(0) var<storage, read> src: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> kv: array<f16>;
var<workgroup> h: array<f16, ${Math.ceil(hSize / 8) * 8}>;
var<workgroup> f: array<f32, ${(wg / SG) * M * 20}>;
${PAD ? `var<workgroup> pad_sh: array<f32, ${PAD}>;` : ""}
@compute @workgroup_size(${wg}) fn main(@builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wgid: vec3<u32>) {
  for (var e = lid; e < ${Math.floor(hSize / 4)}u; e += WG) {
    let x = src[e & 1023u];
    h[4u * e] = x.x; h[4u * e + 1u] = x.y; h[4u * e + 2u] = x.z; h[4u * e + 3u] = x.w;
  }
  workgroupBarrier();
  let sgi = lid / ${SG}u;
${
    Array.from({ length: F }, (_, i) =>
      `  let a${i} = subgroupMatrixLoad<${L}, row_major>(&h, ${i * K}u, ${stride}u);
  let b${i} = subgroupMatrixLoad<${R}, col_major>(&h, ${i * K}u, ${stride}u);`).join("\n")
  }
  var c0 = ${C}();
  var c1 = ${C}();
  var c2 = ${C}();
  var c3 = ${C}();
  var acc = 0.0;
  var px = vec4<f16>();
  for (var it = 0u; it < ${ITERS}u; it++) {
    ${v.name.endsWith("-nobar") ? "" : "workgroupBarrier();"}
${v.body(stride)}
  }
  workgroupBarrier();
  subgroupMatrixStore<row_major>(&f, sgi * ${M * 20}u, c0, 20u);
  workgroupBarrier();
  subgroupMatrixStore<row_major>(&f, sgi * ${M * 20}u, c1, 20u);
  workgroupBarrier();
  subgroupMatrixStore<row_major>(&f, sgi * ${M * 20}u + 1u, c2, 20u);
  workgroupBarrier();
  subgroupMatrixStore<row_major>(&f, sgi * ${M * 20}u + 2u, c3, 20u);
  workgroupBarrier();
  if (lid == 0u) { out[2] = f32(kv[0]); }
  if (lid == 0u) { out[wgid.x] = f[0] + f[${M * 20 - 1}]; }
  if (acc == 12345.0) { out[0] = acc; }
  ${PAD ? "if (acc == 54321.0) { pad_sh[lid] = acc; out[1] = pad_sh[lid + 1u]; }" : ""}
}`;
}

interface Row {
  variant: string;
  stride: number;
  wg: number;
  minNs: number;
  nsPerUnitPerSm: number;
  cycles: number;
  overRegCycles: number | null;
}

const data = new Uint16Array(131072 * 4).map((_, i) => 0x3c00 + (i % 7)); // f16 values near 1
const srcBuf = gpu.buffer("src", data);
const workgroups = SMS * 16;
const outBuf = gpu.buffer("out", workgroups * 4);
const kvBuf = gpu.buffer("kv", new Uint16Array(4096 * 1024 + 1024).fill(0x3c00));
const timer = createTimer(gpu);
/** GPU ns per dispatch of `reps` dispatches in one timed pass (null: a discarded sample). */
async function time(p: GPUComputePipeline, bg: GPUBindGroup, reps = 1): Promise<number | null> {
  const encode = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(p);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(workgroups);
  };
  const [ns] = await timer.time([{ label: "probe", encode, repetitions: reps }]);
  return ns ?? null;
}

const cases: { v: Variant; stride: number; wg: number; p: GPUComputePipeline; bg: GPUBindGroup }[] =
  [];
for (const wg of values.wg!.split(",").map(Number)) {
  for (const v of VARIANTS) {
    for (const stride of v.strides) {
      const p = await gpu.pipeline(`probe ${v.name} s${stride} wg${wg}`, source(v, stride, wg));
      const bg = gpu.device.createBindGroup({
        layout: p.getBindGroupLayout(0),
        entries: [srcBuf, outBuf, kvBuf].map((buffer, binding) => ({
          binding,
          resource: { buffer },
        })),
      });
      cases.push({ v, stride, wg, p, bg });
    }
  }
}
// Lift the clock.
const t0 = performance.now();
while (performance.now() - t0 < 2000) await time(cases[0]!.p, cases[0]!.bg, 20);
const best = new Map<number, number>();
for (let round = 0; round < 7; round++) {
  for (const [i, cs] of cases.entries()) {
    const t = await time(cs.p, cs.bg, 4);
    if (t !== null) best.set(i, Math.min(best.get(i) ?? Infinity, t));
  }
}
const rows: Row[] = [];
for (const [i, cs] of cases.entries()) {
  const ns = best.get(i) ?? NaN; // NaN: every sample discarded
  const units = (workgroups * ITERS) / SMS;
  const per = ns / units;
  rows.push({
    variant: cs.v.name,
    stride: cs.stride,
    wg: cs.wg,
    minNs: ns,
    nsPerUnitPerSm: per,
    cycles: per * MHZ / 1000,
    overRegCycles: null,
  });
}
for (const r of rows) {
  const reg = rows.find((x) => x.variant === "reg" && x.wg === r.wg)!;
  r.overRegCycles = r.cycles - reg.cycles;
}
console.log(
  `${gpu.info.description}: ${M}x${N}x${K}, subgroup ${SG}, ${workgroups} workgroups x ${ITERS} iterations of ${F} MMAs`,
);
console.log(
  "variant                                     stride  wg   us/dispatch  cycles/unit/SM  over reg",
);
for (const r of rows) {
  console.log(
    `${r.variant.padEnd(44)}${String(r.stride).padStart(6)}${String(r.wg).padStart(5)}${
      (r.minNs / 1e3).toFixed(1).padStart(13)
    }${r.cycles.toFixed(0).padStart(16)}${(r.overRegCycles ?? 0).toFixed(0).padStart(10)}`,
  );
}
const dir = Deno.env.get("OUT");
if (dir) {
  await Deno.writeTextFile(
    `${dir}/probe_fragments-pad${values.pad}.json`,
    JSON.stringify(
      { adapter: gpu.info.description, config: c, iters: ITERS, workgroups, mhz: MHZ, rows },
      null,
      1,
    ),
  );
}
Deno.exit(0);

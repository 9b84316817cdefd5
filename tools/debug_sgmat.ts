/**
 * Micro-checks of subgroup-matrix loads and stores through workgroup memory, each one tile against
 * the CPU: a matrix is staged into a workgroup f16 array by scalar stores (at an offset and row
 * stride), loaded as a left (row-major) or right (column-major) fragment, multiplied by an identity
 * from storage and stored; the output says for each case whether it matched, or by how many
 * elements it is shifted. Used to find why the matrix kernel's fragments were off by one on NVIDIA.
 *
 *     deno run -A tools/debug_sgmat.ts [--runtime dawn]
 *
 * @module
 */

import { Gpu, type RuntimeName } from "../kernels/gpu.ts";

const runtime =
  (Deno.args.find((a) => a.startsWith("--runtime="))?.slice(10) ?? "dawn") as RuntimeName;
const gpu = await Gpu.open({ runtime });
const c = gpu.matrixConfig();
if (!c) throw new Error("no matrix config");
const { M, N, K } = c;
if (M !== N || N !== K) throw new Error("square configs only");
const T = M;
const sg = gpu.info.subgroupMinSize;
console.log(gpu.info.description, `${M}x${N}x${K}`, `subgroup ${sg}`);

interface Case {
  name: string;
  stride: number;
  offset: number;
  colMajor: boolean;
  f32First: boolean;
  noUniformity: boolean;
  bitcast: boolean;
  viaResult: boolean;
}

function f16bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const s = (u >>> 16) & 0x8000, e = ((u >>> 23) & 0xff) - 127 + 15, m = (u >>> 13) & 0x3ff;
  if (x === 0) return 0;
  return s | (e << 10) | m;
}

async function run(cs: Case): Promise<string> {
  const size = cs.offset + T * cs.stride + 16;
  const L = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const R = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const C = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const load = cs.colMajor
    ? `let b = subgroupMatrixLoad<${R}, col_major>(&W, ${cs.offset}u, ${cs.stride}u);
  let a = subgroupMatrixLoad<${L}, row_major>(&I, 0u, ${T}u);
  let r = subgroupMatrixMultiplyAccumulate(a, b, ${C}());`
    : `let a = subgroupMatrixLoad<${L}, row_major>(&W, ${cs.offset}u, ${cs.stride}u);
  let b = subgroupMatrixLoad<${R}, row_major>(&I, 0u, ${T}u);
  let r = subgroupMatrixMultiplyAccumulate(a, b, ${C}());`;
  const fdecl = `var<workgroup> F: array<f32, ${T * (T + 4)}>;`;
  const code = `${gpu.wgslEnables({ f16: true, subgroups: true, subgroupMatrix: true })}${
    cs.noUniformity ? "enable chromium_disable_uniformity_analysis;\n" : ""
  }
@group(0) @binding(0) var<storage, read> A: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> AU: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> I: array<f16>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
${cs.f32First ? fdecl : ""}
var<workgroup> W: array<f16, ${size}>;
${cs.f32First ? "" : fdecl}
@compute @workgroup_size(${sg}) fn main(@builtin(local_invocation_index) lid: u32) {
  _ = A[0];
  _ = AU[0];
  for (var e = lid; e < ${(T * T) / 4}u; e += ${sg}u) {
    let row = (4u * e) / ${T}u;
    let col = (4u * e) % ${T}u;
    // column-major cases stage the transpose: column (key) n holds A's row n
    let at = ${cs.offset}u + row * ${cs.stride}u + col;
    ${
    cs.bitcast
      ? `let u = AU[e]; let h0 = bitcast<vec2<f16>>(u.x); let h1 = bitcast<vec2<f16>>(u.y);
    W[at] = h0.x; W[at + 1u] = h0.y; W[at + 2u] = h1.x; W[at + 3u] = h1.y;`
      : `let x = A[e]; W[at] = x.x; W[at + 1u] = x.y; W[at + 2u] = x.z; W[at + 3u] = x.w;`
  }
  }
  workgroupBarrier();
  ${load}
  ${
    cs.viaResult
      ? `subgroupMatrixStore<row_major>(&F, 0u, r, ${T + 4}u);
  workgroupBarrier();
  for (var e = lid; e < ${T * T}u; e += ${sg}u) { O[e] = F[(e / ${T}u) * ${T + 4}u + e % ${T}u]; }`
      : `subgroupMatrixStore<row_major>(&O, 0u, r, ${T}u);`
  }
  ${cs.viaResult ? "" : "_ = F[0];"}
}`;
  const a = new Float32Array(T * T).map((_, i) => ((i * 7) % 23) - 11);
  const ah = Uint16Array.from(a, f16bits);
  const id = new Uint16Array(T * T);
  for (let i = 0; i < T; i++) id[i * T + i] = f16bits(1);
  const pipeline = await gpu.pipeline(`sgmat ${cs.name}`, code);
  const bufs = [
    gpu.buffer("A", ah),
    gpu.buffer("AU", ah),
    gpu.buffer("I", id),
    gpu.buffer("O", T * T * 4),
  ];
  const bg = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  await gpu.scoped(cs.name, () => {
    const enc = gpu.device.createCommandEncoder();
    const p = enc.beginComputePass();
    p.setPipeline(pipeline);
    p.setBindGroup(0, bg);
    p.dispatchWorkgroups(1);
    p.end();
    gpu.device.queue.submit([enc.finish()]);
  });
  const out = new Float32Array(await gpu.read(bufs[3]!));
  bufs.forEach((b) => b.destroy());
  // Expected: row-major A (left) -> A; column-major staging of A's rows as columns -> A^T.
  const want = (i: number) => cs.colMajor ? a[(i % T) * T + Math.floor(i / T)]! : a[i]!;
  for (const shift of [0, -1, 1, -2, 2]) {
    let ok = true;
    for (let i = 2; i < T * T - 2; i++) {
      if (out[i] !== want(i + shift)) {
        ok = false;
        break;
      }
    }
    if (ok) return shift === 0 ? "PASS" : `SHIFTED by ${shift}`;
  }
  return `FAIL first row got ${Array.from(out.slice(0, 6)).join(",")} want ${
    Array.from({ length: 6 }, (_, i) => want(i)).join(",")
  }`;
}

const base: Case = {
  name: "",
  stride: T,
  offset: 0,
  colMajor: false,
  f32First: false,
  noUniformity: false,
  bitcast: false,
  viaResult: false,
};
const cases: Case[] = [];
for (const colMajor of [false, true]) {
  for (const stride of [T, T + 8, 136]) {
    for (const offset of [0, T, 8704 - T * stride - 8]) {
      if (offset < 0) continue;
      cases.push({
        ...base,
        colMajor,
        stride,
        offset,
        name: `${colMajor ? "col" : "row"} s${stride} o${offset}`,
      });
    }
  }
}
cases.push({ ...base, stride: 136, f32First: true, name: "row s136 f32-array-first" });
cases.push({ ...base, stride: 136, noUniformity: true, name: "row s136 no-uniformity" });
cases.push({ ...base, stride: 136, bitcast: true, name: "row s136 bitcast staging" });
cases.push({ ...base, stride: 136, viaResult: true, name: "row s136 result via workgroup f32" });
cases.push({
  ...base,
  stride: 136,
  colMajor: true,
  noUniformity: true,
  viaResult: true,
  name: "col s136 no-uniformity via f32",
});
for (const cs of cases) {
  let r: string;
  try {
    r = await run(cs);
  } catch (e) {
    r = `ERROR ${(e as Error).message.split("\n").slice(0, 2).join(" ")}`;
  }
  console.log(`${cs.name.padEnd(36)} ${r}`);
}
Deno.exit(0);

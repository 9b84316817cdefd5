/**
 * Self-test of the private lavapipe that `.ci/lavapipe.sh` prepares; it runs there with the
 * environment that `tools/with-lavapipe.sh` sets. It passes only when Dawn (loaded from DAWN_NODE)
 * finds the private Mesa lavapipe, which offers subgroups and subgroup matrices, when one
 * subgroup-matrix multiply-accumulate tile computes exactly what the CPU computes, and when every
 * shared library mapped into this process comes from the private folder (or is dawn.node itself),
 * so nothing from the system's older Mesa or glibc slipped in.
 *
 * @module
 */

import { createRequire } from "node:module";

interface MatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** Dawn's adapter info carries fields that Deno's WebGPU types do not declare. */
interface DawnAdapterInfo {
  description: string;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: Iterable<MatrixConfig>;
}

/** The create() flags of the facts file (shared/gpu/matrix-units.md). */
const DAWN_FLAGS = [
  "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,use_vulkan_memory_model",
  "disable-dawn-features=timestamp_quantization",
  "backend=vulkan",
];
const MATRIX_FEATURE = "chromium-experimental-subgroup-matrix";

function fail(message: string): never {
  console.error(`self-test FAILED: ${message}`);
  Deno.exit(1);
}

function env(name: string): string {
  return Deno.env.get(name) ?? fail(`${name} is not set (run through tools/with-lavapipe.sh)`);
}

/** f16 bits of an integer of magnitude below 2048 (exact there). */
function f16Bits(n: number): number {
  if (n === 0) return 0;
  const sign = n < 0 ? 0x8000 : 0;
  const a = Math.abs(n);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

const privateDir = env("DEFT_LAVAPIPE_DIR");
const dawnNode = Deno.realPathSync(env("DAWN_NODE"));
const dawn = createRequire(import.meta.url)(dawnNode) as { create(flags: string[]): GPU };
// Keep the GPU object referenced: once it is garbage-collected, dawn.node's scheduled
// ProcessEvents() runs on a freed instance and the process aborts.
const gpu = dawn.create(DAWN_FLAGS);
const adapter = await gpu.requestAdapter() ??
  fail("Dawn found no Vulkan adapter (VK_DRIVER_FILES should name the private lavapipe)");
const info = adapter.info as unknown as DawnAdapterInfo;
console.log(`dawn adapter: ${info.description}`);
if (!/llvmpipe/i.test(info.description)) fail(`the adapter is not lavapipe: ${info.description}`);
const features = adapter.features as unknown as ReadonlySet<string>; // Dawn has non-standard ones
for (const f of ["subgroups", MATRIX_FEATURE]) {
  if (!features.has(f)) fail(`the adapter lacks the feature ${f}`);
}
const configs = [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({
  componentType: c.componentType,
  resultComponentType: c.resultComponentType,
  M: Number(c.M),
  N: Number(c.N),
  K: Number(c.K),
}));
console.log(
  `subgroup-matrix configs: ${
    configs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`)
      .join(", ")
  }`,
);
const hasF16 = adapter.features.has("shader-f16");
const config = configs.find((c) => c.componentType === "f32" && c.resultComponentType === "f32") ??
  configs.find((c) => c.componentType === "f16" && c.resultComponentType === "f32" && hasF16) ??
  fail("no f32->f32 or f16->f32 subgroup-matrix config");
const { M, N, K, componentType: ct } = config;

const device = await adapter.requestDevice({
  requiredFeatures: [
    "subgroups",
    MATRIX_FEATURE,
    ...(ct === "f16" ? ["shader-f16"] : []),
  ] as GPUFeatureName[],
});
const lanes = info.subgroupMaxSize ?? 64;
const code = `${ct === "f16" ? "enable f16;\n" : ""}enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<${ct}>;
@group(0) @binding(1) var<storage, read> B: array<${ct}>;
@group(0) @binding(2) var<storage, read> C0: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(${lanes}) fn main() {
  let a = subgroupMatrixLoad<subgroup_matrix_left<${ct}, ${K}, ${M}>, row_major>(&A, 0u, ${K}u);
  let b = subgroupMatrixLoad<subgroup_matrix_right<${ct}, ${N}, ${K}>, row_major>(&B, 0u, ${N}u);
  let c0 = subgroupMatrixLoad<subgroup_matrix_result<f32, ${N}, ${M}>, row_major>(&C0, 0u, ${N}u);
  let c = subgroupMatrixMultiplyAccumulate(a, b, c0);
  subgroupMatrixStore<row_major>(&C, 0u, c, ${N}u);
}`;

// Small integers: every product and sum is exact in f16 inputs and f32 results.
const a = Array.from({ length: M * K }, (_, i) => ((i * 7) % 9) - 4);
const b = Array.from({ length: K * N }, (_, i) => ((i * 5) % 7) - 3);
const c0 = Array.from({ length: M * N }, (_, i) => (i % 5) - 2);
const expected = c0.map((v, i) => {
  const r = Math.floor(i / N), col = i % N;
  let s = v;
  for (let k = 0; k < K; k++) s += a[r * K + k]! * b[k * N + col]!;
  return s;
});
const operand = (values: number[]) => {
  const bytes = ct === "f16" ? new Uint16Array(values.map(f16Bits)) : new Float32Array(values);
  const buf = device.createBuffer({
    size: Math.max(16, bytes.byteLength),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buf, 0, bytes);
  return buf;
};
const bufA = operand(a), bufB = operand(b);
const bufC0 = device.createBuffer({
  size: M * N * 4,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
});
device.queue.writeBuffer(bufC0, 0, new Float32Array(c0));
const bufC = device.createBuffer({
  size: M * N * 4,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
});
const readback = device.createBuffer({
  size: M * N * 4,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});
device.pushErrorScope("validation");
const module = device.createShaderModule({ code });
const pipeline = device.createComputePipeline({
  layout: "auto",
  compute: { module, entryPoint: "main" },
});
const bind = device.createBindGroup({
  layout: pipeline.getBindGroupLayout(0),
  entries: [bufA, bufB, bufC0, bufC].map((buffer, binding) => ({ binding, resource: { buffer } })),
});
const enc = device.createCommandEncoder();
const pass = enc.beginComputePass();
pass.setPipeline(pipeline);
pass.setBindGroup(0, bind);
pass.dispatchWorkgroups(1);
pass.end();
enc.copyBufferToBuffer(bufC, 0, readback, 0, M * N * 4);
device.queue.submit([enc.finish()]);
const error = await device.popErrorScope();
if (error) fail(`WebGPU validation: ${error.message.split("\n")[0]}`);
await readback.mapAsync(GPUMapMode.READ);
const got = [...new Float32Array(readback.getMappedRange())];
const bad = got.findIndex((v, i) => v !== expected[i]);
if (bad >= 0) {
  fail(`tile ${ct}->f32 ${M}x${N}x${K}: C[${bad}] = ${got[bad]}, expected ${expected[bad]}`);
}
console.log(`subgroup-matrix tile ${ct}->f32 ${M}x${N}x${K} (workgroup ${lanes}): exact`);

// Deno's own WebGPU in this process uses the private loader and lavapipe too.
const wgpu = await navigator.gpu?.requestAdapter();
console.log(`deno webgpu adapter: ${wgpu?.info.description || "(none)"}`);

const foreign = new Set<string>(), nss = new Set<string>();
for (const line of Deno.readTextFileSync("/proc/self/maps").split("\n")) {
  const path = line.trim().split(/\s+/)[5] ?? "";
  if (!/\.so(\.|$)/.test(path) || path.startsWith(`${privateDir}/`) || path === dawnNode) continue;
  // glibc's name-service plugins come from /etc/nsswitch.conf, for any glibc by design.
  if (/\/libnss_[^/]*$/.test(path)) nss.add(path);
  else foreign.add(path);
}
if (foreign.size > 0) fail(`libraries from outside ${privateDir}: ${[...foreign].join(", ")}`);
console.log(
  `every shared library is private (${privateDir})${
    nss.size > 0 ? `, but for the system's name-service plugins ${[...nss].join(", ")}` : ""
  }`,
);
Deno.exit(0); // Dawn's objects keep the process alive

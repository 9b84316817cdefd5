/**
 * Device ceilings for the roofline: DRAM read bandwidth at several buffer sizes, L2 read bandwidth
 * (a working set of a few MiB read many times in one dispatch), vec4<f32> and vec4<f16> FMA
 * throughput (8 independent chains per thread), the GPU time of an empty dispatch and of each
 * extra dispatch in a pass, and the working speed of the clock reference kernel. Everything is
 * timed with the same {@linkcode Timer} and measurement loop as the methods, at the working clock
 * (spin-up and lead of `clock.ts`), and stored per adapter as JSON.
 *
 * @module
 */

import { type Gpu, GpuError, type GpuInfo, isSoftwareAdapter } from "../kernels/gpu.ts";
import { median } from "../results/stats.ts";
import type { Calibration } from "../results/schema.ts";
import { ResultsError, validateCalibration } from "../results/document.ts";
import { writeFileAtomic } from "../results/files.ts";
import { calibrateReference, createClockGuard } from "./clock.ts";
import { type MeasureCase, measureInterleaved, type MeasureOptions } from "./measure.ts";
import type { Timer } from "./timer.ts";

const MiB = 1024 * 1024;

/** Default read sizes: 16 MiB to 1 GiB (cut at the device's binding limit). */
export const DEFAULT_READ_SIZES: readonly number[] = [16 * MiB, 64 * MiB, 256 * MiB, 1024 * MiB];

/** Default L2 working sets: 2 to 8 MiB, well inside a GPU's L2 (H100/H200: 50 MB). */
export const DEFAULT_L2_SIZES: readonly number[] = [2 * MiB, 4 * MiB, 8 * MiB];

/** Options of {@linkcode calibrate}. */
export interface CalibrateOptions {
  /** Buffer sizes (bytes) for read bandwidth; sizes above the binding limit are replaced by it. */
  readSizes?: readonly number[];
  /** Working sets (bytes) for the L2 read bandwidth (default 2, 4, 8 MiB; [] to skip). */
  l2Sizes?: readonly number[];
  /** GPU time one L2 read dispatch aims for, ns (default 1 ms). */
  l2TargetNs?: number;
  /** GPU time one FMA sample aims for, ns (default 2 ms). */
  fmaTargetNs?: number;
  /** Most workgroups of 256 threads the FMA kernel uses (default 4096). */
  fmaMaxWorkgroups?: number;
  /** Empty dispatches in the multi-dispatch pass (default 64). */
  dispatches?: number;
  /** Measurement settings of every group (warm-up, budget, samples, CI target). */
  measure?: Partial<MeasureOptions>;
  /** Called before each step, for progress output. */
  onStep?: (step: string) => void;
}

const DEFAULT_MEASURE: MeasureOptions = {
  warmupMs: 100,
  budgetMs: 500,
  minSamples: 10,
  maxSamples: 200,
  targetRelativeCi: 0.01,
};

/** A stable file-name-safe key of an adapter: vendor, architecture and description. */
export function adapterKey(
  info: Pick<GpuInfo, "vendor" | "architecture" | "description" | "device">,
): string {
  const raw = [info.vendor, info.architecture, info.description || info.device].join("-");
  const slug = raw.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  return slug || "unknown-adapter";
}

/** Default place of an adapter's calibration. */
export function calibrationPath(info: GpuInfo, dir = "out/calibration"): string {
  return `${dir.replace(/\/+$/, "")}/${adapterKey(info)}.json`;
}

/** Format tag of a stored calibration. */
export const CALIBRATION_FORMAT = "deft-bench/calibration";

/** A stored calibration file. */
export interface CalibrationDocument {
  format: typeof CALIBRATION_FORMAT;
  version: 1;
  adapter: GpuInfo;
  timingMode: Timer["mode"];
  calibration: Calibration;
}

/** Writes a calibration document atomically (refuses to overwrite unless `force`). */
export async function saveCalibration(
  path: string,
  doc: CalibrationDocument,
  { force = false } = {},
): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(doc, null, 2) + "\n", { force });
}

/**
 * Parses and validates a calibration document with the same rules as the calibration inside a
 * results document (every ceiling positive and finite). Throws `SyntaxError` naming `path` and the
 * field.
 */
export function parseCalibrationDocument(text: string, path: string): CalibrationDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ResultsError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  const d = doc as Partial<CalibrationDocument> | null;
  if (typeof d !== "object" || d === null || d.format !== CALIBRATION_FORMAT || d.version !== 1) {
    throw new ResultsError(`${path} is not a ${CALIBRATION_FORMAT} version 1 document`);
  }
  validateCalibration(d.calibration, path);
  return d as CalibrationDocument;
}

/**
 * Reads a calibration document; null when the file does not exist. Throws `SyntaxError` naming
 * the file for a malformed one, and when it belongs to another adapter than `info` (if given).
 */
export async function loadCalibration(
  path: string,
  info?: GpuInfo,
): Promise<CalibrationDocument | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const doc = parseCalibrationDocument(text, path);
  const c = doc.calibration;
  if (info && c.adapterKey !== adapterKey(info)) {
    throw new SyntaxError(
      `${path} was measured on ${c.adapterKey}, not on this adapter (${adapterKey(info)})`,
    );
  }
  return doc;
}

/**
 * The DRAM read kernel: 256-thread workgroups walk a buffer of zeros grid-stride, one vec4 per
 * thread and step (`tools/probe_layout.ts` times it beside other access patterns).
 */
export const READ_WGSL = `
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let stride = n.x * 256u;
  var acc = vec4<f32>(0.0);
  for (var i = g.x; i < arrayLength(&src); i += stride) { acc += src[i]; }
  let s = acc.x + acc.y + acc.z + acc.w;
  // The buffer holds zeros: the store never happens, but the loads cannot be removed.
  if (s == 1.2345e-7) { sink[g.x] = s; }
}`;

/** FLOPs per thread per loop iteration of the FMA kernel: 4 unrolled x 8 chains x 4 lanes x 2. */
export const FMA_FLOPS_PER_ITERATION = 4 * 8 * 4 * 2;

/** WGSL of the FMA kernel for a scalar type (`f32` or `f16`). */
export function fmaWgsl(t: "f32" | "f16"): string {
  const chains = Array.from({ length: 8 }, (_, i) => i);
  const step = chains.map((i) => `a${i} = fma(a${i}, m, c);`).join(" ");
  return `${t === "f16" ? "enable f16;\n" : ""}
struct Params { iterations: u32 }
@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let x = ${t}(f32(g.x & 255u) * 1e-3);
  ${chains.map((i) => `var a${i} = vec4<${t}>(x + ${t}(${i}.0 * 0.01));`).join("\n  ")}
  let m = vec4<${t}>(${t}(0.999));
  let c = vec4<${t}>(${t}(0.001));
  for (var i = 0u; i < params.iterations; i++) {
    ${step}
    ${step}
    ${step}
    ${step}
  }
  let s = ${chains.map((i) => `a${i}`).join(" + ")};
  sink[g.x] = f32(s.x + s.y + s.z + s.w);
}`;
}

const EMPTY_WGSL = `@compute @workgroup_size(1) fn main() {}`;

function opts(o: CalibrateOptions): MeasureOptions {
  return { ...DEFAULT_MEASURE, ...o.measure };
}

/** Read bandwidth (bytes/s) at each size, interleaved. */
export async function measureReadBandwidth(
  gpu: Gpu,
  timer: Timer,
  sizes: readonly number[],
  options: CalibrateOptions = {},
): Promise<{ bytes: number; bytesPerS: number }[]> {
  const limit = Math.min(gpu.limit("maxStorageBufferBindingSize"), gpu.limit("maxBufferSize"));
  const clean = [...new Set(sizes.map((s) => Math.floor(Math.min(s, limit) / 16) * 16))]
    .filter((s) => s >= 16)
    .sort((a, b) => a - b);
  const pipeline = await gpu.pipeline("calibrate read", READ_WGSL);
  const sink = gpu.buffer("calibrate read sink", 8192 * 256 * 4);
  const buffers: GPUBuffer[] = [];
  try {
    const cases = clean.map((bytes) => {
      const src = gpu.device.createBuffer({
        label: `calibrate read ${bytes}`,
        size: bytes,
        usage: GPUBufferUsage.STORAGE,
      });
      buffers.push(src);
      const bindGroup = gpu.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: src } }, {
          binding: 1,
          resource: { buffer: sink },
        }],
      });
      const workgroups = Math.min(8192, Math.ceil(bytes / 16 / 256));
      return {
        key: String(bytes),
        encode(pass: GPUComputePassEncoder) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(workgroups);
        },
      };
    });
    const ms = await gpu.scoped(
      "Measuring read bandwidth",
      () => measureInterleaved(timer, cases, opts(options)),
    );
    return ms.map((m) => ({
      bytes: Number(m.key),
      bytesPerS: Number(m.key) / (median(m.samplesNs) * 1e-9),
    }));
  } finally {
    for (const b of buffers) b.destroy();
    sink.destroy();
  }
}

/** Threads per workgroup of the L2 read kernel; a tile is one vec4 per thread (4 KiB). */
const L2_THREADS = 256;
/** Most workgroups of the L2 read kernel (about one wave of a large GPU). */
const L2_MAX_WORKGROUPS = 1024;

/**
 * The L2 read kernel. The buffer is `tiles` tiles of 4 KiB and the grid has `tiles / per`
 * workgroups; in round r, workgroup w reads tiles w + j * grid + r (mod tiles), j < per, each
 * thread one vec4 of a tile (coalesced). Every round reads the whole buffer once, and a workgroup
 * moves to the tile of its neighbour each round, so it never re-reads what its own SM's L1 holds.
 * Four rounds per iteration give four independent loads in flight per thread.
 */
export const L2_READ_WGSL = `
struct Params { rounds: u32, per: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(0) @binding(2) var<storage, read> params: Params;
@compute @workgroup_size(${L2_THREADS})
fn main(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wg: vec3u,
        @builtin(num_workgroups) n: vec3u) {
  let tiles = arrayLength(&src) / ${L2_THREADS}u;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  var shift = 0u;
  for (var r = 0u; r < params.rounds; r += 4u) {
    for (var j = 0u; j < params.per; j++) {
      var t = wg.x + j * n.x + shift;
      t = select(t, t - tiles, t >= tiles);
      let t1 = select(t + 1u, t + 1u - tiles, t + 1u >= tiles);
      let t2 = select(t + 2u, t + 2u - tiles, t + 2u >= tiles);
      let t3 = select(t + 3u, t + 3u - tiles, t + 3u >= tiles);
      a0 += src[t * ${L2_THREADS}u + l];
      a1 += src[t1 * ${L2_THREADS}u + l];
      a2 += src[t2 * ${L2_THREADS}u + l];
      a3 += src[t3 * ${L2_THREADS}u + l];
    }
    shift += 4u;
    shift = select(shift, shift - tiles, shift >= tiles);
  }
  let v = a0 + a1 + a2 + a3;
  let s = v.x + v.y + v.z + v.w;
  // The buffer holds zeros: the store never happens, but the loads cannot be removed.
  if (s == 1.2345e-7) { sink[wg.x * ${L2_THREADS}u + l] = s; }
}`;

/**
 * L2 read bandwidth (bytes/s) at each working set: one dispatch reads the set `rounds` times
 * (rounds sized for `l2TargetNs` per dispatch), interleaved. Sizes are rounded to whole tiles per
 * workgroup; sets of less than 64 tiles are skipped.
 */
export async function measureL2Bandwidth(
  gpu: Gpu,
  timer: Timer,
  sizes: readonly number[],
  options: CalibrateOptions = {},
): Promise<{ bytes: number; bytesPerS: number }[]> {
  const limit = Math.min(gpu.limit("maxStorageBufferBindingSize"), gpu.limit("maxBufferSize"));
  const tile = L2_THREADS * 16;
  const shapes = [
    ...new Map(
      sizes.map((s) => {
        const tiles = Math.floor(Math.min(s, limit) / tile);
        const grid = Math.min(L2_MAX_WORKGROUPS, tiles);
        const per = Math.max(1, Math.floor(tiles / Math.max(1, grid)));
        const used = grid * per;
        return [used, { tiles: used, grid, per }] as const;
      }).filter(([tiles]) => tiles >= 64),
    ).values(),
  ].sort((a, b) => a.tiles - b.tiles);
  if (shapes.length === 0) return [];
  const target = options.l2TargetNs ?? 1e6;
  const pipeline = await gpu.pipeline("calibrate l2 read", L2_READ_WGSL);
  const sink = gpu.buffer("calibrate l2 sink", L2_MAX_WORKGROUPS * L2_THREADS * 4);
  const owned: GPUBuffer[] = [];
  try {
    const cases: (MeasureCase & { rounds: number; bytes: number })[] = [];
    for (const s of shapes) {
      const src = gpu.device.createBuffer({
        label: `calibrate l2 read ${s.tiles * tile}`,
        size: s.tiles * tile,
        usage: GPUBufferUsage.STORAGE,
      });
      const params = gpu.buffer("calibrate l2 params", new Uint32Array([4, s.per]));
      owned.push(src, params);
      const bindGroup = gpu.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: src } },
          { binding: 1, resource: { buffer: sink } },
          { binding: 2, resource: { buffer: params } },
        ],
      });
      const encode = (pass: GPUComputePassEncoder) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(s.grid);
      };
      // Size the rounds to the target (whole multiples of 4): probe with 4, scale, and once more
      // (the first probe is mostly launch cost).
      let rounds = 4;
      for (let step = 0; step < 2; step++) {
        gpu.device.queue.writeBuffer(params, 0, new Uint32Array([rounds, s.per]));
        const t = (await timer.time([{ label: "l2 probe", encode }, { label: "l2 probe", encode }]))
          .slice(1).filter((v): v is number => v !== null && v > 0);
        rounds = t.length > 0
          ? Math.max(4, Math.min(1 << 16, Math.round((rounds * target) / t[0]! / 4) * 4))
          : 64;
      }
      gpu.device.queue.writeBuffer(params, 0, new Uint32Array([rounds, s.per]));
      cases.push({ key: String(s.tiles * tile), rounds, bytes: s.tiles * tile, encode });
    }
    const ms = await gpu.scoped(
      "Measuring L2 read bandwidth",
      () => measureInterleaved(timer, cases, opts(options)),
    );
    return ms.map((m, i) => ({
      bytes: cases[i]!.bytes,
      bytesPerS: (cases[i]!.bytes * cases[i]!.rounds) / (median(m.samplesNs) * 1e-9),
    }));
  } finally {
    for (const b of owned) b.destroy();
    sink.destroy();
  }
}

/** FMA throughput (FLOP/s, an FMA counts 2) of vec4<f32> or vec4<f16>. */
export async function measureFma(
  gpu: Gpu,
  timer: Timer,
  type: "f32" | "f16",
  options: CalibrateOptions = {},
): Promise<number> {
  const maxWorkgroups = options.fmaMaxWorkgroups ?? 4096;
  const pipeline = await gpu.pipeline(`calibrate fma ${type}`, fmaWgsl(type));
  const params = gpu.buffer("calibrate fma params", new Uint32Array([16]));
  const sink = gpu.buffer("calibrate fma sink", maxWorkgroups * 256 * 4);
  try {
    const r = await measureLoop(gpu, timer, {
      label: `${type} FMA throughput`,
      pipeline,
      buffers: [params, sink],
      params,
      workgroups: Math.min(64, maxWorkgroups),
      maxWorkgroups,
    }, options);
    return (r.workgroups * 256 * r.iterations * FMA_FLOPS_PER_ITERATION) / (r.medianNs * 1e-9);
  } finally {
    params.destroy();
    sink.destroy();
  }
}

/** A throughput kernel whose loop count is `params[0]`, dispatched over a grid of workgroups. */
interface LoopKernel {
  label: string;
  pipeline: GPUComputePipeline;
  /** Bound at bindings 0, 1, ... */
  buffers: GPUBuffer[];
  /** The buffer holding the loop count. */
  params: GPUBuffer;
  /** First grid size, and the largest. */
  workgroups: number;
  maxWorkgroups: number;
}

/**
 * Sizes the grid of `k` (to fill a large GPU), then its loop count, to about `fmaTargetNs` per
 * sample, and measures it: the grid, loop count and median sample it ended with.
 */
async function measureLoop(
  gpu: Gpu,
  timer: Timer,
  k: LoopKernel,
  options: CalibrateOptions,
): Promise<{ workgroups: number; iterations: number; medianNs: number }> {
  const targetNs = options.fmaTargetNs ?? 2e6;
  const bindGroup = gpu.device.createBindGroup({
    layout: k.pipeline.getBindGroupLayout(0),
    entries: k.buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  let workgroups = Math.min(k.workgroups, k.maxWorkgroups);
  let iterations = 16;
  const pass = () => ({
    label: k.label,
    encode(p: GPUComputePassEncoder) {
      p.setPipeline(k.pipeline);
      p.setBindGroup(0, bindGroup);
      p.dispatchWorkgroups(workgroups);
    },
  });
  const probe = async (): Promise<number> => {
    gpu.device.queue.writeBuffer(k.params, 0, new Uint32Array([iterations]));
    const t = await timer.time([pass(), pass(), pass()]); // the first pays any shader JIT
    const ok = t.slice(1).filter((x): x is number => x !== null && x > 0);
    return ok.length > 0 ? Math.min(...ok) : 0;
  };
  let t = await probe();
  while (workgroups < k.maxWorkgroups && t < targetNs / 4) {
    workgroups = Math.min(k.maxWorkgroups, workgroups * 4);
    t = await probe();
  }
  const scale = t > 0 ? targetNs / t : 64;
  iterations = Math.max(4, Math.min(1 << 16, Math.round(iterations * scale)));
  gpu.device.queue.writeBuffer(k.params, 0, new Uint32Array([iterations]));
  const [m] = await gpu.scoped(
    `Measuring ${k.label}`,
    () => measureInterleaved(timer, [{ key: k.label, encode: pass().encode }], opts(options)),
  );
  return { workgroups, iterations, medianNs: median(m!.samplesNs) };
}

/**
 * The WGSL of the subgroup-matrix peak: each subgroup keeps 2 left and 4 right f16 fragments and 8
 * f32 accumulators in registers and runs `params[0]` rounds of 8 multiply-accumulates (the probe's
 * register-resident loop); the accumulators are stored so that nothing is optimised away.
 */
export function matrixPeakWgsl(gpu: Gpu): string {
  const c = gpu.matrixConfig();
  if (!c) throw new GpuError("The device has no f16 subgroup-matrix configuration");
  const { M, N, K } = c;
  const L = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const R = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const C = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const acc = Array.from({ length: 8 }, (_, i) => `c${i}`);
  return `${gpu.wgslEnables({ f16: true, subgroupMatrix: true })}
@group(0) @binding(0) var<storage, read> params: array<u32>;
@group(0) @binding(1) var<storage, read> A: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(${gpu.info.subgroupMinSize})
fn main(@builtin(workgroup_id) wg: vec3u) {
  let a0 = subgroupMatrixLoad<${L}, row_major>(&A, 0u, ${K}u);
  let a1 = subgroupMatrixLoad<${L}, row_major>(&A, ${M * K}u, ${K}u);
${
    [0, 1, 2, 3].map((j) =>
      `  let b${j} = subgroupMatrixLoad<${R}, row_major>(&A, ${j * K * N}u, ${N}u);`
    )
      .join("\n")
  }
${acc.map((x) => `  var ${x} = ${C}();`).join("\n")}
  let n = params[0];
  for (var i = 0u; i < n; i++) {
${
    acc.map((x, i) => `    ${x} = subgroupMatrixMultiplyAccumulate(a${i >> 2}, b${i & 3}, ${x});`)
      .join("\n")
  }
  }
${
    acc.map((x, i) =>
      `  subgroupMatrixStore<row_major>(&C, wg.x * ${8 * M * N}u + ${i * M * N}u, ${x}, ${N}u);`
    ).join("\n")
  }
}`;
}

/**
 * Subgroup-matrix f16 x f16 -> f32 throughput (FLOP/s) with operands in registers: the ceiling of
 * the matrix kernels, as `measureFma` is the FMA kernels'. Null without a matrix configuration.
 */
export async function measureMatrixPeak(
  gpu: Gpu,
  timer: Timer,
  options: CalibrateOptions = {},
): Promise<number | null> {
  const c = gpu.matrixConfig();
  if (!c || gpu.info.subgroupMinSize <= 0) return null;
  const maxWorkgroups = 8 * (options.fmaMaxWorkgroups ?? 4096);
  const pipeline = await gpu.pipeline("calibrate matrix peak", matrixPeakWgsl(gpu));
  const params = gpu.buffer("calibrate matrix params", new Uint32Array([16]));
  const a = gpu.buffer(
    "calibrate matrix A",
    new Uint16Array(8 * c.M * c.K + 4 * c.K * c.N).fill(0x2c00),
  );
  const sink = gpu.buffer("calibrate matrix sink", maxWorkgroups * 8 * c.M * c.N * 4);
  try {
    const r = await measureLoop(gpu, timer, {
      label: "the subgroup-matrix peak",
      pipeline,
      buffers: [params, a, sink],
      params,
      workgroups: 256,
      maxWorkgroups,
    }, options);
    return (r.workgroups * r.iterations * 8 * 2 * c.M * c.N * c.K) / (r.medianNs * 1e-9);
  } finally {
    params.destroy();
    a.destroy();
    sink.destroy();
  }
}

/** GPU time of a pass with one empty dispatch, and of each further empty dispatch. */
export async function measureDispatch(
  gpu: Gpu,
  timer: Timer,
  options: CalibrateOptions = {},
): Promise<{ dispatchNs: number; extraDispatchNs: number }> {
  const n = options.dispatches ?? 64;
  const pipeline = await gpu.pipeline("calibrate empty", EMPTY_WGSL);
  const encode = (count: number) => (pass: GPUComputePassEncoder) => {
    pass.setPipeline(pipeline);
    for (let i = 0; i < count; i++) pass.dispatchWorkgroups(1);
  };
  const o = opts(options);
  const [one, many] = await gpu.scoped(
    "Measuring dispatch overhead",
    () =>
      measureInterleaved(timer, [{ key: "1", encode: encode(1) }, {
        key: String(n),
        encode: encode(n),
      }], { ...o, repetitions: timer.minSampleNs > 0 ? undefined : 1 }),
  );
  const t1 = median(one!.samplesNs);
  const tn = median(many!.samplesNs);
  return { dispatchNs: t1, extraDispatchNs: Math.max(0, (tn - t1) / (n - 1)) };
}

/**
 * Measures every ceiling of the device. The clock reference is calibrated first (after a spin-up
 * to the working clock); every later group of measurements spins up again and opens each batch
 * with the reference's lead, so no ceiling is taken at an idle clock.
 */
export async function calibrate(
  gpu: Gpu,
  timer: Timer,
  options: CalibrateOptions = {},
): Promise<Calibration> {
  const step = options.onStep ?? (() => {});
  step("clock reference");
  const reference = await calibrateReference(gpu, timer);
  const clock = await createClockGuard(gpu, timer, { calibrated: reference });
  try {
    const o: CalibrateOptions = { ...options, measure: { ...options.measure, clock } };
    step("read bandwidth");
    const readBandwidth = await measureReadBandwidth(
      gpu,
      timer,
      options.readSizes ?? DEFAULT_READ_SIZES,
      o,
    );
    step("L2 read bandwidth");
    const l2ReadBandwidth = await measureL2Bandwidth(
      gpu,
      timer,
      options.l2Sizes ?? DEFAULT_L2_SIZES,
      o,
    );
    step("f32 FMA throughput");
    const f32FlopsPerS = await measureFma(gpu, timer, "f32", o);
    let f16FlopsPerS: number | null = null;
    if (gpu.hasF16) {
      step("f16 FMA throughput");
      f16FlopsPerS = await measureFma(gpu, timer, "f16", o);
    }
    let matrixFlopsPerS: number | null = null;
    if (gpu.matrixConfig()) {
      step("subgroup-matrix peak");
      matrixFlopsPerS = await measureMatrixPeak(gpu, timer, o);
    }
    step("dispatch overhead");
    const { dispatchNs, extraDispatchNs } = await measureDispatch(gpu, timer, o);
    step("resident workgroups");
    const residentWorkgroups = await measureResidentWorkgroups(gpu);
    return {
      adapterKey: adapterKey(gpu.info),
      measuredAt: new Date().toISOString(),
      readBandwidth,
      peakReadBytesPerS: Math.max(...readBandwidth.map((r) => r.bytesPerS)),
      l2ReadBandwidth,
      l2ReadBytesPerS: l2ReadBandwidth.length > 0
        ? Math.max(...l2ReadBandwidth.map((r) => r.bytesPerS))
        : null,
      f32FlopsPerS,
      f16FlopsPerS,
      matrixFlopsPerS,
      dispatchNs,
      extraDispatchNs,
      reference,
      residentWorkgroups,
    };
  } finally {
    clock.destroy();
  }
}

/** Invocations of a workgroup of {@linkcode measureResidentWorkgroups}. */
const RESIDENT_THREADS = 64;

/** Workgroups {@linkcode measureResidentWorkgroups} dispatches: more than any GPU runs at once. */
const RESIDENT_WORKGROUPS = 8192;

/**
 * Each workgroup declares the device's whole workgroup storage, counts itself in a storage counter
 * while it runs and keeps the most ever live at once; it spins long enough (tens of microseconds)
 * that the first resident workgroups are still live when the last start.
 */
const RESIDENT_WGSL = (words: number, spin: number) => `
@group(0) @binding(0) var<storage, read_write> occ: array<atomic<u32>, 4>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
var<workgroup> pool: array<u32, ${words}>;

@compute @workgroup_size(${RESIDENT_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) { atomicMax(&occ[1], atomicAdd(&occ[0], 1u) + 1u); }
  for (var i = lid; i < ${words}u; i += ${RESIDENT_THREADS}u) { pool[i] = i ^ wg.x; }
  workgroupBarrier();
  var x = pool[(lid * 97u) % ${words}u];
  for (var i = 0u; i < ${spin}u; i++) { x = x * 1664525u + 1013904223u; }
  if (x == 0x12345678u) { sink[lid] = x; }
  workgroupBarrier();
  if (lid == 0u) { atomicSub(&occ[0], 1u); }
}
`;

/**
 * How many workgroups that each take the device's whole workgroup storage run at once: on an
 * H200 (Vulkan, Dawn or Deno) one per SM, 132, since the workgroups on an SM share that much
 * (docs/performance.md, occupancy runs 20-23). With it, a kernel's resident workgroups are this
 * times the storage divided by the kernel's (rounded down) where registers do not limit them
 * first; deft-flatten sizes its blocks to whole rounds of them (`multiprocessors`). Null on a
 * software adapter (more workgroups buy it nothing).
 */
export async function measureResidentWorkgroups(
  gpu: Gpu,
  /** Tests: run on a software adapter too, with fewer and shorter workgroups. */
  o: { workgroups?: number; spin?: number; software?: boolean } = {},
): Promise<number | null> {
  if (isSoftwareAdapter(gpu.info) && !o.software) return null;
  const storage = gpu.limit("maxComputeWorkgroupStorageSize");
  const pipeline = await gpu.pipeline(
    "calibrate resident workgroups",
    RESIDENT_WGSL(Math.floor(storage / 4), o.spin ?? 20000),
  );
  const occ = gpu.buffer("calibrate resident counter", 16);
  const sink = gpu.buffer("calibrate resident sink", RESIDENT_THREADS * 4);
  try {
    const bindGroup = gpu.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [occ, sink].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    let most = 0;
    for (let round = 0; round < 2; round++) { // the second at the clock the first woke
      const enc = gpu.device.createCommandEncoder({ label: "calibrate resident workgroups" });
      enc.clearBuffer(occ);
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(o.workgroups ?? RESIDENT_WORKGROUPS);
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
      most = Math.max(most, new Uint32Array(await gpu.read(occ))[1]!);
    }
    return most > 0 ? most : null;
  } finally {
    occ.destroy();
    sink.destroy();
  }
}

/** Settings of a quick calibration (used by `bench` when no stored one exists). */
export const QUICK_CALIBRATION: CalibrateOptions = {
  readSizes: [16 * MiB, 64 * MiB],
  l2Sizes: [4 * MiB],
  fmaTargetNs: 1e6,
  measure: { warmupMs: 30, budgetMs: 150, minSamples: 5, maxSamples: 50, targetRelativeCi: 0.02 },
};

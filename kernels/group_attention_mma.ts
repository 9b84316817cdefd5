/**
 * Group attention on matrix units (tensor cores): the stage-1 kernel of DeFT (paper, section 3.5)
 * with both products, S = Q K^T and O += P V, as f16 x f16 -> f32 subgroup-matrix
 * multiply-accumulates (WGSL `chromium_experimental_subgroup_matrix`, Dawn only). It runs the same
 * groups, work items, metadata and reduction as the FMA kernel of `group_attention.ts`; only the
 * math inside a work item differs.
 *
 * One workgroup per (group, row tile, KV head), as in the FMA kernel. The tile's R rows are cut into
 * row blocks of M rows (M x N x K is the adapter's configuration: 16 x 16 x 16 on NVIDIA, 8 x 8 x 8
 * on Mesa's lavapipe), one subgroup per row block, so R = M x subgroups and the workgroup has
 * `subgroups x subgroup size` invocations. Each subgroup keeps its rows' Q (D / K left fragments)
 * and output (D / N result fragments) in registers for the whole KV loop; a subgroup whose rows are
 * all padding skips the math. Per sub-tile of KT keys:
 *
 * 1. slots and mask words of the KT keys, then K and V rows, are staged in workgroup memory (f16,
 *    rows padded to D + 8 halves);
 * 2. S = Q K^T: KT / N result fragments per subgroup, K^T loaded column-major from the K rows;
 *    S goes to workgroup memory (f32);
 * 3. the invocations of each row (SG / M lanes) scale, mask and reduce their row with subgroup
 *    shuffles, and write P = exp(S - m) as f16 over the staged K;
 * 4. O += P V: KT / K left fragments of P against V row-major.
 *
 * Softmax rescaling is lazy (as in FlashAttention 4): a row's reference maximum m only moves when
 * a sub-tile's maximum exceeds it by more than {@linkcode RESCALE_THRESHOLD} (so P <= e^8, far from
 * f16's range); only then does the workgroup take the slow path that passes the output fragments
 * through workgroup memory to scale their rows. After the first sub-tile this almost never
 * happens, so the output stays in registers. The result is exact softmax attention: P, l and O all
 * use the same reference maximum.
 *
 * The WGSL is generated here (a typed template) because the fragment code is unrolled into named
 * values, which keeps the fragments in registers on every compiler.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { Gpu, SubgroupMatrixConfig } from "./gpu.ts";
import { GpuError } from "./gpu.ts";
import type { KernelCaps } from "./method.ts";

/** A row's reference maximum moves only when a sub-tile's maximum exceeds it by this (natural log). */
export const RESCALE_THRESHOLD = 8;

/** Tile choices of the matrix kernel. */
export interface MmaKernelOptions {
  /** Rows per tile: a multiple of the configuration's M (one subgroup per M rows). */
  rows: number;
  /** Keys per sub-tile: a multiple of the configuration's N and K. */
  keys: number;
  /**
   * Subgroups per row block, each holding Q and O for 1/split of the head dim (1, 2 or 4): fewer
   * registers per invocation and more, shorter warps per sub-tile (docs/performance.md, change 8).
   */
  split?: number;
  /**
   * Rounds of the output pass: each stages 1/outRounds of the output tile in workgroup memory. A
   * divisor of the head dim's fragments per subgroup. Default (or 0): the fewest rounds whose staging fits
   * in the score tiles' memory, so that the output pass adds no workgroup memory (on an H200, one
   * round with 14 KiB more per workgroup made the kernel 2.7x slower: docs/performance.md, change
   * 9).
   */
  outRounds?: number;
  /**
   * 1 (default): the rows are a maximum, halved by a plan whose blocks would leave most of a tile's
   * rows empty (`rowsForGroups` in group_attention.ts); 0: kept as given (tests and tools that time
   * one tile).
   */
  fit?: number;
  /**
   * 1: the mask handling before docs/performance.md change 12, for `tools/perf_runtimes.ts` only
   * (an A/B in one process): every flattened block keeps its mask, and the kernel reads a
   * sub-tile's mask words inside that sub-tile instead of one sub-tile ahead.
   */
  legacyMask?: number;
  /**
   * Bytes of workgroup memory added and never used, for `tools/profile_mma.ts` only: what the
   * kernel's speed does as its memory grows shows whether memory limits the workgroups resident per
   * SM (docs/performance.md, change 10). Never set by a method's variants.
   */
  padBytes?: number;
  /**
   * 1: every workgroup counts itself in a storage counter while it runs (binding 6, see
   * {@linkcode PreparedMethod.counters}), and the counter keeps the most workgroups ever live at
   * once: the residency the driver gives the kernel, which Dawn does not report
   * (`tools/occupancy_mma.ts`). Profiling only; never set by a method's variants.
   */
  occupancy?: number;
  /**
   * Parts of the kernel knocked out, for `tools/profile_mma.ts` only: the kernel then computes a
   * wrong result, and the time it saves is what the part costs (a profile by subtraction, since no
   * profiler reaches the GPU through Dawn). A `+`-separated list of {@linkcode MmaAblation}s; never
   * set by a method's variants.
   */
  ablate?: string;
}

/**
 * A part of the matrix kernel that {@linkcode MmaKernelOptions.ablate} can knock out:
 * - `kv-load`: the K and V loads from the KV pool (registers get values made from the thread id);
 * - `stage`: the stores of K and V into workgroup memory;
 * - `qk`: S = Q K^T (its fragment loads, MMAs and the store of S);
 * - `qk-loads`: all but the first K^T fragment load of a score fragment (the MMAs reuse it);
 * - `softmax`: the scaling, masking, maximum, exponentials and the store of P;
 * - `pv`: O += P V (its fragment loads and MMAs);
 * - `pv-loads`: all but the first V fragment load of a sub-tile (the MMAs reuse it);
 * - `loop`: the whole sub-tile loop (no sub-tile runs: what is left is the fixed cost of a
 *   workgroup, its Q staging and output pass, and the launch);
 * - `output`: the output pass (the partials are not written).
 */
export type MmaAblation =
  | "kv-load"
  | "stage"
  | "qk"
  | "qk-loads"
  | "softmax"
  | "pv"
  | "pv-loads"
  | "loop"
  | "output";

/**
 * The parts named by a `+`-separated list, each one of `known`, or a `RangeError` naming an unknown
 * one (`family` names the kernel in the message).
 */
export function parseParts<T extends string>(
  list: string,
  known: readonly T[],
  family: string,
): T[] {
  const parts = list.split("+").filter((x) => x !== "");
  for (const x of parts) {
    if (!(known as readonly string[]).includes(x)) {
      throw new RangeError(
        `Unknown ${family} ablation ${JSON.stringify(x)} (known: ${known.join(", ")})`,
      );
    }
  }
  return parts as T[];
}

/** The matrix kernel's parts named by a `+`-separated list (see {@linkcode parseParts}). */
export function parseAblation(list: string): MmaAblation[] {
  return parseParts(list, MMA_ABLATIONS, "mma");
}

/** Every {@linkcode MmaAblation}. */
export const MMA_ABLATIONS: readonly MmaAblation[] = [
  "kv-load",
  "stage",
  "qk",
  "qk-loads",
  "softmax",
  "pv",
  "pv-loads",
  "loop",
  "output",
];

/**
 * Default tile: 32 rows (2 subgroups of 32 on NVIDIA), 16-key sub-tiles. On an H200, 32 rows were
 * as fast as 64 on the paper's Table 14 tree and up to 1.8x faster where blocks serve few queries
 * (results/data/nvidia-h200-dawn/perf_runtimes-3-mma-pipelined.json.gz), and `tune` found 16-key
 * sub-tiles 1.4x faster than 32 (batch-tune-calibrate.log there).
 */
export const DEFAULT_MMA_KERNEL: Readonly<MmaKernelOptions> = { rows: 32, keys: 16 };

/** The matrix kernel a plan is made for. */
export interface MmaKernel {
  /** f16 x f16 -> f32 configuration. */
  readonly config: SubgroupMatrixConfig;
  /** Subgroup size the kernel is compiled for. */
  readonly subgroupSize: number;
  /** Rows per tile. */
  readonly rows: number;
  /** Keys per sub-tile. */
  readonly keys: number;
  /** Invocations per workgroup. */
  readonly threads: number;
  /** Subgroups per row block (head dim split among them). */
  readonly split: number;
  /**
   * Rounds of the output pass (and of the rare rescale): each stages 1/outRounds of the output
   * fragments in workgroup memory at once (see {@linkcode MmaKernelOptions.outRounds}).
   */
  readonly outRounds: number;
  /** The rounds the tile has by default (the name shows `outRounds` only where it differs). */
  readonly defaultOutRounds: number;
  /** Parts knocked out (profiling only, see {@linkcode MmaKernelOptions.ablate}). */
  readonly ablate?: readonly MmaAblation[];
  /** Unused workgroup memory added (profiling only, see {@linkcode MmaKernelOptions.padBytes}). */
  readonly padBytes?: number;
  /** Live workgroups counted (profiling only, see {@linkcode MmaKernelOptions.occupancy}). */
  readonly occupancy?: boolean;
  /** The mask handling before change 12 (profiling only, {@linkcode MmaKernelOptions.legacyMask}). */
  readonly legacyMask?: boolean;
}

/** Halves of padding after each staged Q/K/V row (keeps rows 16-byte aligned, spreads banks). */
const ROW_PAD = 8;

/** A name for results and tools: `mma-16x16x16-r64-k32`. */
export function mmaVariantName(k: MmaKernel): string {
  const { M, N, K } = k.config;
  const knocked = k.ablate?.length ? `-without-${k.ablate.join("+")}` : "";
  const split = k.split > 1 ? `-s${k.split}` : "";
  const rounds = k.outRounds !== k.defaultOutRounds ? `-o${k.outRounds}` : "";
  const pad = k.padBytes ? `-pad${k.padBytes}` : "";
  const legacy = k.legacyMask ? "-legacymask" : "";
  const occ = k.occupancy ? "-occ" : "";
  return `mma-${M}x${N}x${K}-r${k.rows}-k${k.keys}${split}${rounds}${pad}${legacy}${occ}${knocked}`;
}

/**
 * The matrix kernel for `caps` and `options`, or a `RangeError` naming what does not fit (no
 * matrix configuration, f32 storage, a tile that is not a multiple of the fragments, workgroup
 * memory).
 */
export function mmaKernel(
  shape: ModelShape,
  dtype: Dtype,
  caps: KernelCaps | undefined,
  options: Partial<MmaKernelOptions> = {},
): MmaKernel {
  const o = { ...DEFAULT_MMA_KERNEL, ...options };
  const config = caps?.matrix;
  if (!caps || !config) {
    throw new RangeError(
      "Kernel mma needs a device with f16 subgroup matrices (--runtime dawn on a GPU with matrix units, or Mesa lavapipe >= 25.2)",
    );
  }
  if (dtype !== "f16") throw new RangeError(`Kernel mma needs f16 storage, got ${dtype}`);
  const { M, N, K } = config;
  const sg = caps.subgroupSize;
  if (sg <= 0 || sg % M !== 0) {
    throw new RangeError(
      `Kernel mma needs a fixed subgroup size that is a multiple of M = ${M}, got ${
        sg || "a varying size"
      }`,
    );
  }
  const d = shape.headDim;
  if (d % K !== 0 || d % N !== 0) {
    throw new RangeError(
      `Kernel mma needs a head dim that is a multiple of ${N} and ${K}, got ${d}`,
    );
  }
  if (!Number.isSafeInteger(o.rows) || o.rows < M || o.rows % M !== 0) {
    throw new RangeError(`Kernel mma rows must be a positive multiple of M = ${M}, got ${o.rows}`);
  }
  const step = Math.max(N, K);
  if (!Number.isSafeInteger(o.keys) || o.keys < step || o.keys % step !== 0) {
    throw new RangeError(`Kernel mma keys must be a positive multiple of ${step}, got ${o.keys}`);
  }
  const split = o.split ?? 1;
  if (![1, 2, 4].includes(split) || (d / K) % split !== 0 || (d / N) % split !== 0) {
    throw new RangeError(
      `Kernel mma split must be 1, 2 or 4 and divide the head dim's ${
        d / N
      } fragments, got ${o.split}`,
    );
  }
  const lanes = (sg * split) / M; // invocations per row in the softmax
  if (o.keys % lanes !== 0) {
    throw new RangeError(
      `Kernel mma with subgroup size ${sg}, M = ${M} and split ${split} needs keys divisible among ${lanes} lanes per row`,
    );
  }
  const threads = (o.rows / M) * sg * split;
  if ((o.rows * (d / 4)) % threads !== 0 || (o.keys * (d / 4)) % threads !== 0) {
    throw new RangeError(
      `Kernel mma with ${o.rows} rows, ${o.keys} keys and split ${split}: Q or K rows do not divide among ${threads} invocations`,
    );
  }
  // The default output rounds: the fewest whose staging ([R][D / rounds + 4] floats) fits in the
  // score tiles' memory.
  const dn = d / N / split;
  let defaultOutRounds = dn;
  for (let r = 1; r < dn; r *= 2) {
    if (dn % r === 0 && d / r + 4 <= split * (o.keys + 4)) {
      defaultOutRounds = r;
      break;
    }
  }
  const outRounds = o.outRounds || defaultOutRounds;
  if (!Number.isSafeInteger(outRounds) || outRounds < 1 || dn % outRounds !== 0) {
    throw new RangeError(
      `Kernel mma outRounds must divide the ${dn} output fragments of a subgroup, got ${o.outRounds}`,
    );
  }
  const pad = o.padBytes ?? 0;
  if (!Number.isSafeInteger(pad) || pad < 0 || pad % 16 !== 0) {
    throw new RangeError(`Kernel mma padBytes must be a multiple of 16 >= 0, got ${o.padBytes}`);
  }
  const k: MmaKernel = {
    config,
    subgroupSize: sg,
    rows: o.rows,
    keys: o.keys,
    threads,
    split,
    outRounds,
    defaultOutRounds,
    ...(o.ablate ? { ablate: parseAblation(o.ablate) } : {}),
    ...(o.padBytes ? { padBytes: o.padBytes } : {}),
    ...(o.legacyMask === 1 ? { legacyMask: true } : {}),
    ...(o.occupancy === 1 ? { occupancy: true } : {}),
  };
  const bytes = mmaWorkgroupBytes(shape, k, 2);
  if (bytes > caps.workgroupStorage) {
    throw new RangeError(
      `Kernel mma with ${o.rows} rows and ${o.keys} keys needs ${bytes} bytes of workgroup memory, more than the device's ${caps.workgroupStorage}`,
    );
  }
  return k;
}

/** Halves of the f16 workgroup array: max(Q staging, K + V (+ P when it does not fit over K)). */
function halfArray(
  shape: ModelShape,
  k: MmaKernel,
): { size: number; pOffset: number; qRows: number } {
  const ds = shape.headDim + ROW_PAD;
  const ps = k.keys + ROW_PAD;
  const kv = 2 * k.keys * ds;
  const pOverK = k.rows * ps <= k.keys * ds;
  const loop = pOverK ? kv : kv + k.rows * ps;
  // Q is staged in rounds of qRows rows, as many as fit in the loop's staging (whole row blocks,
  // whole vec4 per invocation), so that Q does not set the workgroup memory (fewer workgroups per
  // SM: docs/performance.md, change 10).
  let qRows = k.rows;
  if (k.rows * ds > loop) {
    for (let r = k.rows - k.config.M; r >= k.config.M; r -= k.config.M) {
      if (k.rows % r === 0 && r * ds <= loop && (r * (shape.headDim / 4)) % k.threads === 0) {
        qRows = r;
        break;
      }
    }
  }
  return { size: Math.max(qRows * ds, loop), pOffset: pOverK ? 0 : kv, qRows };
}

/** Floats of the f32 workgroup array: max(S tiles, one output round's staging). */
function floatArray(shape: ModelShape, k: MmaKernel): number {
  return Math.max(k.split * k.rows * (k.keys + 4), k.rows * outStride(shape, k));
}

/** Floats per row of an output round's staging (its columns and 4 of padding). */
function outStride(shape: ModelShape, k: MmaKernel): number {
  return shape.headDim / k.outRounds + 4;
}

/** Workgroup memory of the kernel in bytes (mirrors the declarations of {@linkcode mmaSource}). */
export function mmaWorkgroupBytes(shape: ModelShape, k: MmaKernel, maskWords: number): number {
  const { size } = halfArray(shape, k);
  return 2 * size + 4 * floatArray(shape, k) + 4 * k.keys +
    4 * Math.max(1, maskWords) * k.keys + 4 * k.rows + 4 * k.rows + 16 + (k.padBytes ?? 0);
}

/** Everything {@linkcode mmaSource} needs. */
export interface MmaSourceOptions {
  shape: ModelShape;
  kernel: MmaKernel;
  /** Mask words one row tile can span. */
  maskWords: number;
  /** `enable` directives of the runtime (see `Gpu.wgslEnables`). */
  enables: string;
}

/** Loop iterations one invocation runs for a group of `tokens` tokens (llvmpipe's loop limit). */
export function mmaLoopIterations(
  shape: ModelShape,
  k: MmaKernel,
  maskWords: number,
  tokens: number,
): number {
  const dv = shape.headDim / 4;
  const lanes = (k.subgroupSize * k.split) / k.config.M;
  const per = (n: number) => Math.ceil(n / k.threads) + 1;
  const tile = per(maskWords * k.keys) + per(k.keys * dv) + 2 * Math.log2(lanes) + 2;
  const rescale = k.outRounds * per((k.rows * shape.headDim) / k.outRounds);
  const output = k.outRounds * per((k.rows * dv) / k.outRounds);
  return 8 + per(k.rows * dv) + Math.ceil(tokens / k.keys) * (tile + rescale) + output;
}

/** The WGSL of the matrix kernel (bindings and metadata as the FMA kernel's). */
export function mmaSource(o: MmaSourceOptions): string {
  const { shape, kernel: k } = o;
  const { M, N, K } = k.config;
  const d = shape.headDim;
  const ds = d + ROW_PAD;
  const ps = k.keys + ROW_PAD;
  const ss = k.keys + 4;
  const { size: hSize, pOffset, qRows } = halfArray(shape, k);
  const qRounds = k.rows / qRows;
  const fSize = floatArray(shape, k);
  const ws = outStride(shape, k);
  const fr = d / N / k.split / k.outRounds; // output fragments per subgroup and round
  // One mask word per invocation at most: read a sub-tile ahead into a register.
  const maskAhead = !k.legacyMask && Math.max(1, o.maskWords) * k.keys <= k.threads;
  const split = k.split;
  const lanes = (k.subgroupSize * split) / M;
  if ((k.rows * (d / 4)) % k.threads !== 0 || (k.keys * (d / 4)) % k.threads !== 0) {
    throw new Error(
      `mma kernel ${mmaVariantName(k)}: Q or K rows do not divide among the invocations`,
    );
  }
  const words = [fSize, k.keys, Math.max(1, o.maskWords) * k.keys, k.rows];
  if (hSize % 8 !== 0 || words.some((w) => w % 4 !== 0)) {
    throw new Error(
      `mma kernel ${mmaVariantName(k)}: a workgroup array is not a multiple of 16 bytes`,
    );
  }
  const left = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const right = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const result = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const dk = d / K / split; // Q fragments per subgroup (its part of the head dim)
  const dn = d / N / split; // output fragments per subgroup
  const kn = k.keys / N; // score fragments per sub-tile
  const kk = k.keys / K; // P fragments per sub-tile
  const lines = (n: number, f: (i: number) => string) =>
    Array.from({ length: n }, (_, i) => f(i)).join("\n");
  // Where output fragment f of a round goes in the round's staging, and its store for round j.
  const roundAt = (f: number) => `rb * M * WS + (hs * ${fr}u + ${f}u) * ${N}u`;
  const roundStore = (j: number, f: number) =>
    `subgroupMatrixStore<row_major>(&f_sh, ${roundAt(f)}, o${j * fr + f}, WS);`;
  const off = (part: MmaAblation) => k.ablate?.includes(part) ?? false;
  const nq = (qRows * (d / 4)) / k.threads; // Q vec4 per invocation and round
  const nkv = (k.keys * (d / 4)) / k.threads; // K (and V) vec4 per invocation and sub-tile
  // Four halves of `x` to h_sh from `at`.
  const stage4 = (at: string, x: string, pad = "  ") =>
    `${pad}{ let a = ${at}; h_sh[a] = ${x}.x; h_sh[a + 1u] = ${x}.y; h_sh[a + 2u] = ${x}.z; h_sh[a + 3u] = ${x}.w; }`;
  // Loads of the sub-tile whose slots are in slot buffer `b` into kr/vr.
  const loadKv = (b: string, pad = "  ") =>
    lines(nkv, (i) =>
      [
        `${pad}{`,
        `${pad}  let e = lid + ${i * k.threads}u;`,
        `${pad}  let s = slot_sh[(${b}) * KT + e / DV];`,
        `${pad}  let at = (u32(max(s, 0)) * KV_HEADS + kvh) * DV + e % DV;`,
        ...(off("kv-load")
          ? [
            `${pad}  kr${i} = kv_keep * f16(at & 7u);`,
            `${pad}  vr${i} = kv_keep * f16(at & 3u);`,
          ]
          : [
            `${pad}  kr${i} = select(vec4<f16>(), k_in[at], s >= 0);`,
            `${pad}  vr${i} = select(vec4<f16>(), v_in[at], s >= 0);`,
          ]),
        `${pad}}`,
      ].join("\n"));

  return `${o.enables}enable chromium_disable_uniformity_analysis;
// Generated by kernels/group_attention_mma.ts (see there): ${mmaVariantName(k)}, head dim ${d},
// ${shape.qHeads} q-heads / ${shape.kvHeads} KV heads.

const D: u32 = ${d}u;
const DV: u32 = ${d / 4}u;
const Q_HEADS: u32 = ${shape.qHeads}u;
const KV_HEADS: u32 = ${shape.kvHeads}u;
const GROUP: u32 = ${shape.qHeads / shape.kvHeads}u;
const M: u32 = ${M}u;
const SG: u32 = ${k.subgroupSize}u;
const WG: u32 = ${k.threads}u;
const R: u32 = ${k.rows}u;
const KT: u32 = ${k.keys}u;
const DS: u32 = ${ds}u;   // halves per staged Q/K/V row
const PS: u32 = ${ps}u;   // halves per P row
const SS: u32 = ${ss}u;   // floats per S row
const WS: u32 = ${ws}u;   // floats per row of an output round's staging
const WC: u32 = ${d / k.outRounds}u;  // output columns per round
const P_OFF: u32 = ${pOffset}u;
const LANES: u32 = ${lanes}u;  // invocations per row in the softmax
const KPL: u32 = ${k.keys / lanes}u;  // keys per invocation
const SPLIT: u32 = ${split}u;  // subgroups per row block, each with 1/SPLIT of the head dim
const MAXW: u32 = ${o.maskWords}u;
const SCALE: f32 = ${1 / Math.sqrt(d)};
const THRESHOLD: f32 = ${RESCALE_THRESHOLD}.0;
const NO_ROW: u32 = 0xffffffffu;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> q_in: array<vec4<f16>>;   // [query][qHead][d]
@group(0) @binding(1) var<storage, read> k_in: array<vec4<f16>>;   // [slot][kvHead][d]
@group(0) @binding(2) var<storage, read> v_in: array<vec4<f16>>;   // [slot][kvHead][d]
@group(0) @binding(3) var<storage, read> md: array<u32>;
@group(0) @binding(4) var<storage, read_write> partial_o: array<vec4<f32>>; // [partial][qHead][d]
@group(0) @binding(5) var<storage, read_write> partial_lse: array<f32>;     // [partial][qHead]
${
    k.occupancy
      ? `// [0]: workgroups live now, [1]: the most live at once (profiling: occupancy).
@group(0) @binding(6) var<storage, read_write> occ: array<atomic<u32>, 4>;
`
      : ""
  }
// Q staging [R][DS] before the loop; then K [KT][DS] at 0, V [KT][DS] at KT * DS, and P [R][PS]
// at P_OFF (over K once the scores are done, when it fits).
// Every workgroup variable is a whole number of 16-byte units: NVIDIA's driver packs them in
// some order, and a fragment load from an f16 array that does not start on 16 bytes reads from
// the aligned address below it (seen on an H200: every fragment one element early, because of a
// lone u32 flag; tools/debug_mma.ts).
var<workgroup> h_sh: array<f16, ${hSize}>;
// S [SPLIT][R][SS] (one partial score tile per part of the head dim; the softmax sums them); the
// rare rescale and the output pass stage 1/OUT_ROUNDS of O at a time through it, [R][WS], a
// subgroup's fragments of the round side by side, the parts of the head dim one after another.
var<workgroup> f_sh: array<f32, ${fSize}>;
var<workgroup> slot_sh: array<i32, ${2 * k.keys}>;  // [2][KT]: double-buffered key slots
var<workgroup> mask_sh: array<u32, ${Math.max(1, o.maskWords) * k.keys}>;
var<workgroup> rowq_sh: array<u32, R>;
var<workgroup> alpha_sh: array<f32, R>;
var<workgroup> flag_sh: array<u32, 4>;  // [0]: some row's maximum moved in this sub-tile
${
    k.padBytes
      ? `var<workgroup> pad_sh: array<u32, ${k.padBytes / 4}>;  // unused (profiling: padBytes)
`
      : ""
  }
// Mask word e of sub-tile \`tile\` ([word][key] of the tile's MAXW words), 0 past the group or the
// words the tile spans.
fn mask_word(tile: u32, e: u32, tokens: u32, mask_off: u32, w0: u32, nw: u32) -> u32 {
  let w = e / KT;
  let t = tile * KT + e % KT;
  var x = 0u;
  if (w < nw && t < tokens) { x = md[mask_off + (w0 + w) * tokens + t]; }
  return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * nwg.x;
  let item_count = md[0];${
    k.padBytes
      ? `\n  if (item_count == 0xffffffffu) { pad_sh[lid % ${
        k.padBytes / 4
      }u] = flat; }  // keeps pad_sh`
      : ""
  }
  if (flat >= item_count * KV_HEADS) { return; }${
    k.occupancy ? "\n  if (lid == 0u) { atomicMax(&occ[1], atomicAdd(&occ[0], 1u) + 1u); }" : ""
  }
  // KV head major: the row tiles of one (group, KV head) run side by side and share the KV in L2.
  let kvh = flat / item_count;
  let ib = 8u + 8u * (flat % item_count);
  let row_start = md[ib];
  let tokens = md[ib + 1u];
  let slot_off = md[ib + 2u];
  let q_begin = md[ib + 3u];
  let q_count = md[ib + 4u];
  let mask_words = md[ib + 5u];
  let mask_off = md[ib + 6u];
  let rows = min(R, q_count * GROUP - row_start);
  let masked = mask_words != 0u;
  let w0 = row_start / GROUP / 32u;
  var nw = 0u;
  if (masked) { nw = min((row_start + rows - 1u) / GROUP / 32u, mask_words - 1u) - w0 + 1u; }

  let sgi = lid / SG;             // subgroup of this invocation
  let rb = sgi / SPLIT;           // its row block
  let hs = sgi % SPLIT;           // its part of the head dim
  let busy = rb * M < rows;       // the row block has a real row
  let row = lid / LANES;          // softmax row of this invocation
  let part = lid % LANES;
  let lq = (row_start + row) / GROUP;
  let mw = min(lq / 32u - w0, MAXW - 1u);
  let mb = lq % 32u;

  if (lid < R) {
    var base = NO_ROW;
    if (lid < rows) {
      let r = row_start + lid;
      let query = md[md[1] + q_begin + r / GROUP];
      base = (query * Q_HEADS + kvh * GROUP + r % GROUP) * DV;
    }
    rowq_sh[lid] = base;
  }
  workgroupBarrier();
${lines(dk, (i) => `  var q${i} = ${left}();`)}
${lines(dn, (i) => `  var o${i} = ${result}();`)}
  // Q rows in ${qRounds} round(s) of ${qRows}, each unrolled so that every load is in flight before the
  // first store; each row block loads its Q fragments in its round.
${
    lines(qRounds, (j) =>
      [
        lines(nq, (i) =>
          [
            `  let qe${j}_${i} = lid + ${i * k.threads}u;`,
            `  let qb${j}_${i} = rowq_sh[${j * qRows}u + qe${j}_${i} / DV];`,
            `  let qx${j}_${i} = select(vec4<f16>(), q_in[select(0u, qb${j}_${i}, qb${j}_${i} != NO_ROW) + qe${j}_${i} % DV], qb${j}_${i} != NO_ROW);`,
          ].join("\n")),
        lines(
          nq,
          (i) => stage4(`(qe${j}_${i} / DV) * DS + 4u * (qe${j}_${i} % DV)`, `qx${j}_${i}`),
        ),
        `  workgroupBarrier();`,
        `  if (busy && rb * M / ${qRows}u == ${j}u) {`,
        lines(
          dk,
          (i) =>
            `    q${i} = subgroupMatrixLoad<${left}, row_major>(&h_sh, (rb * M - ${
              j * qRows
            }u) * DS + (hs * ${dk}u + ${i}u) * ${K}u, DS);`,
        ),
        `  }`,
        ...(j + 1 < qRounds ? [`  workgroupBarrier();`] : []),
      ].join("\n"))
  }
  // The first sub-tile's key slots (-1 past the group) to workgroup memory, the second's to a
  // register.
  var next_slot = -1;
  if (lid < KT) {
    var s = -1;
    if (lid < tokens) { s = i32(md[slot_off + lid]); }
    slot_sh[lid] = s;
    if (KT + lid < tokens) { next_slot = i32(md[slot_off + KT + lid]); }
  }
  workgroupBarrier();
  // K and V of a sub-tile are loaded right before they are staged, not a sub-tile ahead: registers
  // held across the math cost the 64-row tile its third workgroup per SM, and the other resident
  // warps hide the load (docs/performance.md, change 16). Past the group, slot 0 is read and
  // replaced by zeros, so that no load waits behind a branch.
${
    lines(nkv, (i) =>
      `  var kr${i} = vec4<f16>();
  var vr${i} = vec4<f16>();`)
  }
${off("kv-load") ? "  let kv_keep = k_in[lid & 7u] + v_in[lid & 7u];  // keeps the bindings" : ""}
${
    maskAhead
      ? `  // The first sub-tile's mask word of this invocation (if any), staged at the loop's top.
  var next_mask = 0u;
  if (masked && lid < MAXW * KT) { next_mask = mask_word(0u, lid, tokens, mask_off, w0, nw); }`
      : ""
  }
  var m_run = NEG;  // reference maximum of this invocation's row
  var l_run = 0.0;  // sum of P of the row, at m_run
  let tiles = ${off("loop") ? "0u * tokens" : "(tokens + KT - 1u) / KT"};
  for (var kt = 0u; kt < tiles; kt++) {
    let buf = kt & 1u;
    // The previous sub-tile's P V is done: stage this sub-tile's K and V, the next sub-tile's
    // slots and this sub-tile's mask words.
    workgroupBarrier();
    // This sub-tile's K and V (its slots are in buffer buf since the last sub-tile's second
    // barrier, or since the one before the loop).
${loadKv("buf", "    ")}
${
    off("stage")
      // Keeps the loaded registers alive (one store per sub-tile) without staging them.
      ? `    if (lid == 0u) { h_sh[0] = ${
        Array.from({ length: nkv }, (_, i) => `kr${i}.x + vr${i}.y`).join(" + ")
      }; }`
      : lines(nkv, (i) =>
        [
          `    let se${i} = lid + ${i * k.threads}u;`,
          stage4(`(se${i} / DV) * DS + 4u * (se${i} % DV)`, `kr${i}`, "    "),
          stage4(`KT * DS + (se${i} / DV) * DS + 4u * (se${i} % DV)`, `vr${i}`, "    "),
        ].join("\n"))
  }
    // The next sub-tile's slots were read one sub-tile ago; read the one after next's now, so
    // that the metadata round trip is off the chain.
    if (lid < KT) {
      slot_sh[(buf ^ 1u) * KT + lid] = next_slot;
      let t = (kt + 2u) * KT + lid;
      var s = -1;
      if (t < tokens) { s = i32(md[slot_off + t]); }
      next_slot = s;
    }
${
    maskAhead
      ? `    // This sub-tile's mask words were read one sub-tile ago (off the chain, like the slots).
    if (masked && lid < MAXW * KT) {
      mask_sh[lid] = next_mask;
      next_mask = mask_word(kt + 1u, lid, tokens, mask_off, w0, nw);
    }`
      : `    if (masked) {
      for (var e = lid; e < MAXW * KT; e += WG) {
        mask_sh[e] = mask_word(kt, e, tokens, mask_off, w0, nw);
      }
    }`
  }
    if (lid == 0u) { flag_sh[0] = 0u; }
    workgroupBarrier();
    // S = Q K^T for this row block.
    if (busy) {
${
    off("qk") ? "" : lines(kn, (j) =>
      [
        `      var s${j} = ${result}();`,
        off("qk-loads")
          ? `      let kf${j} = subgroupMatrixLoad<${right}, col_major>(&h_sh, ${
            j * N * ds
          }u + hs * ${dk * K}u, DS);`
          : "",
        lines(
          dk,
          (i) =>
            `      s${j} = subgroupMatrixMultiplyAccumulate(q${i}, ${
              off("qk-loads")
                ? `kf${j}`
                : `subgroupMatrixLoad<${right}, col_major>(&h_sh, ${
                  j * N * ds
                }u + (hs * ${dk}u + ${i}u) * ${K}u, DS)`
            }, s${j});`,
        ),
        // Score tile of part hs of the head dim: [hs][R][SS].
        `      subgroupMatrixStore<row_major>(&f_sh, hs * R * SS + rb * M * SS + ${
          j * N
        }u, s${j}, SS);`,
      ].join("\n"))
  }
    }
    workgroupBarrier();
    // Softmax of row \`row\` over keys part * KPL ..: scale, mask, maximum, P = exp(S - m) in f16.
${
    off("softmax")
      ? `    var alpha = 1.0;
    l_run += f_sh[row * SS + part];
`
      // The row's KPL scores stay in registers (unrolled) from the read of S to the store of P.
      : `    var mx = NEG;
${
        lines(k.keys / lanes, (i) =>
          [
            `    let key${i} = part * KPL + ${i}u;`,
            `    var ok${i} = slot_sh[buf * KT + key${i}] >= 0;`,
            `    if (masked) { ok${i} = ok${i} && ((mask_sh[mw * KT + key${i}] >> mb) & 1u) != 0u; }`,
            `    let sv${i} = select(NEG, (${
              Array.from({ length: split }, (_, h) =>
                h === 0
                  ? `f_sh[row * SS + key${i}]`
                  : `f_sh[${h * k.rows * ss}u + row * SS + key${i}]`)
                .join(" + ")
            }) * SCALE, ok${i});`,
            `    mx = max(mx, sv${i});`,
          ].join("\n"))
      }
${lines(Math.log2(lanes), (i) => `    mx = max(mx, subgroupShuffleXor(mx, ${1 << i}u));`)}
    var alpha = 1.0;
    if (mx > NEG) {
      if (m_run <= NEG) {
        m_run = mx;  // the row's first visible keys: its O and l are still zero
      } else if (mx > m_run + THRESHOLD) {
        alpha = exp(m_run - mx);
        m_run = mx;
        flag_sh[0] = 1u;
      }
    }
    var ls = 0.0;
${
        lines(k.keys / lanes, (i) =>
          [
            `    { let p = f16(select(0.0, exp(sv${i} - m_run), sv${i} > NEG));`,
            `      h_sh[P_OFF + row * PS + key${i}] = p;`,
            `      ls += f32(p); }`,
          ].join("\n"))
      }
${lines(Math.log2(lanes), (i) => `    ls += subgroupShuffleXor(ls, ${1 << i}u);`)}
    l_run = l_run * alpha + ls;
`
  }
    if (part == 0u) { alpha_sh[row] = alpha; }
    // Rare: a row's maximum moved; scale the rows of O through workgroup memory.
    if (workgroupUniformLoad(&flag_sh[0]) != 0u) {
${
    lines(k.outRounds, (j) =>
      [
        `      if (busy) {`,
        lines(fr, (f) => `        ${roundStore(j, f)}`),
        `      }`,
        `      workgroupBarrier();`,
        `      for (var e = lid; e < R * WC; e += WG) {`,
        `        let r = e / WC;`,
        `        f_sh[r * WS + e % WC] *= alpha_sh[r];`,
        `      }`,
        `      workgroupBarrier();`,
        `      if (busy) {`,
        lines(
          fr,
          (f) =>
            `        o${j * fr + f} = subgroupMatrixLoad<${result}, row_major>(&f_sh, ${
              roundAt(f)
            }, WS);`,
        ),
        `      }`,
        `      workgroupBarrier();`,
      ].join("\n"))
  }
    }
    // No barrier here: the barrier of the flag's read above already orders every P store before
    // the loads of P V, and the rare slow path ends with a barrier of its own.
    // O += P V.
    if (busy) {
${
    off("pv") ? "" : lines(
      kk,
      (j) =>
        `      let p${j} = subgroupMatrixLoad<${left}, row_major>(&h_sh, P_OFF + rb * M * PS + ${
          j * K
        }u, PS);`,
    )
  }
${
    off("pv") ? "" : lines(
      kk,
      (j) =>
        off("pv-loads")
          ? `      let vf${j} = subgroupMatrixLoad<${right}, row_major>(&h_sh, ${
            k.keys * ds + j * K * ds
          }u + hs * ${dn * N}u, DS);`
          : "",
    )
  }
${
    off("pv") ? "" : lines(dn, (n) =>
      lines(
        kk,
        (j) =>
          `      o${n} = subgroupMatrixMultiplyAccumulate(p${j}, ${
            off("pv-loads")
              ? `vf${j}`
              : `subgroupMatrixLoad<${right}, row_major>(&h_sh, ${
                k.keys * ds + j * K * ds
              }u + (hs * ${dn}u + ${n}u) * ${N}u, DS)`
          }, o${n});`,
      ))
  }
    }
  }

  // Normalised partials and their lse, 1/OUT_ROUNDS of the columns at a time, each vec4 of a row
  // written by neighbouring invocations (whole rows per subgroup); a row that saw no key writes
  // o = 0 and lse = NEG (EMPTY_LSE). alpha_sh now holds each row's 1 / l.
  let r = row_start + row;
  let out_row = (q_begin + r / GROUP) * Q_HEADS + kvh * GROUP + r % GROUP;
  let inv = select(0.0, 1.0 / l_run, l_run > 0.0);
  if (part == 0u) { alpha_sh[row] = inv; }
${
    off("output")
      // Keeps every output fragment alive (stored over one another) and writes one value per row.
      ? [
        `  workgroupBarrier();`,
        `  if (busy) {`,
        lines(
          dn,
          (n) => `    subgroupMatrixStore<row_major>(&f_sh, hs * R * SS + rb * M * SS, o${n}, SS);`,
        ),
        `  }`,
        `  workgroupBarrier();`,
        `  if (row < rows && part == 0u) { partial_o[out_row * DV] = vec4<f32>(f_sh[row * SS] * inv); }`,
      ].join("\n")
      : lines(k.outRounds, (j) =>
        [
          `  workgroupBarrier();`,
          `  if (busy) {`,
          lines(fr, (f) => `    ${roundStore(j, f)}`),
          `  }`,
          `  workgroupBarrier();`,
          `  for (var e = lid; e < R * (WC / 4u); e += WG) {`,
          `    let wr = e / (WC / 4u);`,
          `    let c = 4u * (e % (WC / 4u));`,
          `    if (wr < rows) {`,
          `      let wq = row_start + wr;`,
          `      let orow = (q_begin + wq / GROUP) * Q_HEADS + kvh * GROUP + wq % GROUP;`,
          `      let col = (c / ${fr * N}u) * ${dn * N}u + ${j * fr * N}u + c % ${fr * N}u;`,
          `      let b = wr * WS + c;`,
          `      partial_o[(orow * D + col) / 4u] =`,
          `        vec4<f32>(f_sh[b], f_sh[b + 1u], f_sh[b + 2u], f_sh[b + 3u]) * alpha_sh[wr];`,
          `    }`,
          `  }`,
        ].join("\n"))
  }
  if (row < rows && part == 0u) {
    partial_lse[out_row] = select(NEG, m_run + log(l_run), l_run > 0.0);
  }${k.occupancy ? "\n  workgroupBarrier();\n  if (lid == 0u) { atomicSub(&occ[0], 1u); }" : ""}
}
`;
}

/** The pipeline of the matrix kernel for `gpu`. */
export function mmaPipeline(
  gpu: Gpu,
  shape: ModelShape,
  kernel: MmaKernel,
  maskWords: number,
): Promise<GPUComputePipeline> {
  if (gpu.info.subgroupMinSize !== kernel.subgroupSize) {
    throw new GpuError(
      `The mma kernel was planned for subgroups of ${kernel.subgroupSize}, but this device uses ${gpu.info.subgroupMinSize}`,
    );
  }
  const enables = gpu.wgslEnables({ f16: true, subgroups: true, subgroupMatrix: true });
  return gpu.pipeline(
    `group-attention ${mmaVariantName(kernel)} ${shape.qHeads}/${shape.kvHeads}/${shape.headDim}`,
    mmaSource({ shape, kernel, maskWords, enables }),
  );
}

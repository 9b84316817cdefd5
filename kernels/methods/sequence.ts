/**
 * `sequence`: Flash-Decoding on the paged, tree-shaped KV cache, the sequence-based (Q-guided)
 * baseline of the DeFT paper (section 2.1). Every query is grouped with its whole root-to-node KV
 * (the concatenation of its path nodes, gathered page by page through the layout) and that KV is
 * split into chunks sized to fill the GPU; each (chunk, KV head) workgroup computes all query
 * heads of the KV head's GQA group from one load of K and V and emits `(o_g, lse_g)` partials,
 * which the shared gather reduction (`reduce.ts`, paper section 3.5 stage 2) merges in the same
 * pass. When every query fits one chunk, the workgroups write the output directly instead.
 *
 * The kernel (`wgsl/sequence.wgsl`) reads K and V straight from global memory into registers,
 * with several lanes per key for the scores and one thread per (key group, dim quad) for P·V, and
 * walks a chunk in blocks of keys (64 by default) with two barriers per block; see the kernel's
 * header. A second kernel (`design: "lanes"`, `wgsl/sequence_lanes.wgsl`) has no barrier in its
 * loop: key groups of 8-32 adjacent lanes sum their dots by subgroup shuffles and keep their own
 * online softmax until the chunk ends (on an H200 it leads where little KV is shared on the Deno
 * runtime and loses where much is; docs/performance.md, changes 32-34).
 * Every geometry parameter is a field of {@linkcode SequenceVariant}; the method's one kernel
 * variant ({@linkcode SEQUENCE_KERNEL}) takes them from `options.sequence` (on the command line
 * `--variant sequence.threads=256,...`), so variants can be timed side by side.
 *
 * Its KV IO is the paper's `2·d·ΣN_i` (Table 12), loaded once per KV head rather than once per
 * query head, so this is the strong GQA-aware form of the baseline every speedup is measured
 * against (the paper's accounting, which counts per query head, is reported alongside).
 *
 * @module
 */

import { type Dtype, dtypeBytes, groupSize, type ModelShape } from "../../workloads/shapes.ts";
import { checkWorkgroup, type Gpu, GpuError, PLAN_STORAGE_BUDGET, requireF16 } from "../gpu.ts";
import type {
  DispatchInfo,
  GpuProblem,
  MethodRecord,
  Plan,
  PlanCounts,
  PlanInput,
  PreparedMethod,
} from "../method.ts";
import { dramFloorBytes, paperIo, realIo } from "../plan_counts.ts";
import { type KernelVariant, TARGET_WORKGROUPS } from "../options.ts";
import {
  BINDING_OFFSET_ALIGNMENT,
  type PartialTarget,
  prepareReduction,
  reductionDispatch,
  reductionIo,
  type ReductionLists,
  reductionLists,
  rowGrid,
} from "../reduce.ts";
import { specializeWgsl, unrollWgsl } from "../wgsl.ts";
import sequenceCommonWgsl from "../wgsl/sequence_common.wgsl" with { type: "text" };
import sequenceWgsl from "../wgsl/sequence.wgsl" with { type: "text" };
import sequenceLanesWgsl from "../wgsl/sequence_lanes.wgsl" with { type: "text" };

/** Fewest tokens per chunk (chunks are also at least one block), so partials stay small. */
export const MIN_CHUNK_TOKENS = 64;
/** Most threads per workgroup (WebGPU's default `maxComputeInvocationsPerWorkgroup`). */
export const MAX_SEQUENCE_WORKGROUP_SIZE = 256;
/** Most Q vec4s a lane keeps in registers when `qPlacement` is `"auto"` (64 registers). */
export const Q_REGISTER_VEC4S = 16;
const MAX_PER_DIM = 65535;

/** Kernel variant: every tunable of the kernel and the chunking, selectable per method object. */
export interface SequenceVariant {
  /** Name in reports and perf tables. */
  readonly name: string;
  /**
   * The kernel: `blocks` (wgsl/sequence.wgsl: blocks of keys, two barriers each) or `lanes`
   * (wgsl/sequence_lanes.wgsl: key groups of `lanes` adjacent lanes sum their dots by subgroup
   * shuffles and run their own online softmax, no barrier until the chunk ends; needs subgroups of
   * at least `lanes` invocations).
   */
  readonly design: SequenceDesign;
  /** Threads per workgroup (a power of two, 64..256); halved only if nothing else fits. */
  readonly threads: number;
  /**
   * Lanes per key in the score phase (a power of two); 0: min(8, head dim / 4 rounded up), and in
   * the `lanes` design min(16, head dim / 4 rounded up, the device's subgroup size).
   */
  readonly lanes: number;
  /** `lanes` design: keys a key group takes per step (a power of two, at most 16). */
  readonly unroll: number;
  /**
   * `lanes` design: reduce-scatter the logits so that each lane finishes one head's and computes
   * its exponentials alone, then gather the probabilities (at most 4 heads per workgroup, at least
   * 4 lanes per key).
   */
  readonly scatter: boolean;
  /** Keys per block B, an upper bound (a power of two; lowered to fit the storage budget). */
  readonly blockKeys: number;
  /**
   * Where a lane keeps its Q quads: registers, workgroup memory, or `"auto"` (registers when they
   * take at most {@linkcode Q_REGISTER_VEC4S} vec4s).
   */
  readonly qPlacement: "auto" | "registers" | "workgroup";
  /** Issue the block's V loads before the first barrier (more registers, overlaps the scores). */
  readonly prefetchV: boolean;
  /** Workgroups aimed for when `options.targetWorkgroups` is 0. */
  readonly targetWorkgroups: number;
  /** Most query heads per workgroup (more split the GQA group into head blocks). */
  readonly maxHeadsPerWorkgroup: number;
  /** Workgroup memory budget in bytes. */
  readonly storageBudget: number;
}

/** The kernels of `sequence` (see {@linkcode SequenceVariant.design}). */
export const SEQUENCE_DESIGNS = ["blocks", "lanes"] as const;
/** One of {@linkcode SEQUENCE_DESIGNS}. */
export type SequenceDesign = (typeof SEQUENCE_DESIGNS)[number];

/** Most lanes per key of the `lanes` design (a subgroup of 32 holds two keys). */
export const MAX_LANES_DESIGN_LANES = 32;

/** The default variant (the registered `sequence` method). */
export const DEFAULT_SEQUENCE_VARIANT: Readonly<SequenceVariant> = {
  name: "default",
  design: "blocks",
  threads: 128,
  lanes: 0,
  unroll: 4,
  scatter: false,
  blockKeys: 64,
  qPlacement: "auto",
  prefetchV: false,
  targetWorkgroups: 1024,
  maxHeadsPerWorkgroup: 8,
  // Llama-3-8B f16 uses about 13 KiB (24 KiB with 256 threads and 128-key blocks).
  storageBudget: PLAN_STORAGE_BUDGET,
};

/**
 * `options.sequence`: the fields of {@linkcode SequenceVariant} to change from the default (its
 * name follows from them; `prefetchV` and `scatter` are 0 or 1).
 */
export type SequenceParams = Readonly<{
  design?: SequenceDesign;
  threads?: number;
  lanes?: number;
  unroll?: number;
  scatter?: 0 | 1;
  blockKeys?: number;
  qPlacement?: SequenceVariant["qPlacement"];
  prefetchV?: 0 | 1;
  targetWorkgroups?: number;
  maxHeadsPerWorkgroup?: number;
  storageBudget?: number;
}>;

/**
 * The variant `params` ask for (checked; `RangeError` naming a bad field). Its name is `default`,
 * or the changed fields (`threads256-blockKeys128`).
 */
export function sequenceVariantOf(params: SequenceParams = {}): SequenceVariant {
  const { prefetchV, scatter, ...rest } = params;
  const flags = [["prefetchV", prefetchV], ["scatter", scatter]];
  for (const [name, flag] of flags) {
    if (flag !== undefined && flag !== 0 && flag !== 1) {
      throw new RangeError(`Sequence variant ${name} must be 0 or 1, got ${JSON.stringify(flag)}`);
    }
  }
  const base: Record<string, unknown> = {
    ...DEFAULT_SEQUENCE_VARIANT,
    prefetchV: DEFAULT_SEQUENCE_VARIANT.prefetchV ? 1 : 0,
    scatter: DEFAULT_SEQUENCE_VARIANT.scatter ? 1 : 0,
  };
  const changed = Object.entries(params).filter(([k, v]) => v !== undefined && v !== base[k]);
  const name = changed.length === 0 ? "default" : changed.map(([k, v]) => `${k}${v}`).join("-");
  return checkSequenceVariant({
    ...DEFAULT_SEQUENCE_VARIANT,
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    ...(prefetchV === undefined ? {} : { prefetchV: prefetchV === 1 }),
    ...(scatter === undefined ? {} : { scatter: scatter === 1 }),
    name,
  });
}

/** The kernel of `sequence`, its one variant: every field of {@linkcode SequenceVariant}. */
export const SEQUENCE_KERNEL: KernelVariant = {
  family: "fma",
  description:
    "split-KV Flash-Decoding, K and V straight into registers (wgsl/sequence.wgsl; design=lanes: wgsl/sequence_lanes.wgsl, needs subgroups)",
  needs: [],
  params: {
    key: "sequence",
    params: [
      {
        name: "design",
        doc:
          "blocks: blocks of keys with two barriers each; lanes: key groups with their own softmax, no barrier in the loop (needs subgroups)",
        default: DEFAULT_SEQUENCE_VARIANT.design,
        choices: [...SEQUENCE_DESIGNS],
      },
      {
        name: "threads",
        doc: "threads per workgroup, a power of two in [64, 256]",
        default: DEFAULT_SEQUENCE_VARIANT.threads,
      },
      {
        name: "lanes",
        doc:
          "lanes per key in the score phase, a power of two (0: min(8, head dim / 4); design=lanes: min(16, head dim / 4, subgroup size))",
        default: DEFAULT_SEQUENCE_VARIANT.lanes,
        min: 0,
      },
      {
        name: "unroll",
        doc: "design=lanes: keys a key group takes per step, a power of two in [1, 16]",
        default: DEFAULT_SEQUENCE_VARIANT.unroll,
        min: 1,
        max: 16,
      },
      {
        name: "scatter",
        doc:
          "design=lanes, 1: reduce-scatter the logits, one head's exponentials per lane (<= 4 heads, >= 4 lanes)",
        default: DEFAULT_SEQUENCE_VARIANT.scatter ? 1 : 0,
        min: 0,
        max: 1,
      },
      {
        name: "blockKeys",
        doc: "keys per block, a power of two (an upper bound)",
        default: DEFAULT_SEQUENCE_VARIANT.blockKeys,
      },
      {
        name: "qPlacement",
        doc: "where a lane keeps its Q quads",
        default: DEFAULT_SEQUENCE_VARIANT.qPlacement,
        choices: ["auto", "registers", "workgroup"],
      },
      {
        name: "prefetchV",
        doc: "1: issue a block's V loads before its first barrier",
        default: DEFAULT_SEQUENCE_VARIANT.prefetchV ? 1 : 0,
        min: 0,
        max: 1,
      },
      {
        name: "targetWorkgroups",
        doc: "workgroups aimed for when --target-workgroups is 0",
        default: DEFAULT_SEQUENCE_VARIANT.targetWorkgroups,
      },
      {
        name: "maxHeadsPerWorkgroup",
        doc: "most query heads per workgroup",
        default: DEFAULT_SEQUENCE_VARIANT.maxHeadsPerWorkgroup,
      },
      {
        name: "storageBudget",
        doc: "workgroup memory budget, bytes",
        default: DEFAULT_SEQUENCE_VARIANT.storageBudget,
      },
    ],
    // The split count is what moves this kernel most between trees (run 26 on an H200: 1536
    // workgroups 4-8% faster than 1024 on prompts shared by many queries, 3-4% slower on
    // sharing-4; 768 6% faster on the unshared batch), so `tune` measures it: the baseline is
    // then as strong as the device makes it (docs/performance.md, change 20).
    tune: [1024, 1536, 2048, 768].map((targetWorkgroups) => ({ targetWorkgroups })),
  },
};

/**
 * Workgroups aimed for when `options.targetWorkgroups` is 0, for the default variant. 1024 was
 * faster than 2048 on four of five paper-like trees in `tools/perf_sequence.ts` on an NVIDIA H200
 * (f16 Llama-3-8B; e.g. few-shot b=20 122 us against 136 us), and lost by 1.4% on the fifth.
 */
export const DEFAULT_TARGET_WORKGROUPS = DEFAULT_SEQUENCE_VARIANT.targetWorkgroups;

/** Kernel geometry, a function of the shape, dtype and variant (so pipelines are shared). */
export interface SequenceTiling {
  /** The kernel ({@linkcode SequenceVariant.design}). */
  readonly design: SequenceDesign;
  /** `lanes` design: keys per key group and step (keysPerTile = keyGroups x unroll). */
  readonly unroll: number;
  /** Threads per workgroup. */
  readonly workgroupSize: number;
  /** Keys per block B (a power of two, at least 4): chunks are whole blocks but the last. */
  readonly keysPerTile: number;
  /** Query heads per workgroup (a divisor of the GQA group). */
  readonly headsPerWorkgroup: number;
  /** GQA group / heads per workgroup: how many workgroups read each chunk of one KV head. */
  readonly headBlocks: number;
  /** Workgroup memory the kernel declares. */
  readonly sharedBytes: number;
  /** Lanes per key in the score phase (L). */
  readonly lanes: number;
  /** Dim quads per lane (ceil(head dim / 4 / L)). */
  readonly quadsPerLane: number;
  /** Keys per score pass (threads / L). */
  readonly keysPerPass: number;
  /** P·V key groups: min(floor(threads / (head dim / 4)), B); `lanes` design: threads / L. */
  readonly keyGroups: number;
  /** True when lanes keep their Q quads in registers. */
  readonly qInRegisters: boolean;
  /** True when V loads are issued before the first barrier of a block. */
  readonly prefetchV: boolean;
  /** `lanes` design: true when the logits are reduce-scattered, one head per lane. */
  readonly scatter: boolean;
}

/** The plan of `sequence`: per-query path segments, the chunks and the kernel geometry. */
export interface SequencePlan extends Plan {
  readonly method: "sequence";
  /** The variant the plan was made for. */
  readonly variant: Readonly<SequenceVariant>;
  readonly tiling: SequenceTiling;
  /** Target tokens per chunk (a multiple of the block; chunks of a query are split evenly). */
  readonly chunkTokens: number;
  /** Per chunk `(query, first segment, begin, end)`, path positions of the query. */
  readonly chunkMeta: Uint32Array;
  /**
   * Per query its path segments root first, `(path position, first slot)` pairs, each query's
   * run closed by a sentinel `(N_i, 0)`.
   */
  readonly segments: Uint32Array;
  /** Query of each chunk (= partial index). */
  readonly chunkQuery: Uint32Array;
  /** True when every query has one chunk: no partials, no reduction. */
  readonly direct: boolean;
  /** CSR lists of the reduction (empty when direct). */
  readonly lists: ReductionLists;
  /** Workgroups of the attention dispatch (chunks x KV heads x head blocks). */
  readonly workgroups: number;
}

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);
const isPow2 = (n: number) => Number.isSafeInteger(n) && n >= 1 && (n & (n - 1)) === 0;
const pow2Ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Divisors of `n` that are at most `max`, largest first. */
function divisorsAtMost(n: number, max: number): number[] {
  const out: number[] = [];
  for (let d = Math.min(n, max); d >= 1; d--) if (n % d === 0) out.push(d);
  return out;
}

/** Checks a variant; throws `RangeError` naming the bad field. */
export function checkSequenceVariant(v: SequenceVariant): SequenceVariant {
  const bad = (field: string, value: unknown, want: string) => {
    throw new RangeError(`Sequence variant ${field} must be ${want}, got ${JSON.stringify(value)}`);
  };
  if (!isPow2(v.threads) || v.threads < 64 || v.threads > MAX_SEQUENCE_WORKGROUP_SIZE) {
    bad("threads", v.threads, `a power of two in [64, ${MAX_SEQUENCE_WORKGROUP_SIZE}]`);
  }
  if (v.lanes !== 0 && (!isPow2(v.lanes) || v.lanes > v.threads)) {
    bad("lanes", v.lanes, "0 or a power of two up to threads");
  }
  if (!isPow2(v.blockKeys) || v.blockKeys < 4) bad("blockKeys", v.blockKeys, "a power of two >= 4");
  if (!SEQUENCE_DESIGNS.includes(v.design)) bad("design", v.design, `"blocks" or "lanes"`);
  if (v.design === "lanes" && v.lanes > MAX_LANES_DESIGN_LANES) {
    bad("lanes", v.lanes, `at most ${MAX_LANES_DESIGN_LANES} with design=lanes`);
  }
  if (!isPow2(v.unroll) || v.unroll > 16) bad("unroll", v.unroll, "a power of two in [1, 16]");
  if (v.design === "blocks" && v.scatter) bad("scatter", 1, "0 with design=blocks");
  if (v.design === "lanes" && v.prefetchV) bad("prefetchV", 1, "0 with design=lanes");
  if (!["auto", "registers", "workgroup"].includes(v.qPlacement)) {
    bad("qPlacement", v.qPlacement, `"auto", "registers" or "workgroup"`);
  }
  if (!Number.isSafeInteger(v.targetWorkgroups) || v.targetWorkgroups < 1) {
    bad("targetWorkgroups", v.targetWorkgroups, "a positive integer");
  }
  if (!Number.isSafeInteger(v.maxHeadsPerWorkgroup) || v.maxHeadsPerWorkgroup < 1) {
    bad("maxHeadsPerWorkgroup", v.maxHeadsPerWorkgroup, "a positive integer");
  }
  if (!Number.isSafeInteger(v.storageBudget) || v.storageBudget < 4096) {
    bad("storageBudget", v.storageBudget, "an integer >= 4096");
  }
  return v;
}

/** Workgroup memory of a geometry (the kernel's `wbuf`, `lg`, `pr`, `qs` and `mxu`). */
function sharedBytes(d4: number, hb: number, lanes: number, b: number, kg: number): number {
  const hb4 = ceilDiv(hb, 4);
  const wbuf = Math.max(b * (lanes * hb4 + 1), Math.floor(kg / 2) * hb * d4 + b * hb4);
  return 16 * (wbuf + 2 * b * hb4 + 4 * hb4 * d4 + lanes) + 4 * 4 * hb4;
}

/** Workgroup memory of a `lanes` geometry (its merge buffer and the key groups' max and sums). */
function lanesSharedBytes(d4: number, hb: number, keyGroups: number): number {
  return 16 * (lanesMergeVec4s(d4, hb, keyGroups) + 2 * keyGroups * ceilDiv(hb, 4));
}

/** Vec4s of the `lanes` kernel's merge buffer (the halving tree's upper half). */
function lanesMergeVec4s(d4: number, hb: number, keyGroups: number): number {
  return Math.max(1, Math.floor(keyGroups / 2) * hb * d4);
}

/**
 * The `lanes` geometry: L lanes per key (at most the subgroup size when known), the most heads per
 * workgroup whose Q and accumulators take at most {@linkcode Q_REGISTER_VEC4S} vec4s each, and
 * the most threads that fit the storage budget.
 */
function lanesTiling(
  shape: ModelShape,
  variant: SequenceVariant,
  subgroupSize: number,
): SequenceTiling {
  const d4 = shape.headDim / 4;
  const group = groupSize(shape);
  const lanes = variant.lanes ||
    Math.min(16, pow2Ceil(d4), subgroupSize > 0 ? subgroupSize : MAX_LANES_DESIGN_LANES);
  const qc = ceilDiv(d4, lanes);
  const hbs = divisorsAtMost(group, variant.maxHeadsPerWorkgroup);
  const hb = hbs.find((h) => h * qc <= Q_REGISTER_VEC4S && (!variant.scatter || h <= 4)) ?? 1;
  if (variant.scatter && lanes < 4) {
    throw new RangeError(
      `Sequence variant scatter needs at least 4 lanes per key, got ${lanes} (head dim ${shape.headDim})`,
    );
  }
  for (let wg = variant.threads; wg >= 64; wg /= 2) {
    if (lanes > wg) continue;
    const kg = wg / lanes;
    const bytes = lanesSharedBytes(d4, hb, kg);
    if (bytes > variant.storageBudget) continue;
    return {
      design: "lanes",
      unroll: variant.unroll,
      workgroupSize: wg,
      keysPerTile: kg * variant.unroll,
      headsPerWorkgroup: hb,
      headBlocks: group / hb,
      sharedBytes: bytes,
      lanes,
      quadsPerLane: qc,
      keysPerPass: kg,
      keyGroups: kg,
      qInRegisters: true,
      prefetchV: false,
      scatter: variant.scatter,
    };
  }
  throw new RangeError(
    `No sequence geometry (design lanes) for shape ${shape.name} fits ${variant.storageBudget} bytes of workgroup memory`,
  );
}

/**
 * The kernel geometry for a shape, dtype and variant: the most heads per workgroup, then the
 * largest block, that fit the storage budget (threads are halved only if nothing fits).
 * `subgroupSize` (0: unknown) bounds the lanes per key of the `lanes` design when the variant
 * leaves them to the planner.
 */
export function sequenceTiling(
  shape: ModelShape,
  _dtype: Dtype,
  variant: SequenceVariant = DEFAULT_SEQUENCE_VARIANT,
  subgroupSize = 0,
): SequenceTiling {
  checkSequenceVariant(variant);
  if (variant.design === "lanes") return lanesTiling(shape, variant, subgroupSize);
  const d4 = shape.headDim / 4;
  const group = groupSize(shape);
  for (let wg = variant.threads; wg >= 64; wg /= 2) {
    if (d4 > wg) continue;
    const lanes = Math.min(variant.lanes || Math.min(8, pow2Ceil(d4)), wg);
    const qc = ceilDiv(d4, lanes);
    const kpp = wg / lanes;
    for (const hb of divisorsAtMost(group, variant.maxHeadsPerWorkgroup)) {
      const qInRegisters = variant.qPlacement === "registers" ||
        (variant.qPlacement === "auto" && hb * qc <= Q_REGISTER_VEC4S);
      for (let b = Math.max(kpp, Math.min(variant.blockKeys, wg)); b >= Math.max(kpp, 4); b /= 2) {
        const kg = Math.min(Math.floor(wg / d4), b);
        const bytes = sharedBytes(d4, hb, lanes, b, kg);
        if (bytes > variant.storageBudget) continue;
        return {
          design: "blocks",
          unroll: 1,
          workgroupSize: wg,
          keysPerTile: b,
          headsPerWorkgroup: hb,
          headBlocks: group / hb,
          sharedBytes: bytes,
          lanes,
          quadsPerLane: qc,
          keysPerPass: kpp,
          keyGroups: kg,
          qInRegisters,
          prefetchV: variant.prefetchV,
          scatter: false,
        };
      }
    }
  }
  throw new RangeError(
    `No sequence geometry for shape ${shape.name} fits ${variant.storageBudget} bytes of workgroup memory`,
  );
}

/** The kernel's constants for a shape and tiling (also the bounds of its unrolled loops). */
export function sequenceConstants(
  shape: ModelShape,
  tiling: SequenceTiling,
): Record<string, number> {
  const d4 = shape.headDim / 4;
  const hb = tiling.headsPerWorkgroup;
  const hb4 = ceilDiv(hb, 4);
  const b = tiling.keysPerTile;
  const lanes = tiling.lanes;
  const kg = tiling.keyGroups;
  // Both kernels' shape, head block, lane and scale constants.
  const common = {
    D4: d4,
    KV_HEADS: shape.kvHeads,
    Q_HEADS: shape.qHeads,
    GROUP: groupSize(shape),
    HB: hb,
    HB4: hb4,
    HEAD_BLOCKS: tiling.headBlocks,
    WG: tiling.workgroupSize,
    L: lanes,
    QC: tiling.quadsPerLane,
    B: b,
    LANE_TAIL: d4 % lanes === 0 ? 0 : 1,
    SCALE: Math.LOG2E / Math.sqrt(shape.headDim),
  };
  if (tiling.design === "lanes") {
    return {
      ...common,
      STEPS: Math.log2(lanes),
      G: kg,
      U: tiling.unroll,
      MERGE: lanesMergeVec4s(d4, hb, kg),
      SCATTER: tiling.scatter ? 1 : 0,
    };
  }
  const merge = Math.floor(kg / 2) * hb * d4;
  return {
    ...common,
    KPP: tiling.keysPerPass,
    PASSES: b / tiling.keysPerPass,
    KG: kg,
    PVK: ceilDiv(b, kg),
    Q_REGS: tiling.qInRegisters ? 1 : 0,
    PREFETCH_V: tiling.prefetchV ? 1 : 0,
    PV_TAIL: b % kg === 0 ? 0 : 1,
    PV_IDLE: kg * d4 < tiling.workgroupSize ? 1 : 0,
    PROW: lanes * hb4 + 1,
    MERGE: merge,
    WBUF: Math.max(b * (lanes * hb4 + 1), merge + b * hb4),
  };
}

/**
 * The kernel source for a shape, dtype and tiling (specialised and unrolled); `enables` are the
 * runtime's `enable` lines for subgroups, which the `lanes` design needs
 * ({@linkcode Gpu.wgslEnables}).
 */
export function sequenceShader(
  shape: ModelShape,
  dtype: Dtype,
  tiling: SequenceTiling,
  enables = "",
): string {
  const consts = sequenceConstants(shape, tiling);
  const f16 = dtype === "f16";
  const lanes = tiling.design === "lanes";
  return enables + unrollWgsl(
    specializeWgsl(sequenceCommonWgsl + (lanes ? sequenceLanesWgsl : sequenceWgsl), {
      consts,
      aliases: f16 ? { KV4: "vec4<f16>" } : {},
      f16,
      name: lanes ? "sequence_lanes.wgsl" : "sequence.wgsl",
    }),
    consts,
  );
}

/** Builds the plan for the variant `options.sequence` asks for: path segments, even chunks of every query's KV, counts. */
export function planSequence(input: PlanInput): SequencePlan {
  return planSequenceFrom(input, null, false);
}

/**
 * {@linkcode planSequence} over the path positions `from[q] .. N_q` of every query (`null`: the
 * whole path; a query with `from[q] = N_q` gets no chunk), the rest of the path being attended
 * elsewhere. With `partials`, every chunk writes a partial (never the output directly), for a
 * reduction that merges them with another kernel's: deft-flatten runs the KV only one query sees
 * this way. The counts are those of the chunks alone (and their own reduction).
 */
export function planSequenceFrom(
  input: PlanInput,
  from: Uint32Array | null,
  partials: boolean,
): SequencePlan {
  const { ix, layout, shape, dtype, options } = input;
  const variant = sequenceVariantOf(options.sequence);
  const { qHeads, kvHeads, headDim: d } = shape;
  const tiling = sequenceTiling(shape, dtype, variant, input.caps?.subgroupSize ?? 0);
  const caps = input.caps;
  if (tiling.design === "lanes" && caps) {
    const sg = caps.subgroupSize;
    if (!caps.subgroups || (sg > 0 && sg < tiling.lanes)) {
      throw new RangeError(
        `sequence with design=lanes needs subgroups of at least ${tiling.lanes} invocations; this device has ${
          caps.subgroups ? `subgroups of ${sg}` : "none"
        } (use --variant sequence.lanes=N with a smaller N, or design=blocks)`,
      );
    }
  }
  const T = tiling.keysPerTile;
  const hb = tiling.headsPerWorkgroup;
  const blocks = kvHeads * tiling.headBlocks;
  const nq = ix.queryCount;

  const start = (q: number) => from?.[q] ?? 0;
  let sumN = ix.sumPathTokens;
  if (from) { for (let q = 0; q < nq; q++) sumN -= start(q); }

  // Path segments, root first, plus a sentinel per query.
  let segCount = 0;
  for (let q = 0; q < nq; q++) segCount += ix.depth[ix.queryNode[q]!]! + 1;
  const segments = new Uint32Array(2 * segCount);
  const segBegin = new Uint32Array(nq);
  let so = 0;
  for (let q = 0; q < nq; q++) {
    const v = ix.queryNode[q]!;
    const dep = ix.depth[v]!;
    segBegin[q] = so;
    let i = so + dep - 1;
    for (let u = v; u >= 0; u = ix.parent[u]!, i--) {
      segments[2 * i] = ix.pathTokens[u]! - ix.tokens(u);
      segments[2 * i + 1] = layout.slotStart[u]!;
    }
    segments[2 * (so + dep)] = ix.pathTokens[v]!;
    so += dep + 1;
  }

  // Chunk size: enough chunks for the target workgroup count, at least MIN_CHUNK_TOKENS, whole
  // blocks. Each query's KV is then split evenly (block-aligned), so no chunk is a tiny leftover.
  const asked = TARGET_WORKGROUPS.read(options);
  const target = asked > 0 ? asked : variant.targetWorkgroups;
  const chunkTokens = ceilDiv(
    Math.max(MIN_CHUNK_TOKENS, T, ceilDiv(sumN * blocks, target)),
    T,
  ) * T;
  let chunks = 0;
  for (let q = 0; q < nq; q++) {
    chunks += ceilDiv(ix.pathTokens[ix.queryNode[q]!]! - start(q), chunkTokens);
  }
  const meta = new Uint32Array(4 * chunks);
  const chunkQuery = new Uint32Array(chunks);
  let c = 0;
  let metaBytes = 0;
  let paddedKeys = 0;
  for (let q = 0; q < nq; q++) {
    const n = ix.pathTokens[ix.queryNode[q]!]!;
    const b0 = start(q);
    if (b0 > n) throw new RangeError(`Sequence: query ${q} starts past its path (${b0} > ${n})`);
    const parts = ceilDiv(n - b0, chunkTokens);
    let seg = segBegin[q]!;
    let b = b0;
    for (let k = 1; k <= parts; k++) {
      const e = Math.min(n, b0 + Math.ceil((k * (n - b0)) / parts / T) * T);
      if (e <= b) continue;
      while (segments[2 * (seg + 1)]! <= b) seg++;
      let last = seg;
      while (segments[2 * (last + 1)]! < e) last++;
      meta[4 * c] = q;
      meta[4 * c + 1] = seg;
      meta[4 * c + 2] = b;
      meta[4 * c + 3] = e;
      chunkQuery[c] = q;
      // Per workgroup: its descriptor, the segments it walks and the one after (cursor end).
      metaBytes += 16 + 8 * (last - seg + 2);
      paddedKeys += ceilDiv(e - b, T) * T;
      c++;
      b = e;
    }
  }
  const used = c;
  const chunkMeta = used === chunks ? meta : meta.slice(0, 4 * used);
  const chunkQueryUsed = used === chunks ? chunkQuery : chunkQuery.slice(0, used);
  const direct = !partials && used === nq;
  const lists: ReductionLists = direct
    ? { offsets: new Uint32Array(0), entries: new Uint32Array(0) }
    : reductionLists(nq, chunkQueryUsed);
  const workgroups = used * blocks;

  // Counts. Every K and V row of a chunk is loaded once per workgroup (keys past the chunk end
  // are skipped); Q once per workgroup, into workgroup memory.
  const b = dtypeBytes(dtype);
  const rowBytes = qHeads * d * 4;
  const kvBytes = sumN * blocks * 2 * d * b;
  const qBytes = used * qHeads * d * b;
  let metadataBytes = metaBytes * blocks;
  let partialBytes: number;
  if (direct) {
    partialBytes = nq * qHeads * 4; // the lse the kernel still writes
  } else {
    const r = reductionIo(lists, shape);
    metadataBytes += r.metadataBytes;
    partialBytes = used * qHeads * (d + 1) * 4 + r.partialReadBytes;
  }
  // Scores: every lane runs all its quads (a lane past the head dim multiplies zeros); P·V: d.
  const scoreDims = 4 * tiling.lanes * tiling.quadsPerLane;
  const attentionFlops = 2 * (scoreDims + d) * hb * blocks * sumN;
  const reduceFlops = direct ? 0 : 2 * used * qHeads * d;
  const counts: PlanCounts = {
    paper: paperIo(shape, dtype, sumN, 0, 0),
    real: realIo({
      kvBytes,
      qBytes,
      maskBytes: 0,
      metadataBytes,
      partialBytes,
      logitsBytes: 0,
      outputBytes: nq * rowBytes,
    }),
    dramBytes: dramFloorBytes(input),
    flops: attentionFlops + reduceFlops,
    usefulFlops: 4 * d * sumN * qHeads,
  };
  const dispatches: DispatchInfo[] = [{
    kernel: "sequence",
    workgroups: rowGrid(workgroups, MAX_PER_DIM),
    workgroupSize: tiling.workgroupSize,
  }];
  if (!direct) dispatches.push(reductionDispatch(nq, shape));
  return {
    method: "sequence",
    shape,
    dtype,
    queries: nq,
    slots: layout.slots,
    dispatches,
    counts,
    stats: {
      chunks: used,
      chunkTokens,
      keysPerTile: T,
      headsPerWorkgroup: hb,
      headBlocks: tiling.headBlocks,
      workgroups,
      workgroupSize: tiling.workgroupSize,
      lanes: tiling.lanes,
      keyGroups: tiling.keyGroups,
      unroll: tiling.design === "lanes" ? tiling.unroll : 0,
      qInRegisters: tiling.qInRegisters ? 1 : 0,
      prefetchV: tiling.prefetchV ? 1 : 0,
      partials: direct ? 0 : used,
      direct: direct ? 1 : 0,
      segments: segCount - nq,
      paddedKeys,
      sharedBytes: tiling.sharedBytes,
    },
    variant,
    kernelVariant: `fma-${variant.name}-t${tiling.workgroupSize}-k${T}-h${hb}${
      tiling.design === "lanes" ? `-l${tiling.lanes}` : ""
    }`,
    tiling,
    chunkTokens,
    chunkMeta,
    segments,
    chunkQuery: chunkQueryUsed,
    direct,
    lists,
    workgroups,
  };
}

/**
 * The KV slots `query` attends through `plan`'s chunks, in chunk order: the CPU meaning of a plan,
 * for tests. A whole-path plan gives every slot of the query's path once.
 */
export function sequenceAttendedSlots(plan: SequencePlan, query: number): number[] {
  const out: number[] = [];
  const { chunkMeta: meta, segments: segs } = plan;
  for (let c = 0; c < meta.length / 4; c++) {
    if (meta[4 * c] !== query) continue;
    let s = meta[4 * c + 1]!;
    for (let pos = meta[4 * c + 2]!; pos < meta[4 * c + 3]!; pos++) {
      while (segs[2 * (s + 1)]! <= pos) s++;
      out.push(segs[2 * s + 1]! + pos - segs[2 * s]!);
    }
  }
  return out;
}

/**
 * Uploads a sequence plan's chunks and binds its kernel: to `target`'s partial buffers, or to the
 * output when the plan is direct (`target` null). The reduction is the caller's.
 */
export async function prepareSequenceStage(
  gpu: Gpu,
  plan: SequencePlan,
  problem: GpuProblem,
  target: PartialTarget | null,
): Promise<{ encode(pass: GPUComputePassEncoder): void; destroy(): void }> {
  const { shape, dtype, tiling } = plan;
  requireF16(gpu, dtype);
  checkWorkgroup(gpu, "sequence", { bytes: tiling.sharedBytes, threads: tiling.workgroupSize });
  const lanes = tiling.design === "lanes";
  if (lanes && (!gpu.hasSubgroups || gpu.info.subgroupMinSize < tiling.lanes)) {
    throw new GpuError(
      `sequence with design=lanes needs subgroups of at least ${tiling.lanes} invocations; this device has ${
        gpu.hasSubgroups ? `a minimum of ${gpu.info.subgroupMinSize}` : "none"
      } (use --variant sequence.lanes=N with a smaller N, or design=blocks)`,
    );
  }
  const enables = lanes ? gpu.wgslEnables({ subgroups: true }) : "";
  const pipeline = await gpu.pipeline(
    lanes ? "sequence-lanes" : "sequence",
    sequenceShader(shape, dtype, tiling, enables),
  );
  const own: GPUBuffer[] = [];
  const make = (label: string, data: ArrayBufferView | number) => {
    const buf = gpu.buffer(label, data);
    own.push(buf);
    return buf;
  };
  try {
    const meta = make("sequence chunks", plan.chunkMeta);
    const segs = make("sequence segments", plan.segments);
    const rowBytes = shape.qHeads * shape.headDim * 4;
    const dst = target
      ? [
        { buffer: target.o, offset: target.base * rowBytes },
        { buffer: target.lse, offset: target.base * shape.qHeads * 4 },
      ]
      : [{ buffer: problem.out, offset: 0 }, {
        buffer: make("sequence lse", plan.queries * shape.qHeads * 4),
        offset: 0,
      }];
    for (const d of dst) {
      if (d.offset % BINDING_OFFSET_ALIGNMENT !== 0) {
        throw new RangeError(
          `Sequence partials bound at offset ${d.offset}, not a multiple of 256`,
        );
      }
    }
    const bindGroup = gpu.device.createBindGroup({
      label: "sequence",
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        ...[meta, segs, problem.q, problem.k, problem.v].map((buffer) => ({ buffer, offset: 0 })),
        ...dst,
      ].map((resource, binding) => ({ binding, resource })),
    });
    const grid = rowGrid(plan.workgroups, gpu.limit("maxComputeWorkgroupsPerDimension"));
    return {
      encode(pass) {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(...grid);
      },
      destroy() {
        for (const b of own) b.destroy();
      },
    };
  } catch (e) {
    for (const b of own) b.destroy();
    throw e;
  }
}

async function prepareSequence(
  gpu: Gpu,
  plan: SequencePlan,
  problem: GpuProblem,
): Promise<PreparedMethod> {
  const { shape } = plan;
  const chunks = plan.chunkMeta.length / 4;
  if (plan.direct) {
    const stage = await prepareSequenceStage(gpu, plan, problem, null);
    return { encode: stage.encode, destroy: stage.destroy };
  }
  const o = gpu.buffer("sequence partial o", chunks * shape.qHeads * shape.headDim * 4);
  const lse = gpu.buffer("sequence partial lse", chunks * shape.qHeads * 4);
  let stage: Awaited<ReturnType<typeof prepareSequenceStage>> | null = null;
  try {
    stage = await prepareSequenceStage(gpu, plan, problem, { o, lse, base: 0 });
    const reduction = await prepareReduction(gpu, plan.lists, shape, o, lse, problem.out);
    const attention = stage;
    return {
      encode(pass) {
        attention.encode(pass);
        reduction.encode(pass);
      },
      parts: [{ name: "stage-1", encode: attention.encode }, {
        name: "reduce",
        encode: reduction.encode,
      }],
      destroy() {
        reduction.destroy();
        attention.destroy();
        o.destroy();
        lse.destroy();
      },
    };
  } catch (e) {
    stage?.destroy();
    o.destroy();
    lse.destroy();
    throw e;
  }
}

/** The `sequence` method (Flash-Decoding on paged KV). */
export const sequence: MethodRecord<SequencePlan, "sequence"> = {
  name: "sequence",
  description:
    "Flash-Decoding on paged KV: each query's root-to-node KV split into chunks, GQA-aware, then a gather reduction",
  options: [TARGET_WORKGROUPS],
  variants: [SEQUENCE_KERNEL],
  plan: planSequence,
  prepare: prepareSequence,
};

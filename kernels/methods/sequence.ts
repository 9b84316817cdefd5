/**
 * `sequence`: Flash-Decoding on the paged, tree-shaped KV cache, the sequence-based (Q-guided)
 * baseline of the DeFT paper (section 2.1). Every query is grouped with its whole root-to-node KV
 * (the concatenation of its path nodes, gathered page by page through the layout) and that KV is
 * split into chunks sized to fill the GPU; each (chunk, KV head) workgroup computes all query
 * heads of the KV head's GQA group from one load of K and V and emits `(o_g, lse_g)` partials,
 * which the shared gather reduction (`reduce.ts`, paper section 3.5 stage 2) merges in the same
 * pass. When every query fits one chunk, the workgroups write the output directly instead.
 *
 * Its KV IO is the paper's `2·d·ΣN_i` (Table 12), loaded once per KV head rather than once per
 * query head, so this is the strong GQA-aware form of the baseline every speedup is measured
 * against (the paper's accounting, which counts per query head, is reported alongside).
 *
 * @module
 */

import { type Dtype, dtypeBytes, groupSize, type ModelShape } from "../../workloads/shapes.ts";
import { type Gpu, GpuError } from "../gpu.ts";
import {
  type AttentionMethod,
  type DispatchInfo,
  type GpuProblem,
  paperIo,
  type Plan,
  type PlanCounts,
  type PlanInput,
  type PreparedMethod,
  realIo,
} from "../method.ts";
import {
  type PreparedReduction,
  prepareReduction,
  reductionDispatch,
  reductionIo,
  type ReductionLists,
  reductionLists,
  rowGrid,
} from "../reduce.ts";
import sequenceWgsl from "../wgsl/sequence.wgsl" with { type: "text" };

/** Total workgroups aimed for when `options.targetWorkgroups` is 0 (a few waves of an H100). */
export const DEFAULT_TARGET_WORKGROUPS = 4096;
/** Fewest tokens per chunk, so partials stay small next to the chunk's KV. */
export const MIN_CHUNK_TOKENS = 64;
/** Most threads per workgroup: one per (query head, dim quad), so heads x head dim / 4 <= 256. */
export const MAX_SEQUENCE_WORKGROUP_SIZE = 256;
/**
 * Most keys per tile (T). On an H200, 32-key tiles ran twice as fast as 64-key tiles in an
 * earlier version of this kernel (head dim 128, f16); smaller tiles only add barriers.
 */
const MAX_KEYS_PER_TILE = 32;
/**
 * Workgroup memory a workgroup may use: at most 24 KiB keeps nine or more workgroups resident on
 * an H100 SM (llama3-8b f16 uses about 20 KiB). Plans are device-free (every desktop
 * Vulkan/Metal/D3D12 device grants at least 32 KiB); `prepare` checks the real limit.
 */
export const SEQUENCE_STORAGE_BUDGET = 24576;
const MAX_PER_DIM = 65535;

/** Kernel geometry, a function of the shape and dtype only (so pipelines are shared by trees). */
export interface SequenceTiling {
  /** Threads per workgroup: query heads per workgroup x head dim / 4. */
  readonly workgroupSize: number;
  /** Keys per tile T (a power of two, at least 4). */
  readonly keysPerTile: number;
  /** Query heads per workgroup (a divisor of the GQA group). */
  readonly headsPerWorkgroup: number;
  /** GQA group / heads per workgroup: how many workgroups read each chunk of one KV head. */
  readonly headBlocks: number;
  /** Workgroup memory the kernel declares. */
  readonly sharedBytes: number;
}

/** The plan of `sequence`: per-query path segments, the chunks and the kernel geometry. */
export interface SequencePlan extends Plan {
  readonly method: "sequence";
  readonly tiling: SequenceTiling;
  /** Target tokens per chunk (a multiple of the tile; chunks of a query are split evenly). */
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

/** Largest divisor of `n` that is at most `max` (at least 1). */
function largestDivisorAtMost(n: number, max: number): number {
  for (let d = Math.min(n, max); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

function sharedBytes(d4: number, hb: number, t: number, vec4Bytes: number): number {
  return t * (2 * d4 + 1) * vec4Bytes + // K tile (padded rows) and V tile, storage dtype
    hb * d4 * 16 + // Q, f32
    2 * hb * t * 4; // logits, probabilities
}

/** The kernel geometry for a shape and dtype (largest tile that fits the budgets). */
export function sequenceTiling(shape: ModelShape, dtype: Dtype): SequenceTiling {
  const vec4Bytes = 4 * dtypeBytes(dtype);
  const d4 = shape.headDim / 4;
  const group = groupSize(shape);
  const hb = largestDivisorAtMost(group, Math.max(1, Math.floor(MAX_SEQUENCE_WORKGROUP_SIZE / d4)));
  let t = MAX_KEYS_PER_TILE;
  while (t > 4 && sharedBytes(d4, hb, t, vec4Bytes) > SEQUENCE_STORAGE_BUDGET) {
    t /= 2;
  }
  return {
    workgroupSize: hb * d4,
    keysPerTile: t,
    headsPerWorkgroup: hb,
    headBlocks: group / hb,
    sharedBytes: sharedBytes(d4, hb, t, vec4Bytes),
  };
}

/**
 * Specialises a kernel: replaces `const NAME: u32 = ...u;` / `const NAME: f32 = ...;` lines and,
 * for f16, switches `alias KV4` / `alias LT` to f16 and enables the extension. Throws `RangeError`
 * when the source lacks a constant, so a renamed constant never goes silently unspecialised.
 */
export function specializeWgsl(
  src: string,
  dtype: Dtype,
  consts: Readonly<Record<string, number>>,
): string {
  let out = src;
  for (const [name, value] of Object.entries(consts)) {
    const re = new RegExp(`^const ${name}: (u32|f32) = [^;]+;`, "m");
    const m = re.exec(out);
    if (!m) throw new RangeError(`Kernel source has no constant ${name} to specialise`);
    const lit = m[1] === "u32" ? `${value}u` : value.toPrecision(12);
    out = out.replace(re, `const ${name}: ${m[1]} = ${lit};`);
  }
  if (dtype === "f16") {
    out = "enable f16;\n" +
      out.replace(/^alias KV4 = vec4<f32>;/m, "alias KV4 = vec4<f16>;")
        .replace(/^alias LT = f32;/m, "alias LT = f16;");
  }
  return out;
}

/** The kernel source for a shape, dtype and tiling. */
export function sequenceShader(shape: ModelShape, dtype: Dtype, tiling: SequenceTiling): string {
  return specializeWgsl(sequenceWgsl, dtype, {
    D4: shape.headDim / 4,
    KV_HEADS: shape.kvHeads,
    Q_HEADS: shape.qHeads,
    GROUP: groupSize(shape),
    HB: tiling.headsPerWorkgroup,
    HEAD_BLOCKS: tiling.headBlocks,
    T: tiling.keysPerTile,
    SCALE: Math.LOG2E / Math.sqrt(shape.headDim),
  });
}

/** Builds the plan: path segments, even chunks of every query's KV, counts. */
export function planSequence(input: PlanInput): SequencePlan {
  const { ix, layout, shape, dtype, options } = input;
  const { qHeads, kvHeads, headDim: d } = shape;
  const tiling = sequenceTiling(shape, dtype);
  const T = tiling.keysPerTile;
  const hb = tiling.headsPerWorkgroup;
  const blocks = kvHeads * tiling.headBlocks;
  const nq = ix.queryCount;

  // Path segments, root first, plus a sentinel per query.
  let segCount = 0;
  let sumN = 0;
  for (let q = 0; q < nq; q++) {
    const v = ix.queryNode[q]!;
    segCount += ix.depth[v]! + 1;
    sumN += ix.pathTokens[v]!;
  }
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
  // tiles. Each query's KV is then split evenly (tile-aligned), so no chunk is a tiny leftover.
  const target = options.targetWorkgroups > 0
    ? options.targetWorkgroups
    : DEFAULT_TARGET_WORKGROUPS;
  const chunkTokens = ceilDiv(
    Math.max(MIN_CHUNK_TOKENS, T, ceilDiv(sumN * blocks, target)),
    T,
  ) * T;
  let chunks = 0;
  for (let q = 0; q < nq; q++) chunks += ceilDiv(ix.pathTokens[ix.queryNode[q]!]!, chunkTokens);
  const meta = new Uint32Array(4 * chunks);
  const chunkQuery = new Uint32Array(chunks);
  let c = 0;
  let metaBytes = 0;
  let paddedKeys = 0;
  for (let q = 0; q < nq; q++) {
    const n = ix.pathTokens[ix.queryNode[q]!]!;
    const parts = ceilDiv(n, chunkTokens);
    let seg = segBegin[q]!;
    let b = 0;
    for (let k = 1; k <= parts; k++) {
      const e = Math.min(n, Math.ceil((k * n) / parts / T) * T);
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
  const direct = used === nq;
  const lists: ReductionLists = direct
    ? { offsets: new Uint32Array(0), entries: new Uint32Array(0) }
    : reductionLists(nq, chunkQueryUsed);
  const workgroups = used * blocks;

  // Counts.
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
  const attentionFlops = 2 * d * hb * blocks * (paddedKeys + sumN);
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
      partials: direct ? 0 : used,
      direct: direct ? 1 : 0,
      segments: segCount - nq,
      paddedKeys,
      sharedBytes: tiling.sharedBytes,
    },
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

async function prepareSequence(
  gpu: Gpu,
  plan: SequencePlan,
  problem: GpuProblem,
): Promise<PreparedMethod> {
  const { shape, dtype, tiling } = plan;
  if (dtype === "f16" && !gpu.hasF16) {
    throw new GpuError("sequence with dtype f16 needs the WebGPU feature shader-f16");
  }
  const storage = gpu.limit("maxComputeWorkgroupStorageSize");
  if (tiling.sharedBytes > storage) {
    throw new GpuError(
      `sequence needs ${tiling.sharedBytes} bytes of workgroup memory, more than this device's maxComputeWorkgroupStorageSize of ${storage}`,
    );
  }
  const pipeline = await gpu.pipeline("sequence", sequenceShader(shape, dtype, tiling));
  const chunks = plan.chunkMeta.length / 4;
  const own: GPUBuffer[] = [];
  const make = (label: string, data: ArrayBufferView | number) => {
    const buf = gpu.buffer(label, data);
    own.push(buf);
    return buf;
  };
  const meta = make("sequence chunks", plan.chunkMeta);
  const segs = make("sequence segments", plan.segments);
  let dstO: GPUBuffer, dstLse: GPUBuffer;
  let reduction: PreparedReduction | null = null;
  try {
    if (plan.direct) {
      dstO = problem.out;
      dstLse = make("sequence lse", plan.queries * shape.qHeads * 4);
    } else {
      dstO = make("sequence partial o", chunks * shape.qHeads * shape.headDim * 4);
      dstLse = make("sequence partial lse", chunks * shape.qHeads * 4);
      reduction = await prepareReduction(gpu, plan.lists, shape, dstO, dstLse, problem.out);
    }
  } catch (e) {
    for (const b of own) b.destroy();
    throw e;
  }
  const bindGroup = gpu.device.createBindGroup({
    label: "sequence",
    layout: pipeline.getBindGroupLayout(0),
    entries: [meta, segs, problem.q, problem.k, problem.v, dstO, dstLse].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
  const grid = rowGrid(plan.workgroups, gpu.limit("maxComputeWorkgroupsPerDimension"));
  return {
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...grid);
      reduction?.encode(pass);
    },
    destroy() {
      reduction?.destroy();
      for (const b of own) b.destroy();
    },
  };
}

/** The `sequence` method (Flash-Decoding on paged KV). */
export const sequence: AttentionMethod<SequencePlan> = {
  name: "sequence",
  description:
    "Flash-Decoding on paged KV: each query's root-to-node KV split into chunks, GQA-aware, then a gather reduction",
  plan: planSequence,
  prepare: prepareSequence,
};

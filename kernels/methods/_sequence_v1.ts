/**
 * The previous `sequence` kernel (32-key tiles staged in workgroup memory, 128 threads), kept
 * verbatim only so that `tools/perf_sequence.ts` can time it next to the current one. Not part of
 * the method registry; delete once the new kernel has been measured.
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
import { specializeWgsl } from "./sequence.ts";
import sequenceWgsl from "../wgsl/sequence_v1.wgsl" with { type: "text" };

/** Total workgroups aimed for when `options.targetWorkgroups` is 0 (a few waves of an H100). */
export const V1_DEFAULT_TARGET_WORKGROUPS = 4096;
/** Fewest tokens per chunk, so partials stay small next to the chunk's KV. */
export const V1_MIN_CHUNK_TOKENS = 64;
/** Most threads per workgroup: one per (query head, dim quad), so heads x head dim / 4 <= 256. */
export const V1_MAX_WORKGROUP_SIZE = 256;
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
export const V1_STORAGE_BUDGET = 24576;
const MAX_PER_DIM = 65535;

/** Kernel geometry, a function of the shape and dtype only (so pipelines are shared by trees). */
export interface SequenceV1Tiling {
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
export interface SequenceV1Plan extends Plan {
  readonly method: "sequence";
  readonly tiling: SequenceV1Tiling;
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
export function sequenceV1Tiling(shape: ModelShape, dtype: Dtype): SequenceV1Tiling {
  const vec4Bytes = 4 * dtypeBytes(dtype);
  const d4 = shape.headDim / 4;
  const group = groupSize(shape);
  const hb = largestDivisorAtMost(group, Math.max(1, Math.floor(V1_MAX_WORKGROUP_SIZE / d4)));
  let t = MAX_KEYS_PER_TILE;
  while (t > 4 && sharedBytes(d4, hb, t, vec4Bytes) > V1_STORAGE_BUDGET) {
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

/** The kernel source for a shape, dtype and tiling. */
export function sequenceV1Shader(
  shape: ModelShape,
  dtype: Dtype,
  tiling: SequenceV1Tiling,
): string {
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
export function planSequenceV1(input: PlanInput): SequenceV1Plan {
  const { ix, layout, shape, dtype, options } = input;
  const { qHeads, kvHeads, headDim: d } = shape;
  const tiling = sequenceV1Tiling(shape, dtype);
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

  // Chunk size: enough chunks for the target workgroup count, at least V1_MIN_CHUNK_TOKENS, whole
  // tiles. Each query's KV is then split evenly (tile-aligned), so no chunk is a tiny leftover.
  const target = options.targetWorkgroups > 0
    ? options.targetWorkgroups
    : V1_DEFAULT_TARGET_WORKGROUPS;
  const chunkTokens = ceilDiv(
    Math.max(V1_MIN_CHUNK_TOKENS, T, ceilDiv(sumN * blocks, target)),
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

async function prepareSequenceV1(
  gpu: Gpu,
  plan: SequenceV1Plan,
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
  const pipeline = await gpu.pipeline("sequence v1", sequenceV1Shader(shape, dtype, tiling));
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

/** The previous `sequence` method, for timing only. */
export const sequenceV1: AttentionMethod<SequenceV1Plan> = {
  name: "sequence",
  description:
    "Flash-Decoding on paged KV: each query's root-to-node KV split into chunks, GQA-aware, then a gather reduction",
  plan: planSequenceV1,
  prepare: prepareSequenceV1,
};

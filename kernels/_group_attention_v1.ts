/**
 * FROZEN COPY of the first group-attention kernel (stage 1 of deft-flatten, deft-node,
 * deft-node-chunk and cascade before the Q-resident rewrite), kept only so that
 * `tools/perf_group.ts` can time the old kernel beside the new one on the same trees. Nothing else
 * imports it; delete it together with `wgsl/group_attention_v1.wgsl` once the comparison is done.
 *
 * The kernel: 128 threads, 64-row tiles, 32-key sub-tiles; Q and K re-staged transposed in f32 for
 * every sub-tile in chunks of the head dim; segments found by a binary search per key.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import { type Gpu, GpuError } from "./gpu.ts";
import {
  type AttentionMethod,
  type DispatchInfo,
  type GpuProblem,
  type MethodName,
  type PaperIo,
  paperIo,
  type Plan,
  type PlanInput,
  type PreparedMethod,
  realIo,
} from "./method.ts";
import {
  prepareReduction,
  reductionDispatch,
  reductionIo,
  type ReductionLists,
  reductionLists,
  rowGrid,
} from "./reduce.ts";
import groupWgsl from "./wgsl/group_attention_v1.wgsl" with { type: "text" };
import { type GroupSet, positiveOption, treeTokens } from "./group_attention.ts";
import { flattenBlocks } from "./methods/deft_flatten.ts";

/** Rows (query x q-head pairs) per row tile: one workgroup's rows. */
export const GROUP_ROWS = 64;
/** Rows per warp; a warp whose 16 rows are all padding skips its math. */
export const GROUP_WARP_ROWS = 16;
/** Threads per workgroup. */
export const GROUP_WORKGROUP_SIZE = 128;

/** Keys per KV sub-tile streamed through workgroup memory. */
export const GROUP_KEYS = 32;

/** A plan of a group-attention method: the groups, the work items and the reduction lists. */
export interface GroupPlanV1 extends Plan {
  /** The groups the kernel runs. */
  readonly groups: GroupSet;
  /** `[item][2]`: group, first row of the row tile. */
  readonly items: Uint32Array;
  /** Partials of each query, for the reduction. */
  readonly lists: ReductionLists;
}

/** Bytes per stored Q/K/V element. */
function elemBytes(dtype: Dtype): number {
  return dtype === "f16" ? 2 : 4;
}

/**
 * Plans the group attention of `groups`: work items, dispatches, real IO and FLOPs as the kernel
 * issues them, and the common stats (method-specific `stats` are merged in).
 */
export function planGroupAttentionV1(
  method: MethodName,
  input: PlanInput,
  groups: GroupSet,
  paper: PaperIo,
  stats: Record<string, number>,
): GroupPlanV1 {
  const { ix, shape, dtype, layout } = input;
  const d = shape.headDim;
  const gsize = shape.qHeads / shape.kvHeads;
  const keys = GROUP_KEYS;
  const e = elemBytes(dtype);

  let itemCount = 0;
  for (let g = 0; g < groups.count; g++) {
    const nq = groups.queryOffset[g + 1]! - groups.queryOffset[g]!;
    itemCount += Math.ceil((nq * gsize) / GROUP_ROWS);
  }
  const items = new Uint32Array(2 * itemCount);
  // Per KV head; multiplied by kvHeads at the end.
  let kvElems = 0, qElems = 0, maskWordsLoaded = 0, metaWords = 0, flops = 0, itemTokens = 0;
  let maxQueries = 0, maxTokens = 0, it = 0;
  for (let g = 0; g < groups.count; g++) {
    const nq = groups.queryOffset[g + 1]! - groups.queryOffset[g]!;
    const tokens = groups.tokens[g]!;
    const segs = groups.segOffset[g + 1]! - groups.segOffset[g]!;
    const tiles = Math.ceil(tokens / keys);
    const words = groups.maskWords[g]!;
    const lookup = Math.ceil(Math.log2(Math.max(1, segs))) + 2;
    maxQueries = Math.max(maxQueries, nq);
    maxTokens = Math.max(maxTokens, tokens);
    const rows = nq * gsize;
    for (let rs = 0; rs < rows; rs += GROUP_ROWS) {
      items[it++] = g;
      items[it++] = rs;
      const r = Math.min(GROUP_ROWS, rows - rs);
      const rowsRun = Math.ceil(r / GROUP_WARP_ROWS) * GROUP_WARP_ROWS;
      itemTokens += tokens;
      kvElems += 2 * tokens * d;
      qElems += tiles * r * d;
      if (words > 0) {
        const w0 = Math.floor(Math.floor(rs / gsize) / 32);
        const w1 = Math.min(Math.floor(Math.floor((rs + r - 1) / gsize) / 32), words - 1);
        maskWordsLoaded += (w1 - w0 + 1) * tokens;
      }
      // Header, item and group record; one query id per row; segment lookup per key.
      metaWords += 16 + r + tokens * lookup;
      // Scores over whole sub-tiles (padded keys included), PV over real keys rounded up to 4.
      flops += 2 * d * rowsRun * tiles * keys + 2 * d * rowsRun * Math.ceil(tokens / 4) * 4;
    }
  }
  const kvh = shape.kvHeads;
  const lists = reductionLists(ix.queryCount, groups.queries);
  const red = reductionIo(lists, shape);
  const partials = groups.queries.length;
  const nTree = treeTokens(ix);
  let pathTokens = 0;
  for (let q = 0; q < ix.queryCount; q++) pathTokens += ix.pathTokens[ix.queryNode[q]!]!;

  const workgroups = itemCount * kvh;
  const dispatches: DispatchInfo[] = [];
  if (workgroups > 0) {
    dispatches.push({
      kernel: "group-attention",
      workgroups: rowGrid(workgroups),
      workgroupSize: GROUP_WORKGROUP_SIZE,
    });
  }
  dispatches.push(reductionDispatch(ix.queryCount, shape));
  return {
    method,
    shape,
    dtype,
    queries: ix.queryCount,
    slots: layout.slots,
    dispatches,
    groups,
    items,
    lists,
    counts: {
      paper,
      real: realIo({
        kvBytes: kvElems * kvh * e,
        qBytes: qElems * kvh * e,
        maskBytes: maskWordsLoaded * kvh * 4,
        metadataBytes: metaWords * kvh * 4 + red.metadataBytes,
        partialBytes: partials * shape.qHeads * (d + 1) * 4 + red.partialReadBytes,
        logitsBytes: 0,
        outputBytes: red.outputBytes,
      }),
      flops: flops * kvh,
      usefulFlops: 4 * d * pathTokens * shape.qHeads,
    },
    stats: {
      groups: groups.count,
      rowTiles: itemCount,
      workgroups,
      partials,
      segments: groups.segSlot.length,
      maxQueriesPerGroup: maxQueries,
      maxTokensPerGroup: maxTokens,
      rowsPerTile: GROUP_ROWS,
      keysPerSubTile: keys,
      kvLoadsPerToken: nTree > 0 ? itemTokens / nTree : 0,
      ...stats,
    },
  };
}

/** Tile constants of one compiled kernel (none of them changes what the plan counts). */
export interface GroupKernelConfig {
  /** Model shape the kernel is compiled for. */
  shape: ModelShape;
  /** Storage dtype of Q, K and V. */
  dtype: Dtype;
  /** vec4 of the head dim per staged Q/K chunk. */
  chunkV: number;
  /** Keys per staged V slice (a divisor of {@linkcode GROUP_KEYS}). */
  vKeys: number;
}

/** Sizes (in vec4) of the two big workgroup arrays of a configuration. */
function groupArrays(c: Pick<GroupKernelConfig, "shape" | "chunkV" | "vKeys">): {
  kv: number;
  qp: number;
} {
  const dv = c.shape.headDim / 4;
  return {
    kv: Math.max(4 * c.chunkV * 8, c.vKeys * (dv + 1)),
    qp: Math.max(4 * c.chunkV * 16, GROUP_KEYS * 16),
  };
}

/** Workgroup memory bytes of a configuration (mirrors the declarations in the WGSL). */
export function groupWorkgroupBytes(
  c: Pick<GroupKernelConfig, "shape" | "chunkV" | "vKeys">,
): number {
  const { kv, qp } = groupArrays(c);
  // + red, m, alpha (176 vec4), slots, mask words and row offsets.
  return 16 * (kv + qp + 176) + 4 * (2 * GROUP_KEYS + 4 * GROUP_KEYS + GROUP_ROWS);
}

/**
 * The configuration with the fewest barriers (largest Q/K chunk, then largest V slice) that fits
 * the device's workgroup memory; throws {@linkcode GpuError} when none fits.
 */
export function groupKernelConfig(
  shape: ModelShape,
  dtype: Dtype,
  workgroupStorage: number,
): GroupKernelConfig {
  const dv = shape.headDim / 4;
  let need = Infinity;
  for (const vKeys of [32, 16, 8]) {
    for (const c of [16, 8, 4]) {
      const config = { shape, dtype, chunkV: Math.min(c, dv), vKeys };
      const bytes = groupWorkgroupBytes(config);
      if (bytes <= workgroupStorage) return config;
      need = Math.min(need, bytes);
    }
  }
  throw new GpuError(
    `Group attention with head dim ${shape.headDim} needs ${need} bytes of workgroup memory, more than the device's maxComputeWorkgroupStorageSize of ${workgroupStorage}`,
  );
}

/**
 * Loop iterations one invocation of the kernel runs for a group of `tokens` tokens in `segments`
 * segments (an upper bound: every loop counted, including those a compiler may unroll).
 */
export function groupLoopIterations(
  c: GroupKernelConfig,
  tokens: number,
  segments: number,
): number {
  const dv = c.shape.headDim / 4;
  const chunks = Math.ceil(dv / c.chunkV);
  const slices = GROUP_KEYS / c.vKeys;
  const wg = GROUP_WORKGROUP_SIZE;
  // Per sub-tile: the segment search; per Q/K chunk the two staging loops and the score loop; per
  // V slice the staging and PV loops; each loop also counts its exit test once.
  const perTile = 3 + Math.ceil(Math.log2(Math.max(1, segments))) +
    chunks * (4 + Math.ceil((16 * c.chunkV) / wg) + Math.ceil((8 * c.chunkV) / wg) + c.chunkV) +
    slices * (3 + Math.ceil((c.vKeys * dv) / wg) + c.vKeys / 4);
  return 8 + Math.ceil(tokens / GROUP_KEYS) * perTile;
}

/**
 * Mesa's llvmpipe (lavapipe) ends a shader invocation after this many loop iterations in all,
 * silently (`LP_MAX_TGSI_LOOP_ITERATIONS`, shared between every loop of the shader).
 */
export const LLVMPIPE_LOOP_LIMIT = 65535;

/** The WGSL source for a configuration (constants substituted into group_attention.wgsl). */
export function groupAttentionSource(c: GroupKernelConfig): string {
  const { shape } = c;
  const { kv, qp } = groupArrays(c);
  const values: Record<string, string> = {
    HEAD_DIM: `${shape.headDim}u`,
    Q_HEADS: `${shape.qHeads}u`,
    KV_HEADS: `${shape.kvHeads}u`,
    CHUNK_V: `${c.chunkV}u`,
    V_KEYS: `${c.vKeys}u`,
    KV_SIZE: `${kv}u`,
    QP_SIZE: `${qp}u`,
    SCALE: `${1 / Math.sqrt(shape.headDim)}`,
  };
  let src = groupWgsl;
  for (const [name, value] of Object.entries(values)) {
    const re = new RegExp(`^const ${name}: (u32|f32) = [^;]+;`, "m");
    if (!re.test(src)) throw new Error(`group_attention.wgsl lost its constant ${name}`);
    src = src.replace(re, `const ${name}: $1 = ${value};`);
  }
  if (c.dtype === "f16") {
    src = "enable f16;\n" + src.replace("alias elem4 = vec4<f32>;", "alias elem4 = vec4<f16>;");
  }
  return src;
}

/** Packs the groups and work items into the kernel's `meta` buffer (layout in the WGSL). */
export function packGroupMeta(groups: GroupSet, items: Uint32Array): Uint32Array {
  const header = 8;
  const groupsOff = header;
  const segsOff = groupsOff + 8 * groups.count;
  const queriesOff = segsOff + 2 * groups.segSlot.length;
  const itemsOff = queriesOff + groups.queries.length;
  const maskOff = itemsOff + items.length;
  const meta = new Uint32Array(maskOff + groups.mask.length);
  meta.set([groupsOff, segsOff, queriesOff, itemsOff, items.length / 2]);
  for (let g = 0; g < groups.count; g++) {
    const b = groupsOff + 8 * g;
    meta[b] = groups.tokens[g]!;
    meta[b + 1] = groups.segOffset[g]!;
    meta[b + 2] = groups.segOffset[g + 1]!;
    meta[b + 3] = groups.queryOffset[g]!;
    meta[b + 4] = groups.queryOffset[g + 1]! - groups.queryOffset[g]!;
    meta[b + 5] = groups.maskWords[g]!;
    meta[b + 6] = maskOff + groups.maskOffset[g]!;
  }
  for (let s = 0; s < groups.segSlot.length; s++) {
    meta[segsOff + 2 * s] = groups.segTokenStart[s]!;
    meta[segsOff + 2 * s + 1] = groups.segSlot[s]!;
  }
  meta.set(groups.queries, queriesOff);
  meta.set(items, itemsOff);
  meta.set(groups.mask, maskOff);
  return meta;
}

/** Throws {@linkcode GpuError} when a group is too long for llvmpipe's loop limit. */
function checkLoopLimit(plan: GroupPlanV1, config: GroupKernelConfig): void {
  const { groups } = plan;
  for (let g = 0; g < groups.count; g++) {
    if (groups.queryOffset[g + 1] === groups.queryOffset[g]) continue;
    const segments = groups.segOffset[g + 1]! - groups.segOffset[g]!;
    const n = groupLoopIterations(config, groups.tokens[g]!, segments);
    if (n > LLVMPIPE_LOOP_LIMIT) {
      throw new GpuError(
        `${plan.method}: a group of ${
          groups.tokens[g]
        } KV tokens needs about ${n} shader loop iterations, more than the ${LLVMPIPE_LOOP_LIMIT} after which Mesa's llvmpipe silently ends a shader; use a hardware GPU, or a method whose groups are bounded (deft-flatten, deft-node-chunk)`,
      );
    }
  }
}

/** Uploads a group plan and returns its pass: the stage-1 dispatch, then the reduction. */
export async function prepareGroupAttentionV1(
  gpu: Gpu,
  plan: GroupPlanV1,
  problem: GpuProblem,
): Promise<PreparedMethod> {
  const { shape, dtype } = plan;
  const config = groupKernelConfig(shape, dtype, gpu.limit("maxComputeWorkgroupStorageSize"));
  if (gpu.info.description.includes("llvmpipe")) checkLoopLimit(plan, config);
  const label = `group-attention-v1 ${shape.qHeads}/${shape.kvHeads}/${shape.headDim} ${dtype}`;
  const pipeline = await gpu.pipeline(label, groupAttentionSource(config));
  const partials = plan.groups.queries.length;
  const meta = gpu.buffer(`${plan.method} meta`, packGroupMeta(plan.groups, plan.items));
  const partialO = gpu.buffer(
    `${plan.method} partial o`,
    partials * shape.qHeads * shape.headDim * 4,
  );
  const partialLse = gpu.buffer(`${plan.method} partial lse`, partials * shape.qHeads * 4);
  const owned = [meta, partialO, partialLse];
  try {
    const bindGroup = gpu.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: [problem.q, problem.k, problem.v, meta, partialO, partialLse].map((
        buffer,
        binding,
      ) => ({ binding, resource: { buffer } })),
    });
    const reduction = await prepareReduction(
      gpu,
      plan.lists,
      shape,
      partialO,
      partialLse,
      problem.out,
    );
    const workgroups = (plan.items.length / 2) * shape.kvHeads;
    const grid = rowGrid(workgroups, gpu.limit("maxComputeWorkgroupsPerDimension"));
    return {
      encode(pass) {
        if (workgroups > 0) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(...grid);
        }
        reduction.encode(pass);
      },
      destroy() {
        reduction.destroy();
        for (const b of owned) b.destroy();
      },
    };
  } catch (e) {
    for (const b of owned) b.destroy();
    throw e;
  }
}

/** DeFT-Flatten on the frozen first kernel (same blocks and masks as `deftFlatten`). */
export const deftFlattenV1: AttentionMethod<GroupPlanV1> = {
  name: "deft-flatten",
  description: "DeFT-Flatten on the first group-attention kernel (frozen copy, for comparisons)",
  plan(input) {
    const { ix, layout, shape, dtype, options } = input;
    const blockSize = positiveOption("blockSize", options.blockSize);
    const { groups, maxMaskWords } = flattenBlocks(ix, layout, blockSize);
    const n = treeTokens(ix);
    return planGroupAttentionV1(
      "deft-flatten",
      input,
      groups,
      paperIo(shape, dtype, n, n, 0),
      { blocks: groups.count, blockSize, maskWordsPerToken: maxMaskWords },
    );
  },
  prepare: prepareGroupAttentionV1,
};

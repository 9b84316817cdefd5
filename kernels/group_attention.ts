/**
 * Group attention: the one stage-1 kernel behind deft-flatten, deft-node, deft-node-chunk and
 * cascade (DeFT paper, section 3.5, KV-guided grouping of section 3.1). A method only decides the
 * groups: each group is a list of KV segments (pool slot ranges), the queries that attend to them,
 * and optionally a KV-side bit mask (u32 words per token, bit i = the group's i-th query sees the
 * token). This module turns a {@linkcode GroupSet} into a plan (work items, dispatches, honest IO and
 * FLOP counts) and a prepared GPU pass: the stage-1 dispatch plus the shared gather reduction.
 *
 * Work decomposition: the rows of a group are its (query, q-head) pairs for one GQA group, so one KV
 * head serves `qHeads / kvHeads` rows per query. Rows are cut into tiles of {@linkcode GROUP_ROWS};
 * one workgroup per (group, row tile, KV head) streams the group's KV once. A group with more rows
 * than one tile is therefore read once per row tile (from L2 after the first); the plan reports
 * this as `kvLoadsPerToken`. Tiles instead of a loop inside one workgroup keep every SM busy on
 * groups with many queries, and need no per-row state for more rows than fit in registers.
 *
 * The kernel (`wgsl/group_attention.wgsl`): 128 threads; 32-key sub-tiles with an online softmax;
 * each thread holds 4 rows x 4 keys of scores and 4 rows x (d / 8) dims of output as named mat4x4
 * accumulators updated by outer-product fma from transposed f32 tiles in workgroup memory (f16 is
 * converted once when staged). A group with a mask carries as many u32 words per token as it has
 * queries / 32; a tile reads the (at most 2) words its rows need. Mesa's llvmpipe ends a shader
 * after 65535 loop iterations in all, so on that adapter `prepare` refuses groups long enough to
 * reach the limit instead of returning wrong numbers.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import { type Gpu, GpuError } from "./gpu.ts";
import {
  type DispatchInfo,
  type GpuProblem,
  type MethodName,
  type PaperIo,
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
import groupWgsl from "./wgsl/group_attention.wgsl" with { type: "text" };

/** Rows (query x q-head pairs) per row tile: one workgroup's rows. */
export const GROUP_ROWS = 64;
/** Rows per warp; a warp whose 16 rows are all padding skips its math. */
export const GROUP_WARP_ROWS = 16;
/** Threads per workgroup. */
export const GROUP_WORKGROUP_SIZE = 128;
/** Mask word value meaning "no mask" in {@linkcode GroupSet.maskWords}. */
const NO_MASK = 0;

/** Keys per KV sub-tile streamed through workgroup memory. */
export const GROUP_KEYS = 32;

/**
 * Attention groups in CSR form. Partial results are numbered by position in `queries`: partial
 * `queryOffset[g] + i` is the output of group g for its i-th query.
 */
export interface GroupSet {
  /** Number of groups. */
  readonly count: number;
  /** KV tokens of each group. */
  readonly tokens: Uint32Array;
  /** `[count + 1]`: segments of group g are `segOffset[g] .. segOffset[g+1]`. */
  readonly segOffset: Uint32Array;
  /** First token of each segment within its group (0 for a group's first segment). */
  readonly segTokenStart: Uint32Array;
  /** First KV pool slot of each segment. */
  readonly segSlot: Uint32Array;
  /** `[count + 1]`: queries of group g are `queries[queryOffset[g] .. queryOffset[g+1]]`. */
  readonly queryOffset: Uint32Array;
  /** Query ids of all groups. */
  readonly queries: Uint32Array;
  /** Mask words per token of each group (0: no mask, every query sees every token). */
  readonly maskWords: Uint32Array;
  /** First word of each masked group in `mask`, laid out `[word][token]`. */
  readonly maskOffset: Uint32Array;
  /** KV-side mask words of all masked groups. */
  readonly mask: Uint32Array;
}

/** A plan of a group-attention method: the groups, the work items and the reduction lists. */
export interface GroupPlan extends Plan {
  /** The groups the kernel runs. */
  readonly groups: GroupSet;
  /** `[item][2]`: group, first row of the row tile. */
  readonly items: Uint32Array;
  /** Partials of each query, for the reduction. */
  readonly lists: ReductionLists;
}

/**
 * Grows typed arrays while a planner emits groups; `build()` returns exact-size views. Planners that
 * know their sizes pass them as capacities so nothing is copied.
 */
export class GroupSetBuilder {
  #tokens: Uint32Array;
  #segOffset: Uint32Array;
  #segTokenStart: Uint32Array;
  #segSlot: Uint32Array;
  #queryOffset: Uint32Array;
  #queries: Uint32Array;
  #groups = 0;
  #segs = 0;
  #nq = 0;
  #open = 0;

  /** Creates a builder with initial capacities. */
  constructor(groups = 64, segments = 64, queries = 256) {
    this.#tokens = new Uint32Array(Math.max(1, groups));
    this.#segOffset = new Uint32Array(Math.max(1, groups) + 1);
    this.#queryOffset = new Uint32Array(Math.max(1, groups) + 1);
    this.#segTokenStart = new Uint32Array(Math.max(1, segments));
    this.#segSlot = new Uint32Array(Math.max(1, segments));
    this.#queries = new Uint32Array(Math.max(1, queries));
  }

  /** Groups emitted so far. */
  get count(): number {
    return this.#groups;
  }

  /** Appends a segment of `tokens` tokens starting at pool slot `slot` to the open group. */
  segment(slot: number, tokens: number): void {
    if (this.#segs === this.#segSlot.length) {
      this.#segSlot = grow(this.#segSlot, 2 * this.#segs);
      this.#segTokenStart = grow(this.#segTokenStart, 2 * this.#segs);
    }
    this.#segSlot[this.#segs] = slot;
    this.#segTokenStart[this.#segs++] = this.#open;
    this.#open += tokens;
  }

  /** Tokens in the open group. */
  get openTokens(): number {
    return this.#open;
  }

  /** Closes the open group with the queries `src[lo .. hi)`. */
  close(src: Uint32Array, lo: number, hi: number): void {
    const g = this.#groups;
    if (g === this.#tokens.length) {
      this.#tokens = grow(this.#tokens, 2 * g);
      this.#segOffset = grow(this.#segOffset, 2 * g + 1);
      this.#queryOffset = grow(this.#queryOffset, 2 * g + 1);
    }
    const n = hi - lo;
    if (this.#nq + n > this.#queries.length) {
      this.#queries = grow(this.#queries, Math.max(2 * this.#queries.length, this.#nq + n));
    }
    this.#queries.set(src.subarray(lo, hi), this.#nq);
    this.#nq += n;
    this.#tokens[g] = this.#open;
    this.#segOffset[g + 1] = this.#segs;
    this.#queryOffset[g + 1] = this.#nq;
    this.#groups = g + 1;
    this.#open = 0;
  }

  /**
   * Emits the pieces `(slots[i], tokens[i])`, `i < count`, concatenated and cut into groups of at
   * most `chunk` tokens, each with the queries `src[lo .. hi)`. The first piece may continue an
   * open group; the last group is always closed.
   */
  chunked(
    slots: ArrayLike<number>,
    tokens: ArrayLike<number>,
    count: number,
    chunk: number,
    src: Uint32Array,
    lo: number,
    hi: number,
  ): void {
    for (let i = 0; i < count; i++) {
      let slot = slots[i]!;
      let left = tokens[i]!;
      while (left > 0) {
        const take = Math.min(left, chunk - this.#open);
        this.segment(slot, take);
        slot += take;
        left -= take;
        if (this.#open === chunk) this.close(src, lo, hi);
      }
    }
    if (this.#open > 0) this.close(src, lo, hi);
  }

  /** The groups, with an optional mask (per-group words per token and offsets). */
  build(
    mask?: { words: Uint32Array; offset: Uint32Array; data: Uint32Array },
  ): GroupSet {
    const g = this.#groups;
    return {
      count: g,
      tokens: this.#tokens.subarray(0, g),
      segOffset: this.#segOffset.subarray(0, g + 1),
      segTokenStart: this.#segTokenStart.subarray(0, this.#segs),
      segSlot: this.#segSlot.subarray(0, this.#segs),
      queryOffset: this.#queryOffset.subarray(0, g + 1),
      queries: this.#queries.subarray(0, this.#nq),
      maskWords: mask?.words ?? new Uint32Array(g).fill(NO_MASK),
      maskOffset: mask?.offset ?? new Uint32Array(g),
      mask: mask?.data ?? new Uint32Array(0),
    };
  }
}

function grow(a: Uint32Array, length: number): Uint32Array {
  const b = new Uint32Array(length);
  b.set(a);
  return b;
}

/**
 * The queries below every node as ranges of one query order: queries sorted by the DFS position of
 * their node (stable). A subtree is a contiguous run of DFS positions, so the queries that see node
 * v (those in v's subtree) are `order[lo[v] .. hi[v])`, and the union over consecutive DFS nodes is
 * again one range, which is what makes flatten blocks cheap to plan.
 */
export interface QueryRanges {
  /** Query ids sorted by the DFS position of their node. */
  readonly order: Uint32Array;
  /** First entry of `order` below node v (by node position). */
  readonly lo: Uint32Array;
  /** One past the last entry of `order` below node v. */
  readonly hi: Uint32Array;
}

/** Computes {@linkcode QueryRanges} in O(nodes + queries). */
export function queryRanges(ix: IndexedTree): QueryRanges {
  const n = ix.nodeCount;
  const order = ix.dfsOrder;
  const pos = new Uint32Array(n);
  for (let i = 0; i < n; i++) pos[order[i]!] = i;
  const size = new Uint32Array(n).fill(1);
  for (let i = n - 1; i > 0; i--) {
    const v = order[i]!;
    size[ix.parent[v]!]! += size[v]!;
  }
  const nq = ix.queryCount;
  const cum = new Uint32Array(n + 1);
  for (let q = 0; q < nq; q++) cum[pos[ix.queryNode[q]!]! + 1]!++;
  for (let i = 0; i < n; i++) cum[i + 1]! += cum[i]!;
  const fill = cum.slice(0, n);
  const sorted = new Uint32Array(nq);
  for (let q = 0; q < nq; q++) sorted[fill[pos[ix.queryNode[q]!]!]!++] = q;
  const lo = new Uint32Array(n);
  const hi = new Uint32Array(n);
  for (let v = 0; v < n; v++) {
    lo[v] = cum[pos[v]!]!;
    hi[v] = cum[pos[v]! + size[v]!]!;
  }
  return { order: sorted, lo, hi };
}

/** Bytes per stored Q/K/V element. */
function elemBytes(dtype: Dtype): number {
  return dtype === "f16" ? 2 : 4;
}

/**
 * Plans the group attention of `groups`: work items, dispatches, real IO and FLOPs as the kernel
 * issues them, and the common stats (method-specific `stats` are merged in).
 */
export function planGroupAttention(
  method: MethodName,
  input: PlanInput,
  groups: GroupSet,
  paper: PaperIo,
  stats: Record<string, number>,
): GroupPlan {
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
function checkLoopLimit(plan: GroupPlan, config: GroupKernelConfig): void {
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
export async function prepareGroupAttention(
  gpu: Gpu,
  plan: GroupPlan,
  problem: GpuProblem,
): Promise<PreparedMethod> {
  const { shape, dtype } = plan;
  const config = groupKernelConfig(shape, dtype, gpu.limit("maxComputeWorkgroupStorageSize"));
  if (gpu.info.description.includes("llvmpipe")) checkLoopLimit(plan, config);
  const label = `group-attention ${shape.qHeads}/${shape.kvHeads}/${shape.headDim} ${dtype}`;
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

/** Returns `value` if it is a positive integer; throws `RangeError` naming the option otherwise. */
export function positiveOption(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** N_tree: tokens in the tree. */
export function treeTokens(ix: IndexedTree): number {
  let n = 0;
  for (let v = 0; v < ix.nodeCount; v++) n += ix.tokens(v);
  return n;
}

/**
 * The KV slots `query` attends through `groups` (mask applied), in group order: the CPU meaning of a
 * group set, for tests and reports. A correct plan gives every slot of the query's path once.
 */
export function attendedSlots(groups: GroupSet, query: number): number[] {
  const out: number[] = [];
  for (let g = 0; g < groups.count; g++) {
    const q0 = groups.queryOffset[g]!;
    const tokens = groups.tokens[g]!;
    for (let i = q0; i < groups.queryOffset[g + 1]!; i++) {
      if (groups.queries[i] !== query) continue;
      const local = i - q0;
      const words = groups.maskWords[g]!;
      const s1 = groups.segOffset[g + 1]!;
      for (let s = groups.segOffset[g]!; s < s1; s++) {
        const t0 = groups.segTokenStart[s]!;
        const t1 = s + 1 < s1 ? groups.segTokenStart[s + 1]! : tokens;
        for (let t = t0; t < t1; t++) {
          const seen = words === 0 ||
            ((groups.mask[groups.maskOffset[g]! + (local >>> 5) * tokens + t]! >>> (local & 31)) &
                1) === 1;
          if (seen) out.push(groups.segSlot[s]! + t - t0);
        }
      }
    }
  }
  return out;
}

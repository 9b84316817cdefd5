/**
 * Group attention: the one stage-1 kernel behind deft-flatten, deft-node, deft-node-chunk and
 * cascade (DeFT paper, section 3.5, KV-guided grouping of section 3.1). A method only decides the
 * groups: each group is a list of KV segments (pool slot ranges), the queries that attend to them,
 * and optionally a KV-side bit mask (u32 words per token, bit i = the group's i-th query sees the
 * token). This module turns a {@linkcode GroupSet} into a plan (work items, dispatches, honest IO and
 * FLOP counts) and a prepared GPU pass: the stage-1 dispatch plus the shared gather reduction.
 *
 * Work decomposition: the rows of a group are its (query, q-head) pairs for one GQA group, so one KV
 * head serves `qHeads / kvHeads` rows per query. Rows are cut into tiles of
 * {@linkcode GroupKernelOptions.rows} (64 by default); one workgroup per (group, row tile, KV head)
 * streams the group's KV once. A group with more rows than one tile is therefore read once per row
 * tile (from L2 after the first); the plan reports this as `kvLoadsPerToken`. Tiles instead of a
 * loop inside one workgroup keep every SM busy on groups with many queries.
 *
 * The kernel (`wgsl/group_attention.wgsl`, tile constants chosen by {@linkcode groupKernel} at plan
 * time and {@linkcode groupKernelConfig} at prepare time): by default 128 threads, 64-row tiles,
 * 32-key sub-tiles with an online softmax; the row tile's Q stays in workgroup memory for the whole
 * KV loop (as f16 when Q is stored as f16, converted at use); K and V are loaded into registers one
 * stage ahead of the math (software pipelining) and staged transposed in f32; each thread holds 4
 * rows x 4 keys of scores and 4 rows x (d / 8) dims of output as named mat4x4 accumulators updated
 * by outer-product fma. Every token's pool slot is in the metadata, so no per-key segment search
 * stands between a sub-tile and its loads. A group with a mask carries as many u32 words per token
 * as it has queries / 32; a tile reads the (at most MAXW) words its rows need. Mesa's llvmpipe ends
 * a shader after 65535 loop iterations in all, so on that adapter `prepare` refuses groups long
 * enough to reach the limit instead of returning wrong numbers.
 *
 * Variants (threads, rows, keys, Q residency) are the `fma` option group, and the matrix kernel's
 * tile the `mma` group (the methods' kernel variants, `group_variants.ts`), so that the command
 * line, `tune` and tools can pick and time them.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import { type Gpu, GpuError, PLAN_STORAGE_BUDGET } from "./gpu.ts";
import type {
  DispatchInfo,
  GpuProblem,
  MethodName,
  PaperIo,
  Plan,
  PlanInput,
  PreparedMethod,
  RealIo,
} from "./method.ts";
import { dramFloorBytes, realIo } from "./plan_counts.ts";
import {
  type PartialTarget,
  prepareReduction,
  reductionDispatch,
  reductionIo,
  type ReductionLists,
  reductionLists,
  rowGrid,
} from "./reduce.ts";
import { specializeWgsl } from "./wgsl.ts";
import groupWgsl from "./wgsl/group_attention.wgsl" with { type: "text" };
import {
  type MmaKernel,
  mmaKernel,
  mmaLoopIterations,
  mmaPipeline,
  mmaVariantName,
  parseParts,
} from "./group_attention_mma.ts";

/** Rows (query x q-head pairs) per row tile of the default kernel: one workgroup's rows. */
export const GROUP_ROWS = 64;
/** Mask word value meaning "no mask" in {@linkcode GroupSet.maskWords}. */
const NO_MASK = 0;

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
 * Where the kernel keeps a row tile's Q: `"f16"`/`"f32"` in workgroup memory for the whole KV loop
 * (f16 needs f16 storage), `"none"` re-staged for every sub-tile, `"auto"` resident in the storage
 * dtype when that fits {@linkcode PLAN_STORAGE_BUDGET}, else re-staged.
 */
export type QResidency = "auto" | "f16" | "f32" | "none";

/** Tile choices of the group-attention kernel (`options.fma`; {@linkcode defaultGroupKernel} by default). */
export interface GroupKernelOptions {
  /** Threads per workgroup: 64, 128 or 256. */
  threads: number;
  /**
   * Rows per tile: `4 x threads / lanes` for 4, 8, 16 or 32 lanes per 4-row group (128 threads:
   * 128, 64, 32 or 16 rows).
   */
  rows: number;
  /** Keys per sub-tile: 4 or 8 keys per lane (`4 x lanes` or `8 x lanes`). */
  keys: number;
  /** Q residency. */
  qResident: QResidency;
  /**
   * Workgroup memory the kernel may declare, in bytes (0: the device's limit). The staging is
   * sized for the fewest barriers within it, so a smaller budget buys workgroups per SM with
   * barriers (docs/performance.md, change 21).
   */
  storage: number;
  /**
   * Parts of the kernel knocked out, for `tools/profile_mma.ts --family fma` only: the kernel then
   * computes a wrong result, and the time it saves is what the part costs (a profile by
   * subtraction). A `+`-separated list of {@linkcode FmaAblation}s; never set by a method's
   * variants.
   */
  ablate?: string;
  /**
   * 1: K^T, V and P are staged in workgroup memory in f16 (and a re-staged Q chunk too), half the
   * bytes, so that a sub-tile fits in fewer chunks and slices (docs/performance.md, change 25);
   * f16 storage only, and its default there. 0: f32 (the default for f32 storage).
   */
  kvHalf?: number;
}

/**
 * A part of the FMA kernel that {@linkcode GroupKernelOptions.ablate} can knock out:
 * - `kv-load`: the K and V loads from the KV pool (each reads one of two cached vec4 instead);
 * - `stage`: the transposing stores of K, V and Q into workgroup memory (the loaded values are still
 *   compared, so their loads stay);
 * - `scores`: S = Q K^T (its outer products and their workgroup reads of Q and K);
 * - `softmax`: the exchange of the row maxima between a row group's lanes and the exponentials;
 * - `pv`: O += P V (its outer products and their workgroup reads of V);
 * - `loop`: the whole sub-tile loop (what is left is a workgroup's fixed cost and the launch).
 */
export type FmaAblation = "kv-load" | "stage" | "scores" | "softmax" | "pv" | "loop";

/** Every {@linkcode FmaAblation}. */
export const FMA_ABLATIONS: readonly FmaAblation[] = [
  "kv-load",
  "stage",
  "scores",
  "softmax",
  "pv",
  "loop",
];

/** A store function's header, replaced by a body that only compares the values (the old body is renamed). */
const knockedStore = (header: string, keep: string): readonly [string, string] => [
  `${header} {\n`,
  `${header} {\n  ${keep}  // knocked out\n}\n${header.replace("(", "_unused(")} {\n`,
];

/**
 * What each {@linkcode FmaAblation} replaces in the kernel's source: exact text that occurs once,
 * so that a knock-out can never silently time the full kernel.
 */
const FMA_KNOCKOUTS: Readonly<Record<FmaAblation, readonly (readonly [string, string])[]>> = {
  "kv-load": [[
    "  let at = (u32(max(slot, 0)) * KV_HEADS + kvh) * DV + v;\n",
    "  let at = ((u32(max(slot, 0)) * KV_HEADS + kvh) * DV + v) & 1u;  // knocked out: two cached vec4\n",
  ]],
  stage: [
    knockedStore(
      "fn store_kq(r: Quad, e: u32)",
      "if (all(r.a == r.b)) { kv_sh[e % KV_SIZE] = kvelem4(); }",
    ),
    knockedStore(
      "fn store_qq(r: Quad, e: u32, span: u32)",
      "if (all(r.a == r.b)) { q_sh[e % Q_SIZE] = qelem4(); }",
    ),
    knockedStore(
      "fn store_v(x: elem4, e: u32)",
      "if (all(x == elem4())) { kv_sh[e % KV_SIZE] = kvelem4(); }",
    ),
  ],
  scores: [[
    `  return outer(outer(outer(outer(s, q0, kv_at(at)), q1, kv_at(at + KQ)),
                     q2, kv_at(at + 2u * KQ)), q3, kv_at(at + 3u * KQ));`,
    "  return s;  // knocked out",
  ]],
  softmax: [
    [
      "      for (var i = 1u; i < L; i++) { mt = max(mt, red_sh[rg * L + i]); }\n",
      "      // knocked out: the other lanes' maxima\n",
    ],
    [
      "  return select(vec4<f32>(0.0), exp(s - m), s > vec4<f32>(NEG));",
      "  return select(vec4<f32>(0.0), s - m, s > vec4<f32>(NEG));  // knocked out: exp",
    ],
  ],
  pv: [[
    `  return outer(outer(outer(outer(o, p0, kv_at(at)), p1, kv_at(at + V_STRIDE)),
                     p2, kv_at(at + 2u * V_STRIDE)), p3, kv_at(at + 3u * V_STRIDE));`,
    "  return o;  // knocked out",
  ]],
  loop: [[
    "  let tiles = (gr.tokens + KEYS - 1u) / KEYS;\n",
    "  let tiles = 0u * gr.tokens;  // knocked out\n",
  ]],
};

/** `source` with `parts` knocked out ({@linkcode FMA_KNOCKOUTS}); throws if a text is not there once. */
export function knockOutFma(source: string, parts: readonly FmaAblation[]): string {
  let out = source;
  for (const part of parts) {
    for (const [from, to] of FMA_KNOCKOUTS[part]) {
      const at = out.indexOf(from);
      if (at < 0 || out.indexOf(from, at + 1) >= 0) {
        throw new Error(`FMA knock-out ${part}: its text is not in the kernel exactly once`);
      }
      out = out.slice(0, at) + to + out.slice(at + from.length);
    }
  }
  return out;
}

/**
 * The default kernel for f32 storage: 256 threads (16 lanes per 4-row group), 64-row tiles, 64-key
 * sub-tiles, Q re-staged per sub-tile, f32 staging. Chosen by `tools/perf_group.ts` on an NVIDIA
 * H200 (f16 Llama-3-8B, five paper-like trees): 1.43x the first kernel in geometric mean, where
 * keeping Q resident in workgroup memory (fewer workgroups per SM) was no faster than the first
 * kernel. f16 storage starts from {@linkcode defaultGroupKernel}.
 */
export const DEFAULT_GROUP_KERNEL: Readonly<GroupKernelOptions> = {
  threads: 256,
  rows: GROUP_ROWS,
  keys: 64,
  qResident: "none",
  storage: 0,
};

/**
 * The default kernel for f16 storage: K, V and P staged in f16 (docs/performance.md change 25),
 * 128 threads, 64 rows, 32-key sub-tiles and Q re-staged, 23.5 KiB, so that two workgroups share an
 * NVIDIA SM's 48 KiB (change 26: 1.08x the one-per-SM 64-key tile on the H200's Deno runtime).
 * `tune` measures it against four other tiles per adapter (change 28: on the H200 it picks the
 * 64-key tile under a 24 KiB budget, 1.12x this one).
 */
export const DEFAULT_GROUP_KERNEL_F16: Readonly<GroupKernelOptions> = {
  threads: 128,
  rows: GROUP_ROWS,
  keys: 32,
  qResident: "none",
  storage: 0,
  kvHalf: 1,
};

/** The default kernel for a storage dtype: {@linkcode DEFAULT_GROUP_KERNEL_F16} or {@linkcode DEFAULT_GROUP_KERNEL}. */
export function defaultGroupKernel(dtype: Dtype): Readonly<GroupKernelOptions> {
  return dtype === "f16" ? DEFAULT_GROUP_KERNEL_F16 : DEFAULT_GROUP_KERNEL;
}

/**
 * Workgroup memory a plan assumes when it decides Q residency (`"auto"`); `prepare` picks the K
 * chunk and V slice sizes for the real device.
 */
export { PLAN_STORAGE_BUDGET };

/** The kernel a plan is made for: the tile geometry and where Q lives (fixed by the plan). */
export interface GroupKernel {
  /** Threads per workgroup. */
  readonly threads: number;
  /** Rows per tile. */
  readonly rows: number;
  /** Keys per sub-tile. */
  readonly keys: number;
  /** Type of the resident Q in workgroup memory, or null: Q re-staged for every sub-tile. */
  readonly qType: Dtype | null;
  /** Workgroup memory the kernel may declare, bytes (0: the device's limit). */
  readonly storage: number;
  /** Parts knocked out (profiling only, see {@linkcode GroupKernelOptions.ablate}). */
  readonly ablate?: readonly FmaAblation[];
  /** K^T, V and P staged in f16 ({@linkcode GroupKernelOptions.kvHalf}). */
  readonly kvHalf?: boolean;
}

/** A plan of a group-attention method: the groups, the work items and the reduction lists. */
export interface GroupPlan extends Plan {
  /** The groups the kernel runs. */
  readonly groups: GroupSet;
  /** `[item][2]`: group, first row of the row tile. */
  readonly items: Uint32Array;
  /** Partials of each query, for the reduction. */
  readonly lists: ReductionLists;
  /** The FMA kernel the items and counts are for (when {@linkcode GroupPlan.mma} is null). */
  readonly kernel: GroupKernel;
  /** The matrix kernel the items and counts are for, or null: the FMA kernel. */
  readonly mma: MmaKernel | null;
}

/** Lanes per 4-row group and the derived per-lane shapes of a geometry. */
interface Geometry {
  /** Lanes per row group. */
  lanes: number;
  /** Rows of one warp of 32 threads (a warp whose rows are all padding skips the math). */
  rowsPerWarp: number;
  /** Mask words one row tile can span. */
  maskWords: number;
}

/** Largest number of 32-query mask words a tile of `rows` rows starting at a multiple of `rows` spans. */
export function tileMaskWords(rows: number, group: number): number {
  let most = 1;
  // floor(k rows / group) mod 32 repeats with a period dividing 32 x group.
  for (let k = 0; k < 32 * group; k++) {
    const a = Math.floor((k * rows) / group);
    const b = Math.floor((k * rows + rows - 1) / group);
    most = Math.max(most, Math.floor(b / 32) - Math.floor(a / 32) + 1);
  }
  return most;
}

/** Checks a geometry; throws `RangeError` naming the option that does not fit. */
function geometry(shape: ModelShape, threads: number, rows: number, keys: number): Geometry {
  if (![64, 128, 256].includes(threads)) {
    throw new RangeError(`Group kernel threads must be 64, 128 or 256, got ${threads}`);
  }
  const lanes = (4 * threads) / rows;
  if (![4, 8, 16, 32].includes(lanes)) {
    throw new RangeError(
      `Group kernel rows must be 4 x threads / lanes for 4, 8, 16 or 32 lanes per 4-row group (${threads} threads: ${
        [4, 8, 16, 32].map((l) => (4 * threads) / l).join(", ")
      }), got ${rows}`,
    );
  }
  if (keys !== 4 * lanes && keys !== 8 * lanes) {
    throw new RangeError(
      `Group kernel keys must be ${4 * lanes} or ${
        8 * lanes
      } with ${threads} threads and ${rows} rows, got ${keys}`,
    );
  }
  const dv = shape.headDim / 4;
  if (Math.ceil(dv / lanes) > 8) {
    throw new RangeError(
      `Head dim ${shape.headDim} needs more than 8 vec4 of output per lane with ${threads} threads and ${rows} rows; use more threads or fewer rows`,
    );
  }
  const maskWords = tileMaskWords(rows, shape.qHeads / shape.kvHeads);
  if ((1 + maskWords) * keys > 2 * threads) {
    throw new RangeError(
      `Group kernel with ${threads} threads, ${rows} rows and ${keys} keys cannot load its key table`,
    );
  }
  return { lanes, rowsPerWarp: 128 / lanes, maskWords };
}

/** The workgroup memory a kernel with storage budget `storage` (0: none) may use under `limit`. */
function storageLimit(storage: number, limit: number): number {
  return storage > 0 ? Math.min(storage, limit) : limit;
}

/**
 * The kernel a plan uses for `options` (missing fields from {@linkcode defaultGroupKernel}):
 * checks the geometry (`RangeError`) and decides Q residency.
 */
export function groupKernel(
  shape: ModelShape,
  dtype: Dtype,
  options: Partial<GroupKernelOptions> = {},
): GroupKernel {
  const o = { ...defaultGroupKernel(dtype), ...options };
  geometry(shape, o.threads, o.rows, o.keys);
  if (!Number.isSafeInteger(o.storage) || o.storage < 0) {
    throw new RangeError(
      `Group kernel storage must be a whole number of bytes (0: the device's limit), got ${o.storage}`,
    );
  }
  if (o.kvHalf !== undefined && o.kvHalf !== 0 && o.kvHalf !== 1) {
    throw new RangeError(`Group kernel kvHalf must be 0 or 1, got ${o.kvHalf}`);
  }
  if (o.kvHalf === 1 && dtype !== "f16") {
    throw new RangeError(`Group kernel kvHalf (f16 staging) needs f16 storage, got ${dtype}`);
  }
  const base = {
    threads: o.threads,
    rows: o.rows,
    keys: o.keys,
    storage: o.storage,
    ...(o.ablate ? { ablate: parseParts(o.ablate, FMA_ABLATIONS, "fma") } : {}),
    ...(o.kvHalf === 1 ? { kvHalf: true } : {}),
  };
  const budget = storageLimit(o.storage, PLAN_STORAGE_BUDGET);
  switch (o.qResident) {
    case "none":
      return { ...base, qType: null };
    case "f32":
      return { ...base, qType: "f32" };
    case "f16":
      if (dtype !== "f16") {
        throw new RangeError(`Group kernel qResident "f16" needs f16 storage, got ${dtype}`);
      }
      return { ...base, qType: "f16" };
    case "auto": {
      const k = { ...base, qType: dtype };
      return fittingConfig(shape, dtype, k, budget) ? k : { ...base, qType: null };
    }
    default:
      throw new RangeError(
        `Group kernel qResident must be "auto", "f16", "f32" or "none", got ${
          JSON.stringify(o.qResident)
        }`,
      );
  }
}

/** One compiled kernel: the plan's kernel plus the staging sizes chosen for a device. */
export interface GroupKernelConfig extends GroupKernel {
  /** Model shape the kernel is compiled for. */
  readonly shape: ModelShape;
  /** Storage dtype of Q, K and V. */
  readonly dtype: Dtype;
  /** vec4 of the head dim per staged K (and non-resident Q) chunk. */
  readonly chunkV: number;
  /** Keys per staged V slice (a divisor of `keys`, a multiple of 4). */
  readonly vKeys: number;
  /** Mask words one row tile can span. */
  readonly maskWords: number;
}

/** Sizes in vec4 of the Q and the shared K/V workgroup arrays. */
function groupArrays(c: GroupKernelConfig): { q: number; kv: number } {
  const dv = c.shape.headDim / 4;
  const rg = c.rows / 4;
  return {
    q: c.qType ? c.shape.headDim * rg : 4 * c.chunkV * rg,
    kv: Math.max(4 * c.chunkV * (c.keys / 4), c.vKeys * (dv + 1)),
  };
}

/** Workgroup memory bytes of a configuration (mirrors the declarations in the WGSL). */
export function groupWorkgroupBytes(c: GroupKernelConfig): number {
  const { q, kv } = groupArrays(c);
  const r16 = (b: number) => Math.ceil(b / 16) * 16;
  const half = c.kvHalf === true;
  const kvBytes = half ? 8 : 16;
  return r16(q * (c.qType === "f16" || (half && c.qType === null) ? 8 : 16)) +
    r16(kvBytes * kv) + r16(kvBytes * c.keys * (c.rows / 4)) + 16 * c.threads +
    r16(8 * c.keys) + r16(8 * c.maskWords * c.keys) + r16(4 * c.rows);
}

/** True when every thread stages at most the registers the WGSL names (2 Q/K quads, 8 V vec4). */
function stagingFits(c: GroupKernelConfig): boolean {
  const dv = c.shape.headDim / 4;
  const per = (n: number) => Math.ceil(n / c.threads);
  return per((c.keys / 4) * c.chunkV) <= 2 &&
    (c.qType !== null || per((c.rows / 4) * c.chunkV) <= 2) &&
    per(c.vKeys * dv) <= 8;
}

/** The fewest-stage staging (K chunks + V slices) of `kernel` that fits `storage`, or null. */
function fittingConfig(
  shape: ModelShape,
  dtype: Dtype,
  kernel: GroupKernel,
  storage: number,
): GroupKernelConfig | null {
  const { maskWords } = geometry(shape, kernel.threads, kernel.rows, kernel.keys);
  const dv = shape.headDim / 4;
  const chunks = [...new Set([dv, 32, 16, 8, 4, 2, 1].filter((c) => c <= dv))];
  const slices = [1, 2, 4, 8].map((s) => kernel.keys / s).filter((v) => v >= 4 && v % 4 === 0);
  let best: GroupKernelConfig | null = null;
  let bestStages = Infinity;
  for (const chunkV of chunks) {
    for (const vKeys of slices) {
      const c: GroupKernelConfig = { ...kernel, shape, dtype, chunkV, vKeys, maskWords };
      if (!stagingFits(c) || groupWorkgroupBytes(c) > storage) continue;
      const stages = Math.ceil(dv / chunkV) + kernel.keys / vKeys;
      if (stages < bestStages) {
        best = c;
        bestStages = stages;
      }
    }
  }
  return best;
}

/**
 * The configuration of `kernel` with the fewest barriers (fewest K chunks plus V slices) that fits
 * the device's workgroup memory. When a resident Q does not fit (a device with less than
 * {@linkcode PLAN_STORAGE_BUDGET}, or an explicit residency), Q is re-staged instead (the plan then
 * undercounts Q loads). Throws {@linkcode GpuError} when nothing fits.
 */
export function groupKernelConfig(
  shape: ModelShape,
  dtype: Dtype,
  kernel: GroupKernel,
  workgroupStorage: number,
): GroupKernelConfig {
  const storage = storageLimit(kernel.storage, workgroupStorage);
  const c = fittingConfig(shape, dtype, kernel, storage) ??
    (kernel.qType ? fittingConfig(shape, dtype, { ...kernel, qType: null }, storage) : null);
  if (c) return c;
  throw new GpuError(
    `Group attention with head dim ${shape.headDim}, ${kernel.threads} threads, ${kernel.rows} rows and ${kernel.keys} keys needs more workgroup memory than ${
      storage < workgroupStorage
        ? `its storage budget of ${storage}`
        : `the device's maxComputeWorkgroupStorageSize of ${workgroupStorage}`
    }`,
  );
}

/** Work items, dispatches, real IO, FLOPs and the common stats of `groups` on `kernel`. */
function tileGroups(
  input: PlanInput,
  groups: GroupSet,
  kernel: GroupKernel | MmaKernel,
  lists: ReductionLists,
): {
  items: Uint32Array;
  dispatches: DispatchInfo[];
  real: RealIo;
  flops: number;
  stats: Record<string, number>;
} {
  const { ix, shape, dtype } = input;
  const d = shape.headDim;
  const gsize = shape.qHeads / shape.kvHeads;
  const { keys, rows: tileRows } = kernel;
  const mma = "config" in kernel ? kernel : null;
  const fma = "qType" in kernel ? kernel : null;
  // Rows the math runs over: whole warps (FMA) or whole row blocks of M rows (matrix units).
  const rowsPerWarp = mma
    ? mma.config.M
    : geometry(shape, kernel.threads, tileRows, keys).rowsPerWarp;
  const e = elemBytes(dtype);

  let itemCount = 0;
  for (let g = 0; g < groups.count; g++) {
    const nq = groups.queryOffset[g + 1]! - groups.queryOffset[g]!;
    itemCount += Math.ceil((nq * gsize) / tileRows);
  }
  const items = new Uint32Array(2 * itemCount);
  // Per KV head; multiplied by kvHeads at the end.
  let kvElems = 0, qElems = 0, maskWordsLoaded = 0, metaWords = 0, flops = 0, itemTokens = 0;
  let maxQueries = 0, maxTokens = 0, it = 0;
  for (let g = 0; g < groups.count; g++) {
    const nq = groups.queryOffset[g + 1]! - groups.queryOffset[g]!;
    const tokens = groups.tokens[g]!;
    const tiles = Math.ceil(tokens / keys);
    const words = groups.maskWords[g]!;
    maxQueries = Math.max(maxQueries, nq);
    maxTokens = Math.max(maxTokens, tokens);
    const rows = nq * gsize;
    for (let rs = 0; rs < rows; rs += tileRows) {
      items[it++] = g;
      items[it++] = rs;
      const r = Math.min(tileRows, rows - rs);
      const rowsRun = Math.ceil(r / rowsPerWarp) * rowsPerWarp;
      itemTokens += tokens;
      kvElems += 2 * tokens * d;
      // A resident Q (and the matrix kernel's) is loaded once per tile, a re-staged one once per
      // sub-tile.
      qElems += (!fma || fma.qType ? 1 : tiles) * r * d;
      if (words > 0) {
        const w0 = Math.floor(Math.floor(rs / gsize) / 32);
        const w1 = Math.min(Math.floor(Math.floor((rs + r - 1) / gsize) / 32), words - 1);
        maskWordsLoaded += (w1 - w0 + 1) * tokens;
      }
      // Item count, queries offset and the item record; one query id per row; one slot per key.
      metaWords += 9 + r + tokens;
      // Scores over whole sub-tiles (padded keys included); PV over real keys rounded up to 4
      // (FMA) or over whole sub-tiles (matrix units).
      flops += 2 * d * rowsRun * tiles * keys +
        2 * d * rowsRun * (mma ? tiles * keys : Math.ceil(tokens / 4) * 4);
    }
  }
  const kvh = shape.kvHeads;
  const red = reductionIo(lists, shape);
  const partials = groups.queries.length;
  const nTree = ix.treeTokens;
  const workgroups = itemCount * kvh;
  const dispatches: DispatchInfo[] = [];
  if (workgroups > 0) {
    dispatches.push({
      kernel: "group-attention",
      workgroups: rowGrid(workgroups),
      workgroupSize: kernel.threads,
    });
  }
  dispatches.push(reductionDispatch(ix.queryCount, shape));
  return {
    items,
    dispatches,
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
    stats: {
      groups: groups.count,
      rowTiles: itemCount,
      workgroups,
      partials,
      segments: groups.segSlot.length,
      maxQueriesPerGroup: maxQueries,
      maxTokensPerGroup: maxTokens,
      threads: kernel.threads,
      rowsPerTile: tileRows,
      keysPerSubTile: keys,
      residentQBits: mma || fma?.qType === "f16" ? 16 : fma?.qType === "f32" ? 32 : 0,
      matrixUnits: mma ? 1 : 0,
      kvLoadsPerToken: nTree > 0 ? itemTokens / nTree : 0,
    },
  };
}

/**
 * Plans the group attention of `groups`: work items, dispatches, real IO and FLOPs as the kernel
 * issues them, and the common stats (method-specific `stats` are merged in). The FMA kernel's tile
 * is `options.fma` (missing fields from {@linkcode DEFAULT_GROUP_KERNEL}), the matrix kernel's
 * `options.mma`.
 */
export function planGroupAttention(
  method: MethodName,
  input: PlanInput,
  groups: GroupSet,
  paper: PaperIo,
  stats: Record<string, number>,
): GroupPlan {
  const { ix, shape, dtype, layout } = input;
  const k = groupKernel(shape, dtype, input.options.fma);
  const mma = useMatrixUnits(input)
    ? rowsForGroups(input, groups, mmaKernel(shape, dtype, input.caps, input.options.mma))
    : null;
  const lists = reductionLists(ix.queryCount, groups.queries);
  const t = tileGroups(input, groups, mma ?? k, lists);
  return {
    method,
    shape,
    dtype,
    queries: ix.queryCount,
    slots: layout.slots,
    dispatches: t.dispatches,
    groups,
    items: t.items,
    lists,
    kernel: k,
    mma,
    kernelVariant: mma ? mmaVariantName(mma) : fmaVariantName(k),
    counts: {
      paper,
      real: t.real,
      dramBytes: dramFloorBytes(input),
      flops: t.flops,
      usefulFlops: 4 * shape.headDim * ix.sumPathTokens * shape.qHeads,
    },
    stats: { ...t.stats, ...stats },
  };
}

/** The fewest rows {@linkcode rowsForGroups} halves a matrix tile to. */
export const MMA_MIN_ROWS = 32;

/**
 * {@linkcode rowsForGroups} halves a tile while the groups need fewer than this many times as many
 * row tiles at half the rows (weighted by their tokens). On an H200 a 64-row tile costs about 1.46x
 * a 32-row one per sub-tile, and an SM holds 3 of them against 4, so halving pays below about
 * 1.95x; 1.75 puts the six trees measured (docs/performance.md, change 13) on the side they
 * measured.
 */
export const MMA_HALVE_RATIO = 1.75;

/**
 * The matrix tile's rows are a maximum: halved (down to {@linkcode MMA_MIN_ROWS}) while the groups'
 * row tiles at half the rows, weighted by tokens, number fewer than {@linkcode MMA_HALVE_RATIO}
 * times those at the full rows. A block of a 4-query path (16 rows on Llama-3-8B) leaves 3 of a
 * 64-row tile's 4 subgroups idle: on an H200, 32-row tiles ran sharing-4 1.56x faster (run 17).
 * `options.mma.fit` 0 keeps the rows as given.
 */
export function rowsForGroups(input: PlanInput, groups: GroupSet, kernel: MmaKernel): MmaKernel {
  if (input.options.mma?.fit === 0) return kernel;
  const gsize = input.shape.qHeads / input.shape.kvHeads;
  const tiles = (rows: number) => {
    let n = 0;
    for (let g = 0; g < groups.count; g++) {
      const r = (groups.queryOffset[g + 1]! - groups.queryOffset[g]!) * gsize;
      n += Math.ceil(r / rows) * groups.tokens[g]!;
    }
    return n;
  };
  let k = kernel;
  while (k.rows / 2 >= MMA_MIN_ROWS && (k.rows / 2) % k.config.M === 0) {
    if (tiles(k.rows / 2) >= MMA_HALVE_RATIO * tiles(k.rows)) break;
    let half: MmaKernel;
    try {
      half = mmaKernel(input.shape, input.dtype, input.caps, {
        ...input.options.mma,
        rows: k.rows / 2,
      });
    } catch {
      break; // a pinned choice (an output round count, a split) that half the rows cannot hold
    }
    k = half;
  }
  return k;
}

/** A name for results and tools: `fma-t256-r64-k64-qnone`, `fma-t128-r64-k32-qnone-h` (f16 staging). */
export function fmaVariantName(k: GroupKernel): string {
  const storage = k.storage > 0 ? `-s${k.storage}` : "";
  const knocked = k.ablate?.length ? `-without-${k.ablate.join("+")}` : "";
  const half = k.kvHalf ? "-h" : "";
  return `fma-t${k.threads}-r${k.rows}-k${k.keys}-q${k.qType ?? "none"}${half}${storage}${knocked}`;
}

/**
 * Whether a plan runs on matrix units: `kernel: "mma"` demands them (a `RangeError` from
 * {@linkcode mmaKernel} says why it cannot), `"auto"` takes them when the device has an f16
 * configuration and the storage is f16, `"fma"` never.
 */
export function useMatrixUnits(input: PlanInput): boolean {
  switch (input.options.kernel) {
    case "mma":
      return true;
    case "fma":
      return false;
    default:
      return input.dtype === "f16" && Boolean(input.caps?.matrix) &&
        (input.caps?.subgroupSize ?? 0) > 0;
  }
}

/**
 * Loop iterations one invocation of the kernel runs for a group of `tokens` tokens (an upper bound:
 * every loop counted, including those a compiler may unroll, each with its exit test).
 */
export function groupLoopIterations(c: GroupKernelConfig, tokens: number): number {
  const dv = c.shape.headDim / 4;
  const chunks = Math.ceil(dv / c.chunkV);
  const slices = c.keys / c.vKeys;
  const lanes = (4 * c.threads) / c.rows;
  // Per sub-tile: its own iteration, the chunk loop and a score loop per chunk, the row-maximum
  // loop over the lanes, the slice loop and a PV loop per slice.
  const perTile = 1 + (chunks + 1) + chunks * (c.chunkV + 1) + lanes + (slices + 1) +
    slices * (c.vKeys / 4 + 1);
  const prologue = c.qType ? Math.ceil(((c.rows / 4) * dv) / (4 * c.threads)) + 1 : 0;
  return 8 + prologue + Math.ceil(tokens / c.keys) * perTile;
}

/**
 * Mesa's llvmpipe (lavapipe) ends a shader invocation after this many loop iterations in all,
 * silently (`LP_MAX_TGSI_LOOP_ITERATIONS`, shared between every loop of the shader).
 */
export const LLVMPIPE_LOOP_LIMIT = 65535;

/** The WGSL source for a configuration (constants substituted into group_attention.wgsl). */
export function groupAttentionSource(c: GroupKernelConfig): string {
  const { shape } = c;
  const { q, kv } = groupArrays(c);
  const source = specializeWgsl(groupWgsl, {
    consts: {
      HEAD_DIM: shape.headDim,
      Q_HEADS: shape.qHeads,
      KV_HEADS: shape.kvHeads,
      WG: c.threads,
      ROWS: c.rows,
      KEYS: c.keys,
      Q_RES: c.qType !== null,
      CHUNK_V: c.chunkV,
      V_KEYS: c.vKeys,
      MAXW: c.maskWords,
      Q_SIZE: q,
      KV_SIZE: kv,
      SCALE: `${1 / Math.sqrt(shape.headDim)}`,
    },
    aliases: {
      elem4: `vec4<${c.dtype}>`,
      qelem4: `vec4<${c.qType ?? (c.kvHalf ? "f16" : "f32")}>`,
      kvelem4: `vec4<${c.kvHalf ? "f16" : "f32"}>`,
    },
    f16: c.dtype === "f16" || c.qType === "f16" || c.kvHalf === true,
    name: "group_attention.wgsl",
  });
  return c.ablate?.length ? knockOutFma(source, c.ablate) : source;
}

/**
 * Packs the work items and groups into the kernel's `meta` buffer (layout in the WGSL): each item
 * carries its group's record, so a workgroup finds everything one load away, and every group's
 * segments are expanded into one pool slot per token.
 */
export function packGroupMeta(groups: GroupSet, items: Uint32Array): Uint32Array {
  const itemCount = items.length / 2;
  const itemsOff = 8;
  const slotsOff = itemsOff + 8 * itemCount;
  const slotStart = new Uint32Array(groups.count + 1);
  for (let g = 0; g < groups.count; g++) slotStart[g + 1] = slotStart[g]! + groups.tokens[g]!;
  const queriesOff = slotsOff + slotStart[groups.count]!;
  const maskOff = queriesOff + groups.queries.length;
  const meta = new Uint32Array(maskOff + groups.mask.length);
  meta[0] = itemCount;
  meta[1] = queriesOff;
  for (let i = 0; i < itemCount; i++) {
    const g = items[2 * i]!;
    const b = itemsOff + 8 * i;
    meta[b] = items[2 * i + 1]!;
    meta[b + 1] = groups.tokens[g]!;
    meta[b + 2] = slotsOff + slotStart[g]!;
    meta[b + 3] = groups.queryOffset[g]!;
    meta[b + 4] = groups.queryOffset[g + 1]! - groups.queryOffset[g]!;
    meta[b + 5] = groups.maskWords[g]!;
    meta[b + 6] = maskOff + groups.maskOffset[g]!;
    meta[b + 7] = g;
  }
  for (let g = 0; g < groups.count; g++) {
    const tokens = groups.tokens[g]!;
    const at = slotsOff + slotStart[g]!;
    const s1 = groups.segOffset[g + 1]!;
    for (let s = groups.segOffset[g]!; s < s1; s++) {
      const t0 = groups.segTokenStart[s]!;
      const t1 = s + 1 < s1 ? groups.segTokenStart[s + 1]! : tokens;
      const slot = groups.segSlot[s]! - t0;
      for (let t = t0; t < t1; t++) meta[at + t] = slot + t;
    }
  }
  meta.set(groups.queries, queriesOff);
  meta.set(groups.mask, maskOff);
  return meta;
}

/** Throws {@linkcode GpuError} when a group is too long for llvmpipe's loop limit. */
function checkLoopLimit(plan: GroupPlan, iterations: (tokens: number) => number): void {
  const { groups } = plan;
  for (let g = 0; g < groups.count; g++) {
    if (groups.queryOffset[g + 1] === groups.queryOffset[g]) continue;
    const n = iterations(groups.tokens[g]!);
    if (n > LLVMPIPE_LOOP_LIMIT) {
      throw new GpuError(
        `${plan.method}: a group of ${
          groups.tokens[g]
        } KV tokens needs about ${n} shader loop iterations, more than the ${LLVMPIPE_LOOP_LIMIT} after which Mesa's llvmpipe silently ends a shader; use a hardware GPU, or a method whose groups are bounded (deft-flatten, deft-node-chunk)`,
      );
    }
  }
}

/**
 * A second stage-1 kernel whose partials the group plan's reduction merges too (its lists are in
 * the plan's): deft-flatten's Flash-Decoding over the KV only one query sees.
 */
export interface GroupTail {
  /** Name of its part in {@linkcode PreparedMethod.parts}. */
  readonly name: string;
  /** First partial it writes, after the groups' (see `alignedPartialBase`). */
  readonly base: number;
  /** Partials it writes. */
  readonly partials: number;
  /** Binds it to the shared partial buffers. */
  prepare(
    gpu: Gpu,
    problem: GpuProblem,
    target: PartialTarget,
  ): Promise<{ encode(pass: GPUComputePassEncoder): void; destroy(): void }>;
}

/**
 * Uploads a group plan and returns its pass: the stage-1 dispatch, then the `tail`'s if any, then
 * the reduction.
 */
export async function prepareGroupAttention(
  gpu: Gpu,
  plan: GroupPlan,
  problem: GpuProblem,
  tail?: GroupTail,
): Promise<PreparedMethod> {
  const { shape, dtype } = plan;
  const label = `group-attention ${shape.qHeads}/${shape.kvHeads}/${shape.headDim} ${dtype}`;
  let pipeline: GPUComputePipeline;
  if (plan.mma) {
    const maskWords = tileMaskWords(plan.mma.rows, shape.qHeads / shape.kvHeads);
    if (gpu.info.description.includes("llvmpipe")) {
      checkLoopLimit(plan, (t) => mmaLoopIterations(shape, plan.mma!, maskWords, t));
    }
    pipeline = await mmaPipeline(gpu, shape, plan.mma, maskWords);
  } else {
    const config = groupKernelConfig(
      shape,
      dtype,
      plan.kernel,
      gpu.limit("maxComputeWorkgroupStorageSize"),
    );
    if (gpu.info.description.includes("llvmpipe")) {
      checkLoopLimit(plan, (t) => groupLoopIterations(config, t));
    }
    pipeline = await gpu.pipeline(label, groupAttentionSource(config));
  }
  const partials = Math.max(plan.groups.queries.length, tail ? tail.base + tail.partials : 0);
  const meta = gpu.buffer(`${plan.method} meta`, packGroupMeta(plan.groups, plan.items));
  const partialO = gpu.buffer(
    `${plan.method} partial o`,
    partials * shape.qHeads * shape.headDim * 4,
  );
  const partialLse = gpu.buffer(`${plan.method} partial lse`, partials * shape.qHeads * 4);
  // Profiling only: the matrix kernel's live-workgroup counter (MmaKernelOptions.occupancy).
  const occupancy = plan.mma?.occupancy ? gpu.buffer(`${plan.method} occupancy`, 16) : null;
  const owned: { destroy(): void }[] = [meta, partialO, partialLse];
  if (occupancy) owned.push(occupancy);
  try {
    const second = tail
      ? await tail.prepare(gpu, problem, { o: partialO, lse: partialLse, base: tail.base })
      : null;
    if (second) owned.push(second);
    const bindGroup = gpu.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        problem.q,
        problem.k,
        problem.v,
        meta,
        partialO,
        partialLse,
        ...(occupancy ? [occupancy] : []),
      ].map((buffer, binding) => ({ binding, resource: { buffer } })),
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
    const stage1 = (pass: GPUComputePassEncoder) => {
      if (workgroups > 0) {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(...grid);
      }
    };
    return {
      encode(pass) {
        stage1(pass);
        second?.encode(pass);
        reduction.encode(pass);
      },
      parts: [
        { name: "stage-1", encode: stage1 },
        ...(second ? [{ name: tail!.name, encode: second.encode }] : []),
        { name: "reduce", encode: reduction.encode },
      ],
      ...(occupancy ? { counters: { occupancy } } : {}),
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

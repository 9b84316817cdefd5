/**
 * DeFT-Flatten, the paper's DeFT (DeFT paper, section 3.4): the tree KV is concatenated in DFS
 * order, cut into equal blocks of `blockSize` tokens (the last one partial), and each block is
 * grouped with the union of the queries that see any of its tokens. A KV-side bit mask (u32 words
 * per token, bit i = the block's i-th query sees the token) restores the tree's causality. One
 * workgroup per (block, row tile, KV head) runs the shared group-attention kernel, so a block is
 * read once per KV head and row tile; a block keeps all its queries however many there are (no
 * 32-query cap that would split it).
 *
 * Planning is O(nodes + queries + N_tree x mask words) on typed arrays: with queries ordered by the
 * DFS position of their node, a node's queries and a block's query union are ranges, so a segment's
 * mask is a run of set bits written once per word with `fill`.
 *
 * @module
 */

import type { KvLayout } from "../layout.ts";
import type { KernelCaps, MethodRecord, PlanInput } from "../method.ts";
import { paperIo, realIo } from "../plan_counts.ts";
import { intOption, type MethodOption, TARGET_WORKGROUPS } from "../options.ts";
import { GROUP_VARIANTS } from "../group_variants.ts";
import { DEFAULT_MMA_KERNEL, mmaWorkgroupBytes } from "../group_attention_mma.ts";
import {
  planSequenceFrom,
  prepareSequenceStage,
  sequence,
  sequenceAttendedSlots,
  type SequencePlan,
} from "./sequence.ts";
import { alignedPartialBase, mergeLists, reductionIo } from "../reduce.ts";
import type { IndexedTree } from "../../workloads/tree.ts";
import {
  attendedSlots,
  groupKernel,
  type GroupPlan,
  type GroupSet,
  planGroupAttention,
  positiveOption,
  prepareGroupAttention,
  type QueryRanges,
  queryRanges,
  tileMaskWords,
  useMatrixUnits,
} from "../group_attention.ts";

/** The flattened blocks of a tree, with their mask. */
export interface FlattenBlocks {
  /** One group per block, with the KV-side mask (none on a block all of whose queries see all of it). */
  readonly groups: GroupSet;
  /** Node position of each segment (for tests and reports). */
  readonly segNode: Int32Array;
  /** Largest mask words per token of any block. */
  readonly maxMaskWords: number;
}

/**
 * Cuts the DFS-flattened tree KV into blocks of `blockSize` tokens and builds each block's query
 * union and mask (`[word][token]` per block; none where every query of a block sees all of it,
 * unless `maskFull`). `skip` leaves private suffixes out.
 */
export function flattenBlocks(
  ix: IndexedTree,
  layout: KvLayout,
  blockSize: number,
  skip?: PrivateSuffixes,
  { maskFull = false }: { maskFull?: boolean } = {},
): FlattenBlocks {
  positiveOption("blockSize", blockSize);
  const { order, lo, hi: seen } = skip?.ranges ?? queryRanges(ix);
  // Queries from the cutoff on (in DFS order) run whole as Flash-Decoding: no block lists them.
  const cut = skip?.cutoff ?? ix.queryCount;
  const hi = cut < ix.queryCount ? seen.map((h) => Math.min(h, cut)) : seen;
  const total = ix.treeTokens - (skip?.skipped ?? 0);
  const count = Math.ceil(total / blockSize);
  const maxSegs = ix.nodeCount + count;
  const tokens = new Uint32Array(count);
  const segOffset = new Uint32Array(count + 1);
  const segTokenStart = new Uint32Array(maxSegs);
  const segSlot = new Uint32Array(maxSegs);
  const segNode = new Int32Array(maxSegs);
  const qlo = new Uint32Array(count);
  const qhi = new Uint32Array(count);
  let seg = 0, g = 0, fill = 0;
  for (const v of ix.dfsOrder) {
    if (skip?.node[v] === 1) continue;
    let slot = layout.slotStart[v]!;
    let left = ix.tokens(v);
    while (left > 0) {
      const take = Math.min(left, blockSize - fill);
      // lo is non-decreasing in DFS order, and consecutive DFS nodes have overlapping or adjacent
      // query ranges, so the block's union is [lo of its first node, max hi). With private
      // suffixes skipped, the range may also hold a query that sees none of the block (a query
      // whose private nodes lay between two of its nodes): its bits stay 0 and its row writes an
      // empty partial.
      if (fill === 0) {
        qlo[g] = lo[v]!;
        qhi[g] = hi[v]!;
      } else if (hi[v]! > qhi[g]!) qhi[g] = hi[v]!;
      segTokenStart[seg] = fill;
      segSlot[seg] = slot;
      segNode[seg++] = v;
      fill += take;
      slot += take;
      left -= take;
      if (fill === blockSize) {
        tokens[g] = fill;
        segOffset[++g] = seg;
        fill = 0;
      }
    }
  }
  if (fill > 0) {
    tokens[g] = fill;
    segOffset[++g] = seg;
  }

  const queryOffset = new Uint32Array(count + 1);
  const words = new Uint32Array(count);
  const offset = new Uint32Array(count);
  let maskTotal = 0, maxWords = 0;
  for (let b = 0; b < count; b++) {
    const nq = qhi[b]! - qlo[b]!;
    queryOffset[b + 1] = queryOffset[b]! + nq;
    // A block whose every node is seen by all of its queries (a shared prompt's blocks) needs no
    // mask: the kernel then neither loads nor tests mask words.
    let full = true;
    for (let s = segOffset[b]!; s < segOffset[b + 1]! && full; s++) {
      const v = segNode[s]!;
      full = lo[v] === qlo[b] && hi[v] === qhi[b];
    }
    const w = full && !maskFull ? 0 : Math.ceil(nq / 32);
    words[b] = w;
    offset[b] = maskTotal;
    maskTotal += w * tokens[b]!;
    if (w > maxWords) maxWords = w;
  }
  const queries = new Uint32Array(queryOffset[count]!);
  const mask = new Uint32Array(maskTotal);
  for (let b = 0; b < count; b++) {
    const q0 = qlo[b]!;
    queries.set(order.subarray(q0, qhi[b]!), queryOffset[b]!);
    if (words[b] === 0) continue;
    const n = tokens[b]!;
    const s1 = segOffset[b + 1]!;
    for (let s = segOffset[b]!; s < s1; s++) {
      const t0 = segTokenStart[s]!;
      const t1 = s + 1 < s1 ? segTokenStart[s + 1]! : n;
      const v = segNode[s]!;
      // Bits [a, e) of the block's queries see this segment: one run of set bits per word.
      const a = lo[v]! - q0;
      const e = hi[v]! - q0;
      for (let w = a >>> 5; w < (e + 31) >>> 5; w++) {
        const from = Math.max(a, 32 * w) - 32 * w;
        const to = Math.min(e, 32 * w + 32) - 32 * w;
        const bits = ((to === 32 ? 0xffffffff : (1 << to) - 1) & ~((1 << from) - 1)) >>> 0;
        const at = offset[b]! + w * n;
        mask.fill(bits, at + t0, at + t1);
      }
    }
  }
  return {
    groups: {
      count,
      tokens,
      segOffset,
      segTokenStart: segTokenStart.subarray(0, seg),
      segSlot: segSlot.subarray(0, seg),
      queryOffset,
      queries,
      maskWords: words,
      maskOffset: offset,
      mask,
    },
    segNode: segNode.subarray(0, seg),
    maxMaskWords: maxWords,
  };
}

/**
 * The KV that only one query sees, routed to Flash-Decoding: a node whose subtree holds exactly one
 * query lies on that query's path only, and the nodes of a path that only its query sees form a
 * suffix of the path (the count of queries below a node never grows toward the leaves). Queries
 * from `cutoff` on in DFS order (a tail that would leave the shared blocks' last row tile nearly
 * empty, see {@linkcode TAIL_QUERIES}) are routed whole: every block's query range stops at the
 * cutoff, and a node only they see leaves the blocks.
 */
export interface PrivateSuffixes {
  /** The query ranges of every node (as {@linkcode queryRanges}), before the cutoff. */
  readonly ranges: QueryRanges;
  /** Per query, the first path position run by Flash-Decoding (its path length when none). */
  readonly from: Uint32Array;
  /** Per node, 1 when its KV is left out of the flattened blocks. */
  readonly node: Uint8Array;
  /** Tokens of the nodes left out of the blocks. */
  readonly skipped: number;
  /** Tokens run by Flash-Decoding, over all queries (a node's tokens once per routed query). */
  readonly tokens: number;
  /** Queries with a routed suffix (the whole-path ones included). */
  readonly queries: number;
  /** Queries at and past this DFS rank are routed whole (the query count when none is). */
  readonly cutoff: number;
}

/**
 * Each query's private suffix, routed where it has at least `min` tokens (`min` 0: none is), and
 * the queries from DFS rank `cutoff` on routed whole (default: none). A node counts as private
 * when one query before the cutoff sees it (the others that do run whole anyway).
 * O(nodes + queries).
 */
export function privateSuffixes(
  ix: IndexedTree,
  min: number,
  cutoff = ix.queryCount,
  ranges: QueryRanges = queryRanges(ix),
): PrivateSuffixes {
  const { lo, hi, order } = ranges;
  const nq = ix.queryCount;
  const from = new Uint32Array(nq);
  const node = new Uint8Array(ix.nodeCount);
  let tokens = 0, queries = 0;
  for (let r = 0; r < nq; r++) {
    const q = order[r]!;
    const v = ix.queryNode[q]!;
    const n = ix.pathTokens[v]!;
    if (r >= cutoff) {
      from[q] = 0;
      tokens += n;
      queries++;
      continue;
    }
    // The deepest node of the path that another query before the cutoff sees too; the suffix
    // starts below it.
    let u = v;
    while (u >= 0 && Math.min(hi[u]!, cutoff) - lo[u]! === 1) u = ix.parent[u]!;
    const start = u >= 0 ? ix.pathTokens[u]! : 0;
    if (min === 0 || n - start < min) {
      from[q] = n;
      continue;
    }
    from[q] = start;
    tokens += n - start;
    queries++;
    for (let w = v; w !== u; w = ix.parent[w]!) node[w] = 1;
  }
  let skipped = 0;
  for (let v = 0; v < ix.nodeCount; v++) {
    // A node below the cutoff's queries only (or below none, past them) leaves the blocks.
    if (cutoff < nq && lo[v]! >= cutoff) node[v] = 1;
    if (node[v] === 1) skipped += ix.tokens(v);
  }
  return { ranges, from, node, skipped, tokens, queries, cutoff };
}

/** A DeFT-Flatten plan. */
export interface DeftFlattenPlan extends GroupPlan {
  /** Tokens per block. */
  readonly blockSize: number;
  /**
   * Flash-Decoding's plan, run instead of the flattened blocks, when the tree shares too little
   * KV for tree attention to pay (see {@linkcode FALLBACK_REUSE}). The group fields then describe
   * the flattening that is not run; dispatches, real IO and the kernel variant are this plan's.
   */
  readonly delegate?: SequencePlan;
  /**
   * Flash-Decoding over the KV only one query sees (see {@linkcode PRIVATE_MIN}), run after the
   * flattened blocks; its partials follow theirs from `base` on, and the plan's lists merge both.
   */
  readonly suffix?: { readonly plan: SequencePlan; readonly base: number };
}

/**
 * DeFT degrades to Flash-Decoding where there is nothing to share: below this KV reuse, in percent
 * (ΣN_i over N_tree: the tokens the queries' paths read over the tokens of the tree), deft-flatten
 * runs `sequence`'s plan. A block that serves one query gives a matrix tile 4 real rows of 16 and
 * the FMA tiles as few; on an H200 the unshared batch (a 1-token root over 32 x 4096, reuse
 * 100.02%) took 2.2x `sequence`'s time with the matrix kernel and 8x with the FMA one
 * (results/data/nvidia-h200-dawn/issue-trees.json.gz). 0 turns the fallback off.
 */
export const FALLBACK_REUSE: MethodOption<number> = intOption({
  key: "fallbackReuse",
  flag: "--fallback-reuse <percent>",
  doc:
    "deft-flatten runs sequence's plan when the queries' paths read less than this % of the tree's tokens (nothing to share; 0: never)",
  default: 110,
  min: 0,
});

/**
 * The KV that only one query sees (its private path suffix: few-shot's branches, a grid's leaves)
 * is no use to tree attention: a flattened block of it gives a tile one query's rows (4 of 32 or 64
 * on Llama-3-8B). Where a query's suffix has at least this many tokens, deft-flatten leaves it out
 * of the blocks and runs it as Flash-Decoding chunks (`sequence`'s kernel) in a second dispatch,
 * whose partials the one reduction merges with the blocks'; only on a tree that fills the device
 * with everything in the blocks (the plan reaches `targetWorkgroups` stage-1 workgroups), since on
 * a smaller one stage 1 takes one block's time whatever it holds and the second dispatch only adds
 * to it. 0 flattens everything, as the paper does; -1 (the default) is
 * {@linkcode PRIVATE_MIN_FMA} with the FMA kernel and 0 with the matrix kernel. On an H200
 * (docs/performance.md, changes 11 and 13) routing made the FMA kernel 1.2-1.3x faster on few-shot
 * and the 4000 + 50 x 200 grid, but the matrix kernel, whose blocks cost less than the dependent
 * dispatch saves, 7% faster only on few-shot b=50 and that grid, and 3-15% slower on few-shot b=20
 * and b=30 and on the reasoning presets.
 */
export const PRIVATE_MIN: MethodOption<number> = intOption({
  key: "privateMin",
  flag: "--private-min <tokens>",
  doc:
    "deft-flatten runs a query's private path suffix (KV no other query sees) as Flash-Decoding chunks when it has at least this many tokens (0: never; -1: 64 with the FMA kernel, never with the matrix kernel)",
  default: -1,
  min: -1,
});

/**
 * A tree whose queries all share a prompt (few-shot, a level grid's root) gives each of the
 * prompt's blocks the rows of every query, cut into row tiles; when the query count leaves the last
 * tile nearly empty (50 queries on Llama-3-8B: 200 rows, three 64-row tiles and one with 8), that
 * tile still stages every key of its block and runs its barriers, for a few rows. Where the last
 * tile would hold at most this many queries, deft-flatten runs that many queries (the last in DFS
 * order) whole as Flash-Decoding chunks, in the dispatch of the private suffixes, and the blocks
 * keep whole tiles. Only where all queries share at least one block, and, like the private
 * suffixes, only on a tree that fills the device. 0 never; -1 (the default) half a tile's queries
 * with the FMA kernel (8 at 64 rows), never with the matrix kernel. docs/performance.md, change 31.
 */
export const TAIL_QUERIES: MethodOption<number> = intOption({
  key: "tailQueries",
  flag: "--tail-queries <n>",
  doc:
    "deft-flatten runs the last queries whole as Flash-Decoding chunks when at most n of them would make the last row tile of the blocks all queries share (0: never; -1: half a tile's queries with the FMA kernel, never with the matrix kernel)",
  default: -1,
  min: -1,
});

/**
 * The DFS rank from which {@linkcode TAIL_QUERIES} routes queries whole, for `blockSize`-token
 * blocks (the query count when it routes none). `ranges` gives the tree's query ranges, asked for
 * only where the tail is short enough to route.
 */
export function tailCutoff(
  input: PlanInput,
  blockSize: number,
  ranges: () => QueryRanges = () => queryRanges(input.ix),
): number {
  const { ix, shape, dtype, options } = input;
  const nq = ix.queryCount;
  const mma = useMatrixUnits(input);
  const asked = TAIL_QUERIES.read(options);
  const rows = mma
    ? options.mma?.rows ?? DEFAULT_MMA_KERNEL.rows
    : groupKernel(shape, dtype, options.fma).rows;
  const perTile = Math.floor(rows / (shape.qHeads / shape.kvHeads));
  const limit = asked >= 0 ? asked : mma ? 0 : Math.floor(perTile / 2);
  const k = perTile > 1 ? nq % perTile : 0;
  if (limit === 0 || k === 0 || k > limit || k >= nq) return nq;
  // The tiles it saves are those of the KV every query sees: at least one block of it.
  const { lo, hi } = ranges();
  let shared = 0;
  for (let v = 0; v < ix.nodeCount; v++) if (lo[v] === 0 && hi[v] === nq) shared += ix.tokens(v);
  return shared >= blockSize ? nq - k : nq;
}

/**
 * Workgroups that each take the device's whole workgroup storage that the device runs at once (one
 * per SM on an H200: 132), from `calibrate` (`residentWorkgroups`) unless given. With it the plan
 * sizes the matrix kernel's blocks to whole rounds of the tile's resident workgroups (this times
 * the storage over the tile's workgroup memory, rounded down: 396 for the 64-row tile and 528 for
 * the 32-row one on an H200) instead of halving them to `targetWorkgroups`. Every workgroup of a
 * block size takes the same time, so the SMs run ceil(workgroups / resident) rounds of one
 * workgroup's time: the Table 14 tree needs 2.6 rounds at 128-token blocks and one at 352, 1.22x
 * faster (docs/performance.md, change 18).
 */
export const MULTIPROCESSORS: MethodOption<number> = intOption({
  key: "multiprocessors",
  flag: "--multiprocessors <n>",
  doc:
    "deft-flatten on matrix units: workgroups of the whole workgroup storage the device runs at once (SMs); blocks are then sized to whole rounds of the tile's resident workgroups (0: the calibration's, else off)",
  default: 0,
  min: 0,
});

/** The matrix tile's resident workgroups on a device running `multiprocessors` whole-storage ones. */
export function residentTiles(
  multiprocessors: number,
  workgroupStorage: number,
  tileBytes: number,
): number {
  return multiprocessors * Math.max(1, Math.floor(workgroupStorage / tileBytes));
}

/**
 * A workgroup's fixed cost (Q staging, the output pass, its launch) in sub-tiles, for the
 * rounds model of {@linkcode MULTIPROCESSORS}.
 */
export const WAVE_FIXED_SUBTILES = 2;

/**
 * Bytes of partials the reduction reads in the time of one round of sub-tiles, for the rounds model
 * of {@linkcode MULTIPROCESSORS}. On an H200 a round of 64-row, 16-key sub-tiles takes about 2.7 us
 * (Table 14: one round of 22 + 2 in about 65 us of stage 1), and the reduction took 17 us for 8.4
 * MB of partials and 23 us for 33.8 MB (2048 rows, cold; docs/performance.md, changes 10 and 17):
 * 6 us more for 25.4 MB, 11 MiB in 2.7 us.
 */
export const REDUCE_BYTES_PER_SUBTILE = 11 * 2 ** 20;

/**
 * With the reduction counted, a plan replaces change 18's choice only when it costs less than this
 * share of it: the model counts sub-tiles of different row tiles alike and its fixed costs are
 * estimates, so a few percent is within its error (docs/performance.md, change 19).
 */
export const WAVE_MARGIN = 0.95;

/**
 * The time of `workgroups` workgroups of `blockSize`-token blocks on `slots` resident ones, in
 * sub-tiles of `keys`: rounds x (sub-tiles per block + the fixed cost), plus the reduction's read
 * of `reduceBytes` of partials (every block a query sees is one more partial per row of it, so
 * small blocks on trees with many queries pay there: docs/performance.md, change 19).
 */
export function waveCost(
  workgroups: number,
  blockSize: number,
  keys: number,
  slots: number,
  reduceBytes = 0,
): number {
  return Math.ceil(workgroups / slots) * (Math.ceil(blockSize / keys) + WAVE_FIXED_SUBTILES) +
    reduceBytes / REDUCE_BYTES_PER_SUBTILE;
}

/** The private-suffix threshold the FMA kernel uses when `privateMin` is -1 (auto). */
export const PRIVATE_MIN_FMA = 64;

/**
 * Stage-1 workgroups a GPU plan aims for when `options.targetWorkgroups` is 0. A workgroup walks
 * its block's keys one sub-tile after another, so a tree too small to fill the device with
 * `blockSize` blocks runs as long as one block takes, whatever its size (on an H200 about 130 us
 * for 512 tokens with the matrix kernel: results/data/nvidia-h200-dawn/presets.log, the reasoning
 * presets; with the FMA kernel on Deno, the keyword preset took 148 us at the tuned 512-token
 * blocks and 64 us at 128: presets-11.json.gz and presets-10-untuned.json.gz); smaller blocks then
 * finish sooner. Like `sequence`'s split count (1024 workgroups).
 */
export const FLATTEN_TARGET_WORKGROUPS = 1024;

/** The smallest block a plan shrinks to (see {@linkcode FLATTEN_TARGET_WORKGROUPS}). */
export const FLATTEN_MIN_BLOCK = 64;

/** DeFT-Flatten's block size: tokens per flattened KV block (the paper's 128). */
export const BLOCK_SIZE: MethodOption<number> = intOption({
  key: "blockSize",
  flag: "--block-size <tokens>",
  doc: "deft-flatten block size",
  default: 128,
  tune: [128, 64, 256, 512],
});

/** DeFT-Flatten (`deft-flatten`). */
export const deftFlatten: MethodRecord<DeftFlattenPlan, "deft-flatten"> = {
  name: "deft-flatten",
  description:
    "DeFT-Flatten: DFS-flattened tree KV in equal blocks with a KV-side bit mask (paper's DeFT)",
  options: [
    BLOCK_SIZE,
    TARGET_WORKGROUPS,
    FALLBACK_REUSE,
    PRIVATE_MIN,
    MULTIPROCESSORS,
    TAIL_QUERIES,
  ],
  variants: GROUP_VARIANTS,
  // Its unshared fallback and its private suffixes run `sequence`'s plan (options.sequence).
  delegatesTo: ["sequence"],
  plan(input) {
    const { ix, layout, shape, dtype, options } = input;
    const largest = BLOCK_SIZE.read(options);
    const n = ix.treeTokens;
    const fallback = FALLBACK_REUSE.read(options);
    const unshared = fallback > 0 && 100 * ix.sumPathTokens < fallback * n;
    const privateMin = PRIVATE_MIN.read(options);
    const min = privateMin >= 0 ? privateMin : useMatrixUnits(input) ? 0 : PRIVATE_MIN_FMA;
    // The query ranges, computed once for the tail and the suffixes, and only if either asks.
    let ranges: QueryRanges | undefined;
    const rangesOf = () => (ranges ??= queryRanges(ix));
    const cutoff = unshared ? ix.queryCount : tailCutoff(input, largest, rangesOf);
    // With routing off (the matrix kernel's default) no suffix is looked for.
    const suffixes = unshared || (min === 0 && cutoff === ix.queryCount)
      ? undefined
      : privateSuffixes(ix, min, cutoff, rangesOf());
    const planAt = (blockSize: number, skip?: PrivateSuffixes): DeftFlattenPlan => {
      const { groups, maxMaskWords } = flattenBlocks(ix, layout, blockSize, skip, {
        maskFull: options.mma?.legacyMask === 1, // profiling: the masks before change 12
      });
      const plan = planGroupAttention(
        "deft-flatten",
        input,
        groups,
        paperIo(shape, dtype, n, n, 0),
        { blocks: groups.count, blockSize, maskWordsPerToken: maxMaskWords },
      );
      return { ...plan, blockSize };
    };
    // Where there is nothing to share, Flash-Decoding's plan runs (see FALLBACK_REUSE); the group
    // fields then describe the flattening at the given block size, which is not run.
    if (unshared) {
      const plan = planAt(largest);
      const seq = sequence.plan(input);
      return {
        ...plan,
        delegate: seq,
        kernelVariant: `flash-decoding ${seq.kernelVariant ?? "sequence"}`,
        dispatches: seq.dispatches,
        counts: { ...seq.counts, paper: plan.counts.paper },
        stats: { ...plan.stats, fallbackToSequence: 1 },
      };
    }
    // `blockSize` is the largest block. On a GPU, halve it while the tree leaves the device short
    // of workgroups (see FLATTEN_TARGET_WORKGROUPS). A CPU adapter keeps it with the FMA kernel
    // (more workgroups buy it nothing); the matrix kernel halves there too, as on a GPU.
    const asked = TARGET_WORKGROUPS.read(options);
    const target = asked > 0 ? asked : FLATTEN_TARGET_WORKGROUPS;
    const workgroups = (p: DeftFlattenPlan) => (p.items.length / 2) * shape.kvHeads;
    const sms = MULTIPROCESSORS.read(options) || (input.caps?.residentWorkgroups ?? 0);
    // The resident workgroups of a plan's matrix tile (its rows may differ between block sizes).
    const slotsOf = (p: DeftFlattenPlan, caps: KernelCaps) =>
      residentTiles(
        sms,
        caps.workgroupStorage,
        mmaWorkgroupBytes(shape, p.mma!, tileMaskWords(p.mma!.rows, shape.qHeads / shape.kvHeads)),
      );
    const halved = (skip?: PrivateSuffixes) => {
      let plan = planAt(largest, skip);
      if (sms > 0 && plan.mma !== null && input.caps) return waveSized(plan, input.caps, skip);
      const halves = plan.mma !== null ||
        (input.caps !== undefined && input.caps.software !== true);
      while (halves && plan.blockSize >= 2 * FLATTEN_MIN_BLOCK && workgroups(plan) < target) {
        plan = planAt(Math.ceil(plan.blockSize / 2), skip);
      }
      return plan;
    };
    // Blocks sized to whole rounds of the tile's resident workgroups (MULTIPROCESSORS): from the
    // plan at the given block, the blocks that make one and two rounds fewer and one round
    // (change 18), the cheapest by waveCost; then half and a quarter of its rounds and two rounds
    // as well, costed with the reduction's reads, replace it when clearly cheaper (change 19). The
    // workgroup count falls about as the block grows; an exact plan or two settles each, costed
    // with its own tile's resident workgroups.
    function waveSized(
      first: DeftFlattenPlan,
      caps: KernelCaps,
      skip?: PrivateSuffixes,
    ): DeftFlattenPlan {
      const keys = first.mma!.keys;
      const reduceBytes = (p: DeftFlattenPlan) => reductionIo(p.lists, shape).partialReadBytes;
      // Sub-tiles only (change 18's model), and with the reduction's reads.
      const rounds = (p: DeftFlattenPlan) =>
        waveCost(workgroups(p), p.blockSize, keys, slotsOf(p, caps));
      const cost = (p: DeftFlattenPlan) =>
        waveCost(workgroups(p), p.blockSize, keys, slotsOf(p, caps), reduceBytes(p));
      const slots = slotsOf(first, caps);
      const w0 = workgroups(first);
      const r0 = Math.ceil(w0 / slots);
      // Partials fall about as the blocks grow (the estimate below).
      const b0 = reduceBytes(first) * first.blockSize;
      // Change 18's candidates and choice (`baseline`), and the cheapest of more candidates with
      // the reduction counted (`best`), which replaces it only by more than the model's margin.
      const base = new Set([r0 - 1, r0 - 2, 1]);
      const candidates = [r0 - 1, r0 - 2, Math.ceil(r0 / 2), Math.ceil(r0 / 4), 2, 1];
      let baseline = first;
      let best = first;
      for (const r of new Set(candidates.filter((r) => r >= 1 && r < r0))) {
        const fit = r * slots;
        let size = Math.ceil((first.blockSize * w0) / fit / keys) * keys;
        // Not planned when even the estimate cannot beat either choice so far.
        if (
          (!base.has(r) || waveCost(fit, size, keys, slots) >= rounds(baseline)) &&
          waveCost(fit, size, keys, slots, b0 / size) >= cost(best)
        ) continue;
        let plan = planAt(size, skip);
        for (let tries = 0; tries < 2 && workgroups(plan) > fit; tries++) {
          // Grow by what the last plan missed (its row tiles do not fall as fast as its blocks).
          size = Math.max(size + keys, Math.ceil((size * workgroups(plan)) / fit / keys) * keys);
          plan = planAt(size, skip);
        }
        if (base.has(r) && rounds(plan) < rounds(baseline)) baseline = plan;
        if (cost(plan) < cost(best)) best = plan;
      }
      if (cost(best) >= WAVE_MARGIN * cost(baseline)) best = baseline;
      // Recorded with the plan: the resident workgroups it was sized for and its rounds.
      const resident = slotsOf(best, caps);
      return {
        ...best,
        stats: {
          ...best.stats,
          residentWorkgroups: resident,
          rounds: Math.ceil(workgroups(best) / resident),
        },
      };
    }
    const whole = halved();
    // Private suffixes leave the blocks only where the tree fills the device with everything in
    // them (PRIVATE_MIN): below the target, stage 1 takes one block's time whatever it holds, and
    // a second dispatch would only add its own.
    if (!suffixes || suffixes.queries === 0 || workgroups(whole) < target) return whole;
    return withPrivate(input, halved(suffixes), suffixes);
  },
  prepare(gpu, plan, problem) {
    if (plan.delegate) return sequence.prepare(gpu, plan.delegate, problem);
    const tail = plan.suffix;
    if (!tail) return prepareGroupAttention(gpu, plan, problem);
    return prepareGroupAttention(gpu, plan, problem, {
      name: "private",
      base: tail.base,
      partials: tail.plan.chunkQuery.length,
      prepare: (gpu, problem, target) => prepareSequenceStage(gpu, tail.plan, problem, target),
    });
  },
};

/**
 * The KV slots `query` attends through a deft-flatten plan: its blocks (mask applied), then its
 * private suffix's chunks. The CPU meaning of a plan, for tests: a correct plan gives every slot
 * of the query's path once.
 */
export function flattenAttendedSlots(plan: DeftFlattenPlan, query: number): number[] {
  if (plan.delegate) return sequenceAttendedSlots(plan.delegate, query);
  const own = attendedSlots(plan.groups, query);
  return plan.suffix ? [...own, ...sequenceAttendedSlots(plan.suffix.plan, query)] : own;
}

/**
 * `plan` (the flattened blocks without the private suffixes) with the suffixes' Flash-Decoding
 * chunks added: their dispatch before the reduction, their partials after the blocks', one list
 * per query over both, and counts that add the chunks' IO and FLOPs.
 */
function withPrivate(
  input: PlanInput,
  plan: DeftFlattenPlan,
  suffixes: PrivateSuffixes,
): DeftFlattenPlan {
  const { shape } = input;
  const tail = planSequenceFrom(input, suffixes.from, true);
  const base = alignedPartialBase(plan.groups.queries.length, shape);
  const lists = mergeLists(plan.lists, tail.lists, base);
  const [g, t, m] = [plan.lists, tail.lists, lists].map((l) => reductionIo(l, shape));
  const a = plan.counts.real, b = tail.counts.real;
  const dispatches = [...plan.dispatches];
  dispatches.splice(dispatches.length - 1, 0, tail.dispatches[0]!);
  return {
    ...plan,
    lists,
    suffix: { plan: tail, base },
    dispatches,
    kernelVariant: `${plan.kernelVariant} + flash-decoding ${tail.kernelVariant}`,
    counts: {
      ...plan.counts,
      real: realIo({
        kvBytes: a.kvBytes + b.kvBytes,
        qBytes: a.qBytes + b.qBytes,
        maskBytes: a.maskBytes + b.maskBytes,
        metadataBytes: a.metadataBytes - g!.metadataBytes + b.metadataBytes - t!.metadataBytes +
          m!.metadataBytes,
        partialBytes: a.partialBytes - g!.partialReadBytes + b.partialBytes -
          t!.partialReadBytes + m!.partialReadBytes,
        logitsBytes: 0,
        outputBytes: m!.outputBytes,
      }),
      flops: plan.counts.flops + tail.counts.flops,
    },
    stats: {
      ...plan.stats,
      privateQueries: suffixes.queries,
      privateTokens: suffixes.tokens,
      tailQueries: input.ix.queryCount - suffixes.cutoff,
      privateChunks: tail.chunkQuery.length,
      privateWorkgroups: tail.workgroups,
    },
  };
}

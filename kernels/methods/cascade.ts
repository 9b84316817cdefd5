/**
 * Cascade attention (beyond the paper; FlashInfer cascade inference and Hydragen, DeFT paper
 * section 2.5): the prefix shared by all queries (the path from the root to their lowest common
 * ancestor) is attended as one multi-query group per chunk, and the rest of each query's path is
 * attended per query; the shared reduction merges both levels. Only two levels are IO-aware: KV
 * below the common prefix that several queries share is read once per query.
 *
 * @module
 */

import type { MethodRecord } from "../method.ts";
import { paperIo } from "../plan_counts.ts";
import { GROUP_VARIANTS } from "../group_variants.ts";
import { CHUNK_SIZE } from "./deft_node_chunk.ts";
import type { KvLayout } from "../layout.ts";
import type { IndexedTree } from "../../workloads/tree.ts";
import {
  type GroupPlan,
  type GroupSet,
  GroupSetBuilder,
  planGroupAttention,
  prepareGroupAttention,
  queryRanges,
} from "../group_attention.ts";

/** The cascade split of a tree. */
export interface CascadeGroups {
  /** The shared-prefix groups first, then the per-query groups. */
  readonly groups: GroupSet;
  /** Node position of the lowest common ancestor of all queries (the end of the prefix). */
  readonly prefixNode: number;
  /** Tokens of the shared prefix. */
  readonly prefixTokens: number;
  /** Groups of the shared prefix (the first groups of `groups`). */
  readonly prefixGroups: number;
  /** KV tokens loaded once per KV head: the prefix plus every query's own suffix. */
  readonly kvTokens: number;
}

/** Splits a tree into a shared-prefix level and a per-query level, both cut into `chunk` tokens. */
export function cascadeGroups(ix: IndexedTree, layout: KvLayout, chunk: number): CascadeGroups {
  const { order, lo, hi } = queryRanges(ix);
  const nq = ix.queryCount;
  // The lowest common ancestor is the deepest node on query 0's path that sees every query.
  let lca = ix.root;
  if (nq > 0) {
    lca = ix.queryNode[0]!;
    while (hi[lca]! - lo[lca]! < nq) lca = ix.parent[lca]!;
  }
  const depth = ix.depth[lca]!;
  const slots = new Int32Array(Math.max(depth, 1));
  const tokens = new Int32Array(slots.length);
  for (let v = lca, i = depth - 1; v >= 0; v = ix.parent[v]!, i--) {
    slots[i] = layout.slotStart[v]!;
    tokens[i] = ix.tokens(v);
  }
  const prefixTokens = ix.pathTokens[lca]!;
  let groups = Math.ceil(prefixTokens / chunk), segments = groups + depth;
  for (let q = 0; q < nq; q++) {
    const pieces = Math.ceil((ix.pathTokens[ix.queryNode[q]!]! - prefixTokens) / chunk);
    groups += pieces;
    segments += pieces + ix.depth[ix.queryNode[q]!]! - depth;
  }
  const prefixChunks = Math.ceil(prefixTokens / chunk);
  const b = new GroupSetBuilder(groups, segments, prefixChunks * nq + groups - prefixChunks);
  if (nq > 0) b.chunked(slots, tokens, depth, chunk, order, 0, nq);
  const prefixGroups = b.count;
  let kvTokens = prefixTokens;
  let maxDepth = 0;
  for (let v = 0; v < ix.nodeCount; v++) maxDepth = Math.max(maxDepth, ix.depth[v]!);
  const sSlots = new Int32Array(maxDepth);
  const sTokens = new Int32Array(maxDepth);
  for (let i = 0; i < nq; i++) {
    const q = order[i]!;
    let n = 0;
    for (let v = ix.queryNode[q]!; v !== lca; v = ix.parent[v]!) n++;
    let k = n;
    for (let v = ix.queryNode[q]!; v !== lca; v = ix.parent[v]!) {
      sSlots[--k] = layout.slotStart[v]!;
      sTokens[k] = ix.tokens(v);
    }
    kvTokens += ix.pathTokens[ix.queryNode[q]!]! - prefixTokens;
    b.chunked(sSlots, sTokens, n, chunk, order, i, i + 1);
  }
  return { groups: b.build(), prefixNode: lca, prefixTokens, prefixGroups, kvTokens };
}

/** A cascade plan. */
export interface CascadePlan extends GroupPlan {
  /** Most tokens per chunk, at both levels. */
  readonly chunkSize: number;
  /** Tokens of the shared prefix. */
  readonly prefixTokens: number;
}

/** Cascade attention (`cascade`). */
export const cascade: MethodRecord<CascadePlan, "cascade"> = {
  name: "cascade",
  description:
    "Cascade (FlashInfer/Hydragen): shared prefix as one multi-query level, per-query suffixes, merged",
  options: [CHUNK_SIZE],
  variants: GROUP_VARIANTS,
  plan(input) {
    const { ix, layout, shape, dtype, options } = input;
    const chunkSize = CHUNK_SIZE.read(options);
    const c = cascadeGroups(ix, layout, chunkSize);
    const plan = planGroupAttention(
      "cascade",
      input,
      c.groups,
      paperIo(shape, dtype, c.kvTokens, 0, 0),
      {
        chunkSize,
        prefixTokens: c.prefixTokens,
        prefixGroups: c.prefixGroups,
        suffixGroups: c.groups.count - c.prefixGroups,
      },
    );
    return { ...plan, chunkSize, prefixTokens: c.prefixTokens };
  },
  prepare: prepareGroupAttention,
};

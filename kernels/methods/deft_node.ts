/**
 * DeFT-Node (DeFT paper, section 3.2): KV-guided grouping by tree node. Each node's KV forms one
 * group with every query below it, so no mask is needed and each node's KV is read once per KV
 * head and row tile. A long node stays one group: the load imbalance between a 4k-token prompt and
 * 1-token leaves is what this method demonstrates.
 *
 * @module
 */

import type { MethodRecord } from "../method.ts";
import { paperIo } from "../plan_counts.ts";
import { GROUP_VARIANTS } from "../group_variants.ts";
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

/**
 * One group per node that some query sees (in DFS order), cut into chunks of at most `chunk`
 * tokens (`Infinity`: whole nodes).
 */
export function nodeGroups(ix: IndexedTree, layout: KvLayout, chunk = Infinity): GroupSet {
  const { order, lo, hi } = queryRanges(ix);
  let groups = 0, entries = 0;
  for (let v = 0; v < ix.nodeCount; v++) {
    const pieces = Math.max(1, Math.ceil(ix.tokens(v) / chunk)); // 1 for whole nodes
    groups += pieces;
    entries += pieces * (hi[v]! - lo[v]!);
  }
  const b = new GroupSetBuilder(groups, groups, entries);
  const slot = [0];
  const tokens = [0];
  for (const v of ix.dfsOrder) {
    if (hi[v]! === lo[v]!) continue; // no query sees this node
    slot[0] = layout.slotStart[v]!;
    tokens[0] = ix.tokens(v);
    b.chunked(slot, tokens, 1, chunk, order, lo[v]!, hi[v]!);
  }
  return b.build();
}

/** DeFT-Node (`deft-node`). */
export const deftNode: MethodRecord<GroupPlan, "deft-node"> = {
  name: "deft-node",
  description: "DeFT-Node: one group per tree node with all queries below it, no mask",
  options: [],
  variants: GROUP_VARIANTS,
  plan(input) {
    const { ix, layout, shape, dtype } = input;
    const groups = nodeGroups(ix, layout);
    return planGroupAttention(
      "deft-node",
      input,
      groups,
      paperIo(shape, dtype, ix.treeTokens, 0, 0),
      { nodes: ix.nodeCount },
    );
  },
  prepare: prepareGroupAttention,
};

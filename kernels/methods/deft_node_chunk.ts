/**
 * DeFT-Node-Chunk (DeFT paper, section 3.3): DeFT-Node with every node cut into chunks of at most
 * `chunkSize` tokens (paper: 128). Long nodes no longer make one huge group, but every tiny node is
 * still a group of its own.
 *
 * @module
 */

import { type AttentionMethod, paperIo } from "../method.ts";
import {
  type GroupPlan,
  planGroupAttention,
  positiveOption,
  prepareGroupAttention,
} from "../group_attention.ts";
import { nodeGroups } from "./deft_node.ts";

/** A DeFT-Node-Chunk plan. */
export interface DeftNodeChunkPlan extends GroupPlan {
  /** Most tokens per chunk. */
  readonly chunkSize: number;
}

/** DeFT-Node-Chunk (`deft-node-chunk`). */
export const deftNodeChunk: AttentionMethod<DeftNodeChunkPlan> = {
  name: "deft-node-chunk",
  description: "DeFT-Node-Chunk: DeFT-Node with nodes cut into chunks of chunkSize tokens",
  plan(input) {
    const { ix, layout, shape, dtype, options } = input;
    const chunkSize = positiveOption("chunkSize", options.chunkSize);
    const groups = nodeGroups(ix, layout, chunkSize);
    const plan = planGroupAttention(
      "deft-node-chunk",
      input,
      groups,
      paperIo(shape, dtype, ix.treeTokens, 0, 0),
      { nodes: ix.nodeCount, chunkSize },
    );
    return { ...plan, chunkSize };
  },
  prepare: prepareGroupAttention,
};

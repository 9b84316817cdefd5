/**
 * DeFT-Node-Chunk (DeFT paper, section 3.3): DeFT-Node with every node cut into chunks of at most
 * `chunkSize` tokens (paper: 128). Long nodes no longer make one huge group, but every tiny node is
 * still a group of its own.
 *
 * @module
 */

import type { MethodRecord } from "../method.ts";
import { paperIo } from "../plan_counts.ts";
import { type GroupPlan, planGroupAttention, prepareGroupAttention } from "../group_attention.ts";
import { GROUP_VARIANTS } from "../group_variants.ts";
import { intOption, type MethodOption } from "../options.ts";
import { nodeGroups } from "./deft_node.ts";

/** Most tokens per chunk of DeFT-Node-Chunk (the paper's 128), and of both levels of cascade. */
export const CHUNK_SIZE: MethodOption<number> = intOption({
  key: "chunkSize",
  flag: "--chunk-size <tokens>",
  doc: "deft-node-chunk chunk size",
  default: 128,
  tune: [128, 64, 256],
});

/** A DeFT-Node-Chunk plan. */
export interface DeftNodeChunkPlan extends GroupPlan {
  /** Most tokens per chunk. */
  readonly chunkSize: number;
}

/** DeFT-Node-Chunk (`deft-node-chunk`). */
export const deftNodeChunk: MethodRecord<DeftNodeChunkPlan, "deft-node-chunk"> = {
  name: "deft-node-chunk",
  description: "DeFT-Node-Chunk: DeFT-Node with nodes cut into chunks of chunkSize tokens",
  options: [CHUNK_SIZE],
  variants: GROUP_VARIANTS,
  plan(input) {
    const { ix, layout, shape, dtype, options } = input;
    const chunkSize = CHUNK_SIZE.read(options);
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

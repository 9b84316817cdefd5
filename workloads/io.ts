/**
 * KV IO in the DeFT paper's accounting (Table 12, counted per query head like Table 17):
 * sequence-based methods load 2·d·ΣN_i elements per head and layer, tree-aware methods 2·d·N_tree,
 * so tree-aware methods save 1 - N_tree/ΣN_i = 1 - 1/F_s.
 *
 * @module
 */

import { type Dtype, dtypeBytes, type ModelShape } from "./shapes.ts";

/** Paper-accounting KV IO of sequence-based and tree-aware methods. */
export interface KvIo {
  /** Elements per head and layer loaded by sequence-based methods (2·d·ΣN_i). */
  sequenceElements: number;
  /** Elements per head and layer loaded by tree-aware methods (2·d·N_tree). */
  treeElements: number;
  /** Bytes for the whole model (x qHeads x layers x dtype bytes), sequence-based. */
  sequenceModelBytes: number;
  /** Bytes for the whole model, tree-aware. */
  treeModelBytes: number;
  /** 1 - N_tree / ΣN_i (0 when there are no queries). */
  reduction: number;
}

/**
 * KV IO for token totals (one snapshot's N_tree and ΣN_i, or their sums over a run, which gives run
 * totals and the run-average reduction as the paper's Table 17 computes it).
 *
 * @example The KV IO a tree-aware method saves on a prompt shared by two branches
 * ```ts
 * import assert from "node:assert/strict";
 * import { kvIo } from "./io.ts";
 * import { MODEL_SHAPES } from "./shapes.ts";
 * import { treeFacts } from "./tree.ts";
 *
 * const facts = treeFacts({
 *   nodes: [
 *     { id: 0, parent: null, tokens: 4000 },
 *     { id: 1, parent: 0, tokens: 10 },
 *     { id: 2, parent: 0, tokens: 10 },
 *   ],
 *   queries: [{ node: 1 }, { node: 2 }],
 * });
 * const llama = MODEL_SHAPES["llama3-8b"]!; // 32 query heads, d = 128, 32 layers
 * const io = kvIo(facts, llama, "f16");
 * assert.equal(io.sequenceElements, 2 * 128 * 8020); // K and V of every path, per head and layer
 * assert.equal(io.treeElements, 2 * 128 * 4020); // K and V of every tree token once
 * assert.equal(io.treeModelBytes, io.treeElements * 32 * 32 * 2); // x heads x layers x 2 bytes
 * assert.equal(io.reduction, 1 - 4020 / 8020); // 1 - 1/F_s, about 50 %
 * ```
 */
export function kvIo(
  totals: { treeTokens: number; pathTokens: number },
  shape: ModelShape,
  dtype: Dtype,
): KvIo {
  const d = shape.headDim;
  const perElement = shape.qHeads * shape.layers * dtypeBytes(dtype);
  const sequenceElements = 2 * d * totals.pathTokens;
  const treeElements = 2 * d * totals.treeTokens;
  return {
    sequenceElements,
    treeElements,
    sequenceModelBytes: sequenceElements * perElement,
    treeModelBytes: treeElements * perElement,
    reduction: totals.pathTokens === 0 ? 0 : 1 - totals.treeTokens / totals.pathTokens,
  };
}

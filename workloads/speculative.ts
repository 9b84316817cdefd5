/**
 * Speculative decoding (DeFT paper, sections 1.1 and 5.3): a prefix of P tokens and, each step, a
 * token tree of t candidate tokens shaped like Medusa's static top-k trees. Every tree token is a
 * 1-token node carrying a query that sees the prefix, its ancestors in the token tree and itself.
 * After each step the prefix grows by the accepted length (1 to 5, mean about 4.33).
 *
 * @module
 */

import type { WorkloadInfo } from "./format.ts";
import { Rng } from "./rng.ts";
import { DecodingRun } from "./run.ts";
import { checkTreeBound, type Query, type Tree, type TreeNode } from "./tree.ts";

/**
 * Nodes per depth (1 to 4) below the root token of the Medusa trees in the paper's data
 * (`APPS_tree_size{32,64,128,256}`); each tree also holds its root token, so t = 1 + sum.
 */
export const MEDUSA_DEPTH_HISTOGRAMS: Readonly<Record<number, readonly number[]>> = {
  32: [4, 8, 16, 3],
  64: [10, 28, 23, 2],
  128: [5, 20, 80, 22],
  256: [6, 30, 150, 69],
};

/**
 * Probabilities of accepting 1..5 tokens per step. The paper's records have accepted lengths in
 * 1..5 with mean 4.33; these weights have mean 4.34.
 */
export const ACCEPT_LENGTH_WEIGHTS: readonly number[] = [0.04, 0.04, 0.09, 0.2, 0.63];

/**
 * Token-tree topology: Medusa-like, or the official code's flat tree (every token a direct child of
 * the prefix, so each query sees the prefix and itself).
 */
export type TokenTreeTopology = "medusa" | "flat";

/** Parameters of a speculative-decoding run. */
export interface SpeculativeParams {
  /** Prefix tokens at the first step (paper: about 1000). */
  prefix: number;
  /** Tokens in the token tree t (paper: 32, 64, 128, 256). */
  treeTokens: number;
  /** Decoding steps (paper: about 1000). */
  steps: number;
  /** Seed of the accepted lengths. */
  seed: number;
  /** Token-tree topology (default medusa). */
  topology: TokenTreeTopology;
}

/** Depth histogram for a token tree of t tokens: the paper's where it has one, else a scaled one. */
export function depthHistogram(t: number): number[] {
  const known = MEDUSA_DEPTH_HISTOGRAMS[t];
  if (known) return known.slice();
  const rest = t - 1;
  if (rest <= 0) return [];
  // Scale the nearest paper histogram to t - 1 nodes, keeping depth 1 non-empty.
  const keys = Object.keys(MEDUSA_DEPTH_HISTOGRAMS).map(Number);
  const near = keys.reduce((a, b) => (Math.abs(b - t) < Math.abs(a - t) ? b : a));
  const base = MEDUSA_DEPTH_HISTOGRAMS[near]!;
  const sum = base.reduce((a, b) => a + b, 0);
  const out = base.map((c) => Math.floor((c * rest) / sum));
  out[0] = Math.max(1, out[0]!);
  let have = out.reduce((a, b) => a + b, 0);
  for (let k = out.length - 1; have < rest; k = (k + out.length - 1) % out.length) {
    out[k]!++;
    have++;
  }
  for (let k = out.length - 1; have > rest && k >= 1; k--) {
    const take = Math.min(out[k]!, have - rest);
    out[k]! -= take;
    have -= take;
  }
  while (out.length > 0 && out[out.length - 1] === 0) out.pop();
  return out;
}

/**
 * Parent (token-tree position) of each token of a Medusa-like token tree of t tokens; position 0
 * is the root token (parent -1). Nodes of each depth are attached greedily to the parent with the
 * highest value, where a parent's k-th child is worth value(parent) * 0.6^k (a top-k tree: highly
 * ranked candidates get more children), deterministic for a given t.
 */
export function medusaTokenTree(t: number): Int32Array {
  const hist = depthHistogram(t);
  const parent = new Int32Array(t).fill(-1);
  const value = new Float64Array(t);
  value[0] = 1;
  let prevLevel = [0];
  let next = 1;
  for (const count of hist) {
    const childCount = new Int32Array(t);
    const level: number[] = [];
    for (let c = 0; c < count; c++) {
      let best = prevLevel[0]!;
      let bestValue = -1;
      for (const p of prevLevel) {
        const v = value[p]! * 0.6 ** childCount[p]!;
        if (v > bestValue) {
          bestValue = v;
          best = p;
        }
      }
      parent[next] = best;
      value[next] = bestValue;
      childCount[best]!++;
      level.push(next++);
    }
    prevLevel = level;
  }
  return parent;
}

/** Speculative decoding with a token tree of t tokens verified each step. */
export class SpeculativeRun extends DecodingRun {
  readonly info: WorkloadInfo;
  readonly iterations: number;
  readonly params: SpeculativeParams;
  /** Prefix length at each step. */
  readonly prefixAt: Int32Array;
  readonly #parent: Int32Array;

  /** Creates the run; throws `RangeError` for impossible sizes. */
  constructor(params: SpeculativeParams, name = "speculative") {
    super();
    const { prefix, treeTokens, steps } = params;
    if (!Number.isSafeInteger(prefix) || prefix < 1 || prefix > 16_000_000) {
      throw new RangeError(`prefix must be an integer in [1, 16000000], got ${prefix}`);
    }
    if (!Number.isSafeInteger(treeTokens) || treeTokens < 1 || treeTokens > 4096) {
      throw new RangeError(`treeTokens must be an integer in [1, 4096], got ${treeTokens}`);
    }
    if (!Number.isSafeInteger(steps) || steps < 1 || steps > 1_000_000) {
      throw new RangeError(`steps must be an integer in [1, 1000000], got ${steps}`);
    }
    if (params.topology !== "medusa" && params.topology !== "flat") {
      throw new RangeError(
        `topology must be "medusa" or "flat", got ${JSON.stringify(params.topology)}`,
      );
    }
    this.params = { ...params };
    this.iterations = steps;
    this.info = { kind: "speculative", name, params: { ...params } };
    const rng = new Rng(params.seed);
    this.prefixAt = new Int32Array(steps);
    let p = prefix;
    for (let s = 0; s < steps; s++) {
      this.prefixAt[s] = p;
      p += 1 + rng.weighted(ACCEPT_LENGTH_WEIGHTS);
    }
    // The prefix only grows: the last step holds the largest tree.
    const last = this.prefixAt[steps - 1]!;
    checkTreeBound(
      {
        nodes: 1 + treeTokens,
        tokensPerNode: last,
        totalTokens: last + treeTokens,
        queries: treeTokens,
      },
      `speculative with prefix ${prefix}, ${treeTokens} tree tokens and ${steps} steps (prefix ${last} at the last step)`,
    );
    this.#parent = params.topology === "flat"
      ? new Int32Array(treeTokens).fill(-1)
      : medusaTokenTree(treeTokens);
  }

  /** Token-tree parent positions (-1: the token hangs directly below the prefix). */
  get tokenTreeParents(): Int32Array {
    return this.#parent.slice();
  }

  snapshot(i: number): Tree {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.iterations) {
      throw new RangeError(`Iteration ${i} is outside the run [0, ${this.iterations - 1}]`);
    }
    const t = this.params.treeTokens;
    const nodes: TreeNode[] = [{ id: 0, parent: null, tokens: this.prefixAt[i]! }];
    const queries: Query[] = [];
    for (let k = 0; k < t; k++) {
      const p = this.#parent[k]!;
      nodes.push({ id: k + 1, parent: p < 0 ? 0 : p + 1, tokens: 1 });
      queries.push({ node: k + 1 });
    }
    return { nodes, queries };
  }
}

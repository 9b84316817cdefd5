/**
 * Multi-step reasoning with Tree-of-Thoughts BFS (DeFT paper, sections 5.2 and 5.3): a root prompt,
 * then `width` thoughts generated concurrently, one token per thought per iteration. When the kept
 * thought (a seeded choice) finishes, it expands into `width` children at once; every other thought
 * is pruned, and its KV freed, when it finishes. Slower siblings therefore overlap the next level, as
 * in the paper's released records. The last level is pruned as it finishes, ending the run.
 *
 * @module
 */

import type { WorkloadInfo } from "./format.ts";
import { Rng } from "./rng.ts";
import { DecodingRun } from "./run.ts";
import {
  checkTreeBound,
  type Query,
  type Tree,
  type TreeNode,
  type TreeSizeBound,
} from "./tree.ts";

/** Parameters of a Tree-of-Thoughts BFS run. */
export interface ReasoningParams {
  /** Prompt tokens in the root. */
  prompt: number;
  /** Thought levels below the root. */
  depth: number;
  /** Thoughts per expansion (paper: 10). */
  width: number;
  /** Shortest thought, in tokens. */
  thoughtMin: number;
  /** Longest thought, in tokens. */
  thoughtMax: number;
  /** Seed of thought lengths and of which thought is kept. */
  seed: number;
}

interface Thought {
  id: number;
  parent: number;
  length: number;
  /** First iteration it generates a token. */
  start: number;
  /** Last iteration it generates a token. */
  end: number;
  /** Whether it expands into children when it ends. */
  expands: boolean;
}

/** A Tree-of-Thoughts BFS decoding run. */
export class ReasoningRun extends DecodingRun {
  readonly info: WorkloadInfo;
  readonly iterations: number;
  readonly params: ReasoningParams;
  /** The largest sizes any snapshot reaches, computed from the thoughts without building trees. */
  readonly largestTree: TreeSizeBound;
  readonly #thoughts: Thought[];

  /** Creates the run; throws `RangeError` for impossible sizes. */
  constructor(params: ReasoningParams, name = "reasoning") {
    super();
    const { prompt, depth, width, thoughtMin, thoughtMax } = params;
    const check = (k: string, v: number, lo: number, hi: number) => {
      if (!Number.isSafeInteger(v) || v < lo || v > hi) {
        throw new RangeError(`${k} must be an integer in [${lo}, ${hi}], got ${v}`);
      }
    };
    check("prompt", prompt, 1, 16_000_000);
    check("depth", depth, 1, 1000);
    check("width", width, 1, 4096);
    check("thoughtMin", thoughtMin, 1, 1_000_000);
    check("thoughtMax", thoughtMax, thoughtMin, 1_000_000);
    this.params = { ...params };
    this.info = { kind: "reasoning", name, params: { ...params } };

    const rng = new Rng(params.seed);
    const thoughts: Thought[] = [];
    let nextId = 1;
    let parent = 0;
    let start = 0;
    let last = 0;
    for (let level = 1; level <= depth; level++) {
      const kept = rng.int(0, width - 1);
      let keptThought: Thought | undefined;
      for (let c = 0; c < width; c++) {
        const length = rng.int(thoughtMin, thoughtMax);
        const t: Thought = {
          id: nextId++,
          parent,
          length,
          start,
          end: start + length - 1,
          expands: c === kept && level < depth,
        };
        thoughts.push(t);
        last = Math.max(last, t.end);
        if (c === kept) keptThought = t;
      }
      parent = keptThought!.id;
      start = keptThought!.end + 1;
    }
    this.#thoughts = thoughts;
    this.iterations = last + 1;
    this.largestTree = reasoningBound(prompt, thoughts);
    checkTreeBound(
      this.largestTree,
      `reasoning with prompt ${prompt}, ${depth} levels of ${width} thoughts of ${thoughtMin}-${thoughtMax} tokens`,
    );
  }

  snapshot(i: number): Tree {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.iterations) {
      throw new RangeError(`Iteration ${i} is outside the run [0, ${this.iterations - 1}]`);
    }
    const nodes: TreeNode[] = [{ id: 0, parent: null, tokens: this.params.prompt }];
    const queries: Query[] = [];
    for (const t of this.#thoughts) {
      if (t.start > i) continue;
      const generating = i <= t.end;
      if (!generating && !t.expands) continue; // pruned: its KV is freed
      nodes.push({ id: t.id, parent: t.parent, tokens: Math.min(i, t.end) - t.start + 1 });
      if (generating) queries.push({ node: t.id });
    }
    return { nodes, queries };
  }
}

/**
 * The largest tree of a reasoning run, from its thoughts alone (no tree is built). Between events
 * every size only grows (each generating thought gains a token per iteration), and it drops only
 * when a thought ends, so the maxima lie at thought ends; queries peak when a level starts. A
 * sweep over the sorted ends evaluates each in O(1): O(T log T) for T thoughts.
 */
function reasoningBound(prompt: number, thoughts: readonly Thought[]): TreeSizeBound {
  const n = thoughts.length;
  // Thoughts sorted by end: end x 2^22 + index fits a double exactly (end < 2^31, index < 2^22).
  const byEnd = new Float64Array(n);
  for (let i = 0; i < n; i++) byEnd[i] = thoughts[i]!.end * 4194304 + i;
  byEnd.sort();
  // Thoughts are created level by level, so their starts never decrease in creation order.
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i === 0 || thoughts[i]!.start !== thoughts[i - 1]!.start) {
      candidates.push(thoughts[i]!.start);
    }
  }
  let generating = 0, startSum = 0, kept = 0, keptTokens = 0;
  let sp = 0, ep = 0, ci = 0;
  const bound: TreeSizeBound = { nodes: 1, tokensPerNode: prompt, totalTokens: prompt, queries: 0 };
  for (const t of thoughts) bound.tokensPerNode = Math.max(bound.tokensPerNode, t.length);
  const at = (i: number) => {
    for (; sp < n && thoughts[sp]!.start <= i; sp++) {
      generating++;
      startSum += thoughts[sp]!.start;
    }
    for (; ep < n; ep++) {
      const t = thoughts[byEnd[ep]! % 4194304]!;
      if (t.end >= i) break;
      generating--;
      startSum -= t.start;
      if (t.expands) {
        kept++;
        keptTokens += t.length;
      }
    }
    bound.nodes = Math.max(bound.nodes, 1 + generating + kept);
    bound.queries = Math.max(bound.queries, generating);
    bound.totalTokens = Math.max(
      bound.totalTokens,
      prompt + keptTokens + generating * (i + 1) - startSum,
    );
  };
  // Evaluate at level starts and thought ends, in time order.
  for (let e = 0; e < n; e++) {
    const end = thoughts[byEnd[e]! % 4194304]!.end;
    while (ci < candidates.length && candidates[ci]! <= end) at(candidates[ci++]!);
    at(end);
  }
  return bound;
}

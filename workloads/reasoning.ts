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
import type { Query, Tree, TreeNode } from "./tree.ts";

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

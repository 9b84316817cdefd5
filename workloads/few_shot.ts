/**
 * Few-shot prompting (DeFT paper, section 5.2): one prompt of P tokens, b branches that each
 * generate G tokens, one token per branch per iteration; each branch's newest token is a query.
 *
 * @module
 */

import type { WorkloadInfo } from "./format.ts";
import { DecodingRun } from "./run.ts";
import { checkTreeBound, type Tree, type TreeNode } from "./tree.ts";

/** Parameters of a few-shot run. */
export interface FewShotParams {
  /** Prompt tokens P (paper: 4000). */
  prompt: number;
  /** Branches b (paper: 20, 30, 50). */
  branches: number;
  /** Tokens generated per branch G, one per iteration (paper: 400). */
  generated: number;
}

function checkPositive(name: string, v: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new RangeError(`${name} must be an integer in [1, ${max}], got ${v}`);
  }
}

/** The few-shot prompting run: at iteration i every branch holds i + 1 tokens. */
export class FewShotRun extends DecodingRun {
  readonly info: WorkloadInfo;
  readonly iterations: number;
  readonly params: FewShotParams;

  /** Creates the run; throws `RangeError` for impossible sizes. */
  constructor(params: FewShotParams, name = "few-shot") {
    super();
    checkPositive("prompt", params.prompt, 4_000_000);
    checkPositive("branches", params.branches, 65_536);
    checkPositive("generated", params.generated, 1_000_000);
    // The last iteration holds the largest tree: the prompt and every branch at full length.
    checkTreeBound(
      {
        nodes: 1 + params.branches,
        tokensPerNode: Math.max(params.prompt, params.generated),
        totalTokens: params.prompt + params.branches * params.generated,
        queries: params.branches,
      },
      `few-shot with prompt ${params.prompt}, ${params.branches} branches of ${params.generated} tokens`,
    );
    this.params = { ...params };
    this.iterations = params.generated;
    this.info = { kind: "few-shot", name, params: { ...params } };
  }

  snapshot(i: number): Tree {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.iterations) {
      throw new RangeError(`Iteration ${i} is outside the run [0, ${this.iterations - 1}]`);
    }
    const nodes: TreeNode[] = [{ id: 0, parent: null, tokens: this.params.prompt }];
    const queries = [];
    for (let b = 1; b <= this.params.branches; b++) {
      nodes.push({ id: b, parent: 0, tokens: i + 1 });
      queries.push({ node: b });
    }
    return { nodes, queries };
  }
}

/**
 * Level grids, as in FastTree's micro-benchmarks: a tree given level by level as (nodes, tokens per
 * node), e.g. one node of 4000 tokens over 50 nodes of 200 tokens. Level k's nodes are spread evenly
 * over level k-1's nodes (round robin); a query sits on every node without children.
 *
 * @module
 */

import type { WorkloadInfo } from "./format.ts";
import { DecodingRun } from "./run.ts";
import { checkTreeBound, type Query, type Tree, type TreeNode } from "./tree.ts";

/** One level of a grid: how many nodes, and how many tokens each holds. */
export interface GridLevel {
  nodes: number;
  tokens: number;
}

/** Parses `1x4000,50x200` (nodes x tokens per level, root level first). */
export function parseGridSpec(spec: string): GridLevel[] {
  const levels = spec.split(",").map((part, i) => {
    const m = /^\s*(\d+)\s*x\s*(\d+)\s*$/.exec(part);
    if (!m) {
      throw new RangeError(
        `Level ${i} of grid ${JSON.stringify(spec)} must look like NODESxTOKENS, got ${
          JSON.stringify(part)
        }`,
      );
    }
    return { nodes: Number(m[1]), tokens: Number(m[2]) };
  });
  return levels;
}

/** Builds the single tree of a grid; throws `RangeError` for impossible grids. */
export function levelGridTree(levels: readonly GridLevel[]): Tree {
  if (levels.length === 0) throw new RangeError("A level grid needs at least one level");
  if (levels[0]!.nodes !== 1) {
    throw new RangeError(
      `Level 0 of a grid must hold exactly 1 node (the root), got ${levels[0]!.nodes}`,
    );
  }
  // Sizes from the arithmetic first, so an impossible grid is refused before anything is built.
  let nodeCount = 0, tokenTotal = 0, perNode = 0;
  levels.forEach((level, k) => {
    if (!Number.isSafeInteger(level.nodes) || level.nodes < 1 || level.nodes > 1_000_000) {
      throw new RangeError(`Level ${k} must have 1 to 1000000 nodes, got ${level.nodes}`);
    }
    if (!Number.isSafeInteger(level.tokens) || level.tokens < 1) {
      throw new RangeError(
        `Level ${k} must have a positive integer token count, got ${level.tokens}`,
      );
    }
    const above = k > 0 ? levels[k - 1]!.nodes : 0;
    if (level.nodes < above) {
      throw new RangeError(
        `Level ${k} has ${level.nodes} nodes, fewer than the ${above} nodes of level ${
          k - 1
        }: every node above would not get a child`,
      );
    }
    nodeCount += level.nodes;
    tokenTotal += level.nodes * level.tokens;
    perNode = Math.max(perNode, level.tokens);
  });
  const spec = levels.length <= 8
    ? levels.map((l) => `${l.nodes}x${l.tokens}`).join(",")
    : `of ${levels.length} levels`;
  checkTreeBound(
    {
      nodes: nodeCount,
      tokensPerNode: perNode,
      totalTokens: tokenTotal,
      queries: levels[levels.length - 1]!.nodes,
    },
    `Grid ${spec}`,
  );
  const nodes: TreeNode[] = [];
  let prev: number[] = [];
  let id = 0;
  levels.forEach((level, k) => {
    const cur: number[] = [];
    for (let j = 0; j < level.nodes; j++) {
      nodes.push({ id, parent: k === 0 ? null : prev[j % prev.length]!, tokens: level.tokens });
      cur.push(id++);
    }
    prev = cur;
  });
  const queries: Query[] = prev.map((node) => ({ node }));
  return { nodes, queries };
}

/** A one-iteration run over a level grid. */
export class LevelGridRun extends DecodingRun {
  readonly info: WorkloadInfo;
  readonly iterations = 1;
  readonly #tree: Tree;

  /** Creates the run; throws `RangeError` for impossible grids. */
  constructor(levels: readonly GridLevel[], name = "grid") {
    super();
    this.#tree = levelGridTree(levels);
    this.info = {
      kind: "level-grid",
      name,
      params: { levels: levels.map((l) => ({ nodes: l.nodes, tokens: l.tokens })) },
    };
  }

  snapshot(i: number): Tree {
    if (i !== 0) throw new RangeError(`Iteration ${i} is outside the run [0, 0]`);
    return this.#tree;
  }
}

/**
 * The decoding tree: nodes that own contiguous KV segments, and queries (one decoding token each)
 * attached to nodes. A query attends to every KV token of every node on the path from the root to
 * its node, that node included (DeFT paper, section 1.1).
 *
 * @module
 */

/** One node of a decoding tree: a contiguous KV segment (a prompt, a thought, a generated span). */
export interface TreeNode {
  /** Unique non-negative integer id. */
  readonly id: number;
  /** Id of the parent node, or `null` for the root. */
  readonly parent: number | null;
  /** Number of KV tokens the node owns (a positive integer). */
  readonly tokens: number;
}

/** One decoding query token, attached to a node. */
export interface Query {
  /** Id of the node the query sits on. */
  readonly node: number;
}

/** A decoding tree snapshot: nodes plus the queries of one decoding iteration. */
export interface Tree {
  readonly nodes: readonly TreeNode[];
  readonly queries: readonly Query[];
}

/** Sizes above these are rejected as absurd for one attention call. */
export const TREE_LIMITS = {
  maxNodes: 1_000_000,
  maxTokensPerNode: 16_000_000,
  maxTotalTokens: 64_000_000,
  maxQueries: 65_536,
} as const;

/** The largest sizes any tree of a run reaches, computed from its parameters. */
export interface TreeSizeBound {
  /** Most nodes in one tree. */
  nodes: number;
  /** Most tokens in one node. */
  tokensPerNode: number;
  /** Most KV tokens in one tree. */
  totalTokens: number;
  /** Most queries in one tree. */
  queries: number;
}

/**
 * Refuses a run whose trees would break {@linkcode TREE_LIMITS}, from the arithmetic of its
 * parameters and before any tree is built. Throws `RangeError` naming `what` (the run) and the limit.
 */
export function checkTreeBound(bound: TreeSizeBound, what: string): void {
  const checks: [number, number, string][] = [
    [bound.nodes, TREE_LIMITS.maxNodes, "nodes in one tree"],
    [bound.tokensPerNode, TREE_LIMITS.maxTokensPerNode, "tokens in one node"],
    [bound.totalTokens, TREE_LIMITS.maxTotalTokens, "KV tokens in one tree"],
    [bound.queries, TREE_LIMITS.maxQueries, "queries in one tree"],
  ];
  for (const [value, limit, unit] of checks) {
    if (value > limit) {
      throw new RangeError(`${what} reaches ${value} ${unit}, more than the limit of ${limit}`);
    }
  }
}

/** A tree that breaks the model's rules; the message names the field and the node. */
export class TreeError extends Error {
  /** Creates the error with a message that names what is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "TreeError";
  }
}

/**
 * A validated tree with the index structures every consumer needs: node positions by id, parent and
 * children by position, depth, DFS order, and per-query paths. Node positions follow `tree.nodes`.
 *
 * @example Index a tree whose nodes are listed out of DFS order
 * ```ts
 * import assert from "node:assert/strict";
 * import { IndexedTree, TreeError } from "./tree.ts";
 *
 * const ix = new IndexedTree({
 *   nodes: [
 *     { id: 7, parent: null, tokens: 100 },
 *     { id: 3, parent: 9, tokens: 5 },
 *     { id: 9, parent: 7, tokens: 20 },
 *   ],
 *   queries: [{ node: 3 }],
 * });
 * assert.equal(ix.root, 0);
 * assert.deepEqual([...ix.dfsOrder], [0, 2, 1]); // positions in tree.nodes: 7, then 9, then 3
 * assert.deepEqual([...ix.pathTokens], [100, 125, 120]);
 * assert.equal(ix.pathTokens[ix.queryNode[0]!], 125);
 * // The DFS-flattened KV: node 7 at 0, node 9 at 100, node 3 at 120; 125 tokens in all.
 * assert.deepEqual([...ix.dfsStart], [0, 120, 100]);
 * assert.equal(ix.treeTokens, 125);
 * assert.equal(ix.sumPathTokens, 125); // one query, on node 3
 * // A second root breaks the model's rules.
 * const twoRoots = {
 *   nodes: [{ id: 0, parent: null, tokens: 1 }, { id: 1, parent: null, tokens: 1 }],
 *   queries: [],
 * };
 * assert.throws(() => new IndexedTree(twoRoots), TreeError);
 * ```
 */
export class IndexedTree {
  /** The tree this index was built from. */
  readonly tree: Tree;
  /** Position in `tree.nodes` of each node id. */
  readonly indexOf: ReadonlyMap<number, number>;
  /** Parent position of each node (-1 for the root). */
  readonly parent: Int32Array;
  /** Child positions of each node, in the order the nodes appear in `tree.nodes`. */
  readonly children: readonly (readonly number[])[];
  /** Position of the root node. */
  readonly root: number;
  /** Depth of each node in nodes (the root has depth 1). */
  readonly depth: Int32Array;
  /** Node positions in depth-first pre-order (children in `tree.nodes` order). */
  readonly dfsOrder: Int32Array;
  /** Tokens from the root to each node, that node included. */
  readonly pathTokens: Float64Array;
  /**
   * Where each node's tokens start when the tree's KV is concatenated in {@linkcode dfsOrder}
   * (the DFS-flattened KV that DeFT-Flatten cuts into blocks and `tree-mask` masks).
   */
  readonly dfsStart: Float64Array;
  /** N_tree: tokens in the tree, each node counted once. */
  readonly treeTokens: number;
  /** Node position of each query. */
  readonly queryNode: Int32Array;
  /** Σ N_i: tokens on the root-to-node path of every query, summed over queries. */
  readonly sumPathTokens: number;

  /** Builds the index; throws {@linkcode TreeError} when the tree breaks a rule. */
  constructor(tree: Tree) {
    this.tree = tree;
    const n = tree.nodes.length;
    if (n === 0) throw new TreeError("Tree has no nodes: a tree needs exactly one root node");
    if (n > TREE_LIMITS.maxNodes) {
      throw new TreeError(`Tree has ${n} nodes, more than the limit of ${TREE_LIMITS.maxNodes}`);
    }
    const indexOf = new Map<number, number>();
    let total = 0;
    for (let i = 0; i < n; i++) {
      const node = tree.nodes[i]!;
      if (!Number.isSafeInteger(node.id) || node.id < 0) {
        throw new TreeError(`nodes[${i}].id must be a non-negative integer, got ${show(node.id)}`);
      }
      if (indexOf.has(node.id)) {
        throw new TreeError(
          `nodes[${i}].id ${node.id} is a duplicate: nodes[${indexOf.get(node.id)}] has it too`,
        );
      }
      indexOf.set(node.id, i);
      if (!Number.isSafeInteger(node.tokens) || node.tokens <= 0) {
        throw new TreeError(
          `nodes[${i}].tokens must be a positive integer, got ${
            show(node.tokens)
          } (node ${node.id})`,
        );
      }
      if (node.tokens > TREE_LIMITS.maxTokensPerNode) {
        throw new TreeError(
          `nodes[${i}].tokens is ${node.tokens} (node ${node.id}), more than the limit of ${TREE_LIMITS.maxTokensPerNode}`,
        );
      }
      total += node.tokens;
    }
    if (total > TREE_LIMITS.maxTotalTokens) {
      throw new TreeError(
        `Tree holds ${total} tokens, more than the limit of ${TREE_LIMITS.maxTotalTokens}`,
      );
    }
    const parent = new Int32Array(n);
    const children: number[][] = Array.from({ length: n }, () => []);
    let root = -1;
    for (let i = 0; i < n; i++) {
      const node = tree.nodes[i]!;
      if (node.parent === null) {
        if (root >= 0) {
          throw new TreeError(
            `Tree has several roots: node ${
              tree.nodes[root]!.id
            } and node ${node.id} both have parent null`,
          );
        }
        root = i;
        parent[i] = -1;
        continue;
      }
      if (!Number.isSafeInteger(node.parent)) {
        throw new TreeError(
          `nodes[${i}].parent must be a node id or null, got ${
            show(node.parent)
          } (node ${node.id})`,
        );
      }
      const p = indexOf.get(node.parent);
      if (p === undefined) {
        throw new TreeError(
          `nodes[${i}].parent ${node.parent} is an unknown node id (node ${node.id})`,
        );
      }
      if (p === i) throw new TreeError(`nodes[${i}] (node ${node.id}) is its own parent`);
      parent[i] = p;
      children[p]!.push(i);
    }
    if (root < 0) {
      throw new TreeError("Tree has no root: every node has a parent, so ids form a cycle");
    }

    // Iterative DFS from the root; nodes never reached lie on a cycle.
    const depth = new Int32Array(n);
    const dfsOrder = new Int32Array(n);
    const pathTokens = new Float64Array(n);
    let count = 0;
    const stack: number[] = [root];
    depth[root] = 1;
    pathTokens[root] = tree.nodes[root]!.tokens;
    while (stack.length > 0) {
      const v = stack.pop()!;
      dfsOrder[count++] = v;
      const ch = children[v]!;
      for (let c = ch.length - 1; c >= 0; c--) {
        const u = ch[c]!;
        depth[u] = depth[v]! + 1;
        pathTokens[u] = pathTokens[v]! + tree.nodes[u]!.tokens;
        stack.push(u);
      }
    }
    if (count !== n) {
      const seen = new Uint8Array(n);
      for (let k = 0; k < count; k++) seen[dfsOrder[k]!] = 1;
      const stray = tree.nodes[seen.indexOf(0)]!;
      throw new TreeError(
        `Tree has a cycle: node ${stray.id} cannot be reached from the root node ${
          tree.nodes[root]!.id
        }`,
      );
    }

    if (tree.queries.length > TREE_LIMITS.maxQueries) {
      throw new TreeError(
        `Tree has ${tree.queries.length} queries, more than the limit of ${TREE_LIMITS.maxQueries}`,
      );
    }
    const queryNode = new Int32Array(tree.queries.length);
    let sumPathTokens = 0;
    for (let q = 0; q < tree.queries.length; q++) {
      const id = tree.queries[q]!.node;
      const v = indexOf.get(id);
      if (v === undefined) {
        throw new TreeError(`queries[${q}].node ${show(id)} is an unknown node id`);
      }
      queryNode[q] = v;
      sumPathTokens += pathTokens[v]!;
    }
    const dfsStart = new Float64Array(n);
    let flat = 0;
    for (let k = 0; k < n; k++) {
      const v = dfsOrder[k]!;
      dfsStart[v] = flat;
      flat += tree.nodes[v]!.tokens;
    }

    this.indexOf = indexOf;
    this.parent = parent;
    this.children = children;
    this.root = root;
    this.depth = depth;
    this.dfsOrder = dfsOrder;
    this.pathTokens = pathTokens;
    this.dfsStart = dfsStart;
    this.treeTokens = flat;
    this.queryNode = queryNode;
    this.sumPathTokens = sumPathTokens;
  }

  /** Number of nodes. */
  get nodeCount(): number {
    return this.tree.nodes.length;
  }

  /** Number of queries. */
  get queryCount(): number {
    return this.tree.queries.length;
  }

  /** Tokens owned by the node at position `v`. */
  tokens(v: number): number {
    return this.tree.nodes[v]!.tokens;
  }

  /** Node positions on the path from the root to query `q`'s node, root first. */
  queryPath(q: number): number[] {
    const path: number[] = [];
    for (let v = this.queryNode[q]!; v >= 0; v = this.parent[v]!) path.push(v);
    return path.reverse();
  }

  /**
   * Queries that see each node: for node v, the sorted ids of queries whose path contains v
   * (the queries on v and on every node below it).
   */
  queriesByNode(): number[][] {
    const out: number[][] = Array.from({ length: this.nodeCount }, () => []);
    for (let q = 0; q < this.queryCount; q++) {
      for (let v = this.queryNode[q]!; v >= 0; v = this.parent[v]!) out[v]!.push(q);
    }
    return out;
  }
}

/** Derived facts of one tree snapshot (DeFT paper, Table 11 notation). */
export interface TreeFacts {
  /** Number of nodes. */
  nodes: number;
  /** Nodes on the longest root-to-node path. */
  depth: number;
  /** N_tree: tokens in the tree. */
  treeTokens: number;
  /** Number of queries. */
  queries: number;
  /** Σ N_i: the sum over queries of the tokens on their root-to-node paths. */
  pathTokens: number;
  /** F_s = Σ N_i / N_tree (0 for a tree without queries). */
  sharingFactor: number;
  /** Number of nodes without children. */
  leaves: number;
}

/**
 * Computes {@linkcode TreeFacts} for a tree (or an existing index of it).
 *
 * @example A shared prompt of 4000 tokens with two branches of 10, a query on each branch
 * ```ts
 * import assert from "node:assert/strict";
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
 * assert.equal(facts.treeTokens, 4020); // N_tree: the prompt is stored once
 * assert.equal(facts.pathTokens, 8020); // ΣN_i: each query reads 4000 + 10 tokens
 * assert.equal(facts.sharingFactor, 8020 / 4020); // F_s, close to 2: two queries share the prompt
 * assert.deepEqual([facts.nodes, facts.depth, facts.leaves, facts.queries], [3, 2, 2, 2]);
 * ```
 */
export function treeFacts(tree: Tree | IndexedTree): TreeFacts {
  const ix = tree instanceof IndexedTree ? tree : new IndexedTree(tree);
  const { treeTokens, sumPathTokens: pathTokens } = ix;
  let depth = 0;
  let leaves = 0;
  for (let v = 0; v < ix.nodeCount; v++) {
    depth = Math.max(depth, ix.depth[v]!);
    if (ix.children[v]!.length === 0) leaves++;
  }
  return {
    nodes: ix.nodeCount,
    depth,
    treeTokens,
    queries: ix.queryCount,
    pathTokens,
    sharingFactor: ix.queryCount === 0 ? 0 : pathTokens / treeTokens,
    leaves,
  };
}

/**
 * A tree's KV flattened in depth-first order and cut into equal blocks: DeFT-Flatten's geometry
 * (DeFT paper, section 3.4), which the report draws. `kernels/methods/deft_flatten.ts` cuts the
 * same blocks with slots and masks; a test keeps the two equal.
 */
export interface FlattenedTree {
  /** The index the geometry was computed on. */
  ix: IndexedTree;
  /** Node positions in DFS order. */
  order: number[];
  /** Start of each node (by position) in the flattened KV. */
  offset: number[];
  /** N_tree: tokens in the flattened KV. */
  totalTokens: number;
  /** Tokens per block (the last block holds the rest). */
  blockSize: number;
  /** Number of blocks: ⌈N_tree / blockSize⌉. */
  blocks: number;
  /** Distinct queries that see at least one token of each block. */
  blockQueries: number[];
}

/**
 * Flattens a tree's KV in DFS order and cuts it into blocks of `blockSize` tokens, counting the
 * queries each block serves, in O(nodes + queries + blocks). Throws `RangeError` for a block size
 * that is not a positive integer, {@linkcode TreeError} for a broken tree.
 *
 * With queries ordered by the DFS position of their node, the queries that see a node (those in its
 * subtree) are one range, and so are those that see a run of consecutive DFS nodes: from the first
 * node's range start to the largest range end.
 *
 * @example A 100-token prompt with two branches, cut into blocks of 64
 * ```ts
 * import assert from "node:assert/strict";
 * import { flattenTree } from "./tree.ts";
 *
 * const f = flattenTree({
 *   nodes: [
 *     { id: 0, parent: null, tokens: 100 },
 *     { id: 1, parent: 0, tokens: 20 },
 *     { id: 2, parent: 0, tokens: 30 },
 *   ],
 *   queries: [{ node: 1 }, { node: 2 }, { node: 2 }],
 * }, 64);
 * assert.deepEqual(f.offset, [0, 100, 120]); // node 1 at token 100, node 2 after it
 * assert.equal(f.blocks, 3); // 150 tokens: [0, 64), [64, 128), [128, 150)
 * assert.deepEqual(f.blockQueries, [3, 3, 2]); // the prompt serves every query
 * ```
 */
export function flattenTree(tree: Tree | IndexedTree, blockSize: number): FlattenedTree {
  if (!(Number.isSafeInteger(blockSize) && blockSize > 0)) {
    throw new RangeError(`Block size must be a positive integer, got ${blockSize}`);
  }
  const ix = tree instanceof IndexedTree ? tree : new IndexedTree(tree);
  const n = ix.nodeCount;
  const order = Array.from(ix.dfsOrder);
  // Queries on each node, and in each subtree (children before parents: reverse DFS order).
  const own = new Float64Array(n);
  for (let q = 0; q < ix.queryCount; q++) own[ix.queryNode[q]!]!++;
  const below = Float64Array.from(own);
  for (let i = n - 1; i > 0; i--) {
    const v = order[i]!;
    below[ix.parent[v]!]! += below[v]!;
  }
  // Each node's query range is [lo, lo + below): a node's own queries, then its subtrees'.
  const lo = new Float64Array(n);
  const offset = new Array<number>(n).fill(0);
  let queriesBefore = 0, t = 0;
  for (const v of order) {
    lo[v] = queriesBefore;
    queriesBefore += own[v]!;
    offset[v] = t;
    t += ix.tokens(v);
  }
  const blocks = Math.ceil(t / blockSize);
  const first = new Float64Array(blocks).fill(-1);
  const end = new Float64Array(blocks);
  for (const v of order) {
    const b0 = Math.floor(offset[v]! / blockSize);
    const b1 = Math.floor((offset[v]! + ix.tokens(v) - 1) / blockSize);
    for (let b = b0; b <= b1; b++) {
      if (first[b]! < 0) first[b] = lo[v]!;
      end[b] = Math.max(end[b]!, lo[v]! + below[v]!);
    }
  }
  const blockQueries = Array.from({ length: blocks }, (_, b) => end[b]! - first[b]!);
  return { ix, order, offset, totalTokens: t, blockSize, blocks, blockQueries };
}

/** Formats a value for an error message. */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  // JSON has no Infinity: a number like 1e400 reads as one. JSON.stringify would say null.
  if (typeof value === "number" && !Number.isFinite(value)) {
    return Number.isNaN(value) ? "NaN" : `${value} (a number too large to represent)`;
  }
  if (value === undefined) return "nothing";
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return String(value);
  }
}

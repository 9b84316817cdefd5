/**
 * The versioned JSON formats of trees and decoding runs.
 *
 * A tree document (`deft-bench/tree`, version 1):
 * ```json
 * { "format": "deft-bench/tree", "version": 1,
 *   "nodes": [{ "id": 0, "parent": null, "tokens": 4000 }, { "id": 1, "parent": 0, "tokens": 1 }],
 *   "queries": [{ "node": 1 }] }
 * ```
 * A run document (`deft-bench/run`, version 1) holds the workload's description and a list of
 * snapshots, each a tree plus its iteration index and weight (the iterations it stands for):
 * ```json
 * { "format": "deft-bench/run", "version": 1,
 *   "workload": { "kind": "few-shot", "name": "few-shot-b20", "params": { ... } },
 *   "iterations": 400,
 *   "snapshots": [{ "iteration": 0, "weight": 1, "tree": { "nodes": [...], "queries": [...] } }] }
 * ```
 * Key order is fixed, so the same content always serialises to the same bytes.
 *
 * @module
 */

import { IndexedTree, type Query, show, type Tree, TreeError, type TreeNode } from "./tree.ts";

/** Format tag of a tree document. */
export const TREE_FORMAT = "deft-bench/tree";
/** Format tag of a run document. */
export const RUN_FORMAT = "deft-bench/run";
/** Current version of both formats. */
export const FORMAT_VERSION = 1;

/** A workload's identity inside a run document. */
export interface WorkloadInfo {
  kind: string;
  name: string;
  params: Record<string, unknown>;
}

/** One snapshot of a run document. */
export interface RunSnapshot {
  /** 0-based decoding iteration. */
  iteration: number;
  /** Number of iterations of the full run this snapshot stands for. */
  weight: number;
  tree: Tree;
}

/** A decoding run (all or a sample of its snapshots) as stored in JSON. */
export interface RunDocument {
  workload: WorkloadInfo;
  iterations: number;
  snapshots: RunSnapshot[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Turns a tree into a plain object with a fixed key order. */
function treeBody(tree: Tree): { nodes: TreeNode[]; queries: Query[] } {
  return {
    nodes: tree.nodes.map((n) => ({ id: n.id, parent: n.parent, tokens: n.tokens })),
    queries: tree.queries.map((q) => ({ node: q.node })),
  };
}

/** Serialises a tree as a `deft-bench/tree` document (stable bytes). */
export function stringifyTree(tree: Tree): string {
  return JSON.stringify({ format: TREE_FORMAT, version: FORMAT_VERSION, ...treeBody(tree) }) +
    "\n";
}

/** Serialises a run document (stable bytes). */
export function stringifyRun(run: RunDocument): string {
  return JSON.stringify({
    format: RUN_FORMAT,
    version: FORMAT_VERSION,
    workload: { kind: run.workload.kind, name: run.workload.name, params: run.workload.params },
    iterations: run.iterations,
    snapshots: run.snapshots.map((s) => ({
      iteration: s.iteration,
      weight: s.weight,
      tree: treeBody(s.tree),
    })),
  }) + "\n";
}

/**
 * Reads the `nodes` and `queries` of a tree body (`where` prefixes field names in messages) and
 * validates the tree. Throws {@linkcode TreeError} naming the offending field.
 */
function parseTreeBody(value: unknown, where: string): Tree {
  if (!isObject(value)) throw new TreeError(`${where || "tree"} must be an object`);
  const at = where ? `${where}.` : "";
  const nodesRaw = value.nodes;
  if (!Array.isArray(nodesRaw)) {
    throw new TreeError(`${at}nodes must be an array, got ${show(nodesRaw)}`);
  }
  const nodes: TreeNode[] = nodesRaw.map((n, i) => {
    if (!isObject(n)) throw new TreeError(`${at}nodes[${i}] must be an object, got ${show(n)}`);
    for (const key of Object.keys(n)) {
      if (key !== "id" && key !== "parent" && key !== "tokens") {
        throw new TreeError(`${at}nodes[${i}] has an unknown field ${show(key)}`);
      }
    }
    if (typeof n.id !== "number") {
      throw new TreeError(`${at}nodes[${i}].id must be a number, got ${show(n.id)}`);
    }
    if (!("parent" in n) || (n.parent !== null && typeof n.parent !== "number")) {
      throw new TreeError(
        `${at}nodes[${i}].parent must be a node id or null, got ${show(n.parent)} (node ${n.id})`,
      );
    }
    if (typeof n.tokens !== "number") {
      throw new TreeError(
        `${at}nodes[${i}].tokens must be a number, got ${show(n.tokens)} (node ${n.id})`,
      );
    }
    return { id: n.id, parent: n.parent as number | null, tokens: n.tokens };
  });
  const queriesRaw = value.queries ?? [];
  if (!Array.isArray(queriesRaw)) {
    throw new TreeError(`${at}queries must be an array, got ${show(queriesRaw)}`);
  }
  const queries: Query[] = queriesRaw.map((q, i) => {
    if (!isObject(q) || typeof q.node !== "number") {
      throw new TreeError(`${at}queries[${i}] must be {"node": <node id>}, got ${show(q)}`);
    }
    return { node: q.node };
  });
  const tree = { nodes, queries };
  try {
    new IndexedTree(tree);
  } catch (e) {
    if (e instanceof TreeError && at) throw new TreeError(`${where}: ${e.message}`);
    throw e;
  }
  return tree;
}

function checkHeader(doc: Record<string, unknown>, format: string): void {
  if (doc.format !== format) {
    throw new TreeError(`format must be ${show(format)}, got ${show(doc.format)}`);
  }
  if (doc.version !== FORMAT_VERSION) {
    throw new TreeError(
      `version ${
        show(doc.version)
      } of ${format} is not supported (this build reads version ${FORMAT_VERSION})`,
    );
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TreeError(`Not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Parses and validates a `deft-bench/tree` document. Throws {@linkcode TreeError} naming the field
 * (and the node) that breaks a rule.
 *
 * @example Read a prompt with two branches, each with a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTree } from "./format.ts";
 *
 * const tree = parseTree(JSON.stringify({
 *   format: "deft-bench/tree",
 *   version: 1,
 *   nodes: [
 *     { id: 0, parent: null, tokens: 4000 },
 *     { id: 1, parent: 0, tokens: 10 },
 *     { id: 2, parent: 0, tokens: 10 },
 *   ],
 *   queries: [{ node: 1 }, { node: 2 }],
 * }));
 * assert.equal(tree.nodes.length, 3);
 * assert.deepEqual(tree.queries, [{ node: 1 }, { node: 2 }]);
 * ```
 *
 * @example A malformed tree is refused with a message naming the field
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTree } from "./format.ts";
 * import { TreeError } from "./tree.ts";
 *
 * const text = JSON.stringify({
 *   format: "deft-bench/tree",
 *   version: 1,
 *   nodes: [{ id: 0, parent: null, tokens: 0 }],
 *   queries: [],
 * });
 * assert.throws(() => parseTree(text), TreeError);
 * assert.throws(() => parseTree(text), /nodes\[0\]\.tokens must be a positive integer, got 0/);
 * ```
 */
export function parseTree(text: string): Tree {
  const doc = parseJson(text);
  if (!isObject(doc)) throw new TreeError("A tree document must be a JSON object");
  checkHeader(doc, TREE_FORMAT);
  return parseTreeBody(doc, "");
}

/**
 * Parses and validates a `deft-bench/run` document (every snapshot's tree is validated).
 *
 * @example A 100-iteration run stored as two weighted snapshots
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRun, stringifyRun } from "./format.ts";
 *
 * const tree = (branchTokens: number) => ({
 *   nodes: [
 *     { id: 0, parent: null, tokens: 500 },
 *     { id: 1, parent: 0, tokens: branchTokens },
 *   ],
 *   queries: [{ node: 1 }],
 * });
 * const run = parseRun(JSON.stringify({
 *   format: "deft-bench/run",
 *   version: 1,
 *   workload: { kind: "few-shot", name: "tiny", params: { prompt: 500 } },
 *   iterations: 100,
 *   snapshots: [
 *     { iteration: 0, weight: 50, tree: tree(1) },
 *     { iteration: 50, weight: 50, tree: tree(51) },
 *   ],
 * }));
 * assert.equal(run.workload.name, "tiny");
 * assert.deepEqual(run.snapshots.map((s) => s.iteration), [0, 50]);
 * // The weights must add up to the iterations: each snapshot stands for a stretch of the run.
 * const short = stringifyRun({ ...run, iterations: 90 });
 * assert.throws(() => parseRun(short), /weights sum to 100, but the run has 90 iterations/);
 * ```
 */
export function parseRun(text: string): RunDocument {
  const doc = parseJson(text);
  if (!isObject(doc)) throw new TreeError("A run document must be a JSON object");
  checkHeader(doc, RUN_FORMAT);
  const w = doc.workload;
  if (!isObject(w) || typeof w.kind !== "string" || typeof w.name !== "string") {
    throw new TreeError(`workload must be {"kind", "name", "params"}, got ${show(w)}`);
  }
  const iterations = doc.iterations;
  if (typeof iterations !== "number" || !Number.isSafeInteger(iterations) || iterations < 1) {
    throw new TreeError(`iterations must be a positive integer, got ${show(iterations)}`);
  }
  if (!Array.isArray(doc.snapshots) || doc.snapshots.length === 0) {
    throw new TreeError(`snapshots must be a non-empty array, got ${show(doc.snapshots)}`);
  }
  let weightSum = 0;
  let prevIteration = -1;
  const snapshots = doc.snapshots.map((s, i): RunSnapshot => {
    if (!isObject(s)) throw new TreeError(`snapshots[${i}] must be an object`);
    const it = s.iteration;
    if (typeof it !== "number" || !Number.isSafeInteger(it) || it < 0 || it >= iterations) {
      throw new TreeError(
        `snapshots[${i}].iteration must be an integer in [0, ${iterations - 1}], got ${show(it)}`,
      );
    }
    const prev = prevIteration;
    prevIteration = it;
    if (it <= prev) {
      throw new TreeError(
        it === prev
          ? `snapshots[${i}].iteration ${it} is a duplicate: snapshots[${
            i - 1
          }] has it too (one snapshot per iteration)`
          : `snapshots[${i}].iteration ${it} is smaller than snapshots[${
            i - 1
          }].iteration ${prev}: snapshots must be in increasing iteration order`,
      );
    }
    const weight = s.weight;
    if (typeof weight !== "number" || !(weight > 0) || !Number.isFinite(weight)) {
      throw new TreeError(`snapshots[${i}].weight must be a positive number, got ${show(weight)}`);
    }
    weightSum += weight;
    return { iteration: it, weight, tree: parseTreeBody(s.tree, `snapshots[${i}].tree`) };
  });
  if (Math.abs(weightSum - iterations) > 1e-6 * iterations) {
    throw new TreeError(
      `snapshot weights sum to ${weightSum}, but the run has ${iterations} iterations`,
    );
  }
  return {
    workload: { kind: w.kind, name: w.name, params: isObject(w.params) ? w.params : {} },
    iterations,
    snapshots,
  };
}

/**
 * Parses either document kind: a tree becomes a one-snapshot run of kind `file`.
 *
 * @example A tree document read as a run
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWorkloadDocument, stringifyTree } from "./format.ts";
 *
 * const text = stringifyTree({
 *   nodes: [{ id: 0, parent: null, tokens: 64 }],
 *   queries: [{ node: 0 }],
 * });
 * const run = parseWorkloadDocument(text, "one-node");
 * assert.deepEqual(run.workload, { kind: "file", name: "one-node", params: {} });
 * assert.equal(run.iterations, 1);
 * assert.equal(run.snapshots[0]!.tree.nodes[0]!.tokens, 64);
 * ```
 */
export function parseWorkloadDocument(text: string, name = "tree"): RunDocument {
  const doc = parseJson(text);
  if (isObject(doc) && doc.format === TREE_FORMAT) {
    return {
      workload: { kind: "file", name, params: {} },
      iterations: 1,
      snapshots: [{ iteration: 0, weight: 1, tree: parseTree(text) }],
    };
  }
  if (isObject(doc) && doc.format === RUN_FORMAT) return parseRun(text);
  throw new TreeError(
    `Unknown document: format must be ${show(TREE_FORMAT)} or ${show(RUN_FORMAT)}, got ${
      show(isObject(doc) ? doc.format : doc)
    }`,
  );
}

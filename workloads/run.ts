/**
 * A workload is a decoding run: one tree snapshot per decoding iteration. Runs are produced lazily
 * and can be sampled: K iterations spread evenly over the run, each weighted by the number of
 * iterations of its stratum, so that weighted sums estimate run totals.
 *
 * @module
 */

import type { RunDocument, WorkloadInfo } from "./format.ts";
import { IndexedTree, type Tree, type TreeFacts, treeFacts } from "./tree.ts";

/** A snapshot of a run. */
export interface Snapshot {
  /** 0-based decoding iteration. */
  iteration: number;
  /** Iterations of the full run that this snapshot stands for (1 unless sampled). */
  weight: number;
  tree: Tree;
}

/** A lazily generated decoding run. */
export abstract class DecodingRun {
  /** Kind, preset name and parameters; stored in every document and result. */
  abstract readonly info: WorkloadInfo;
  /** Number of decoding iterations in the run. */
  abstract readonly iterations: number;
  /** The tree at 0-based iteration `i`. */
  abstract snapshot(i: number): Tree;

  /** Every snapshot, in order, built one at a time. */
  *snapshots(): Generator<Snapshot> {
    for (let i = 0; i < this.iterations; i++) {
      yield { iteration: i, weight: 1, tree: this.snapshot(i) };
    }
  }

  /**
   * `k` snapshots spread over the run: the run is cut into `k` near-equal strata of consecutive
   * iterations and the middle iteration of each stands for its stratum (weight = stratum size).
   * With `k >= iterations` every iteration is returned with weight 1.
   */
  sample(k: number): Snapshot[] {
    if (!Number.isSafeInteger(k) || k < 1) {
      throw new RangeError(`Sample size must be a positive integer, got ${k}`);
    }
    return sampleIterations(this.iterations, k).map(({ iteration, weight }) => ({
      iteration,
      weight,
      tree: this.snapshot(iteration),
    }));
  }

  /** The run (all iterations, or a sample of `k`) as a document. */
  toDocument(k?: number): RunDocument {
    const snapshots = k === undefined ? [...this.snapshots()] : this.sample(k);
    return { workload: this.info, iterations: this.iterations, snapshots };
  }
}

/** The strata of {@linkcode DecodingRun.sample}: iteration indices and weights. */
export function sampleIterations(
  iterations: number,
  k: number,
): { iteration: number; weight: number }[] {
  if (k >= iterations) {
    return Array.from({ length: iterations }, (_, i) => ({ iteration: i, weight: 1 }));
  }
  const out: { iteration: number; weight: number }[] = [];
  for (let j = 0; j < k; j++) {
    const lo = Math.floor((j * iterations) / k);
    const hi = Math.floor(((j + 1) * iterations) / k);
    out.push({ iteration: Math.floor((lo + hi - 1) / 2), weight: hi - lo });
  }
  return out;
}

/** A run read from a document: its stored snapshots with their weights. */
export class StoredRun extends DecodingRun {
  readonly info: WorkloadInfo;
  readonly iterations: number;
  readonly #doc: RunDocument;

  /** Wraps a parsed run document. */
  constructor(doc: RunDocument) {
    super();
    this.#doc = doc;
    this.info = doc.workload;
    this.iterations = doc.iterations;
  }

  /** The stored snapshot at iteration `i`, or the nearest stored one before it. */
  snapshot(i: number): Tree {
    let best = this.#doc.snapshots[0]!;
    for (const s of this.#doc.snapshots) if (s.iteration <= i) best = s;
    return best.tree;
  }

  /** The stored snapshots, with their stored weights. */
  override *snapshots(): Generator<Snapshot> {
    yield* this.#doc.snapshots;
  }

  /** The stored snapshots, thinned to `k` when there are more (weights merged). */
  override sample(k: number): Snapshot[] {
    const all = this.#doc.snapshots;
    if (k >= all.length) return all.slice();
    return sampleIterations(all.length, k).map(({ iteration }, j, arr) => {
      const lo = Math.floor((j * all.length) / arr.length);
      const hi = Math.floor(((j + 1) * all.length) / arr.length);
      let weight = 0;
      for (let x = lo; x < hi; x++) weight += all[x]!.weight;
      return { ...all[iteration]!, weight };
    });
  }
}

/** A run under another name (its trees, iterations and sampling unchanged). */
export class RenamedRun extends DecodingRun {
  readonly info: WorkloadInfo;
  readonly iterations: number;
  readonly #inner: DecodingRun;

  /** Wraps `inner`, reporting it as `name`. */
  constructor(inner: DecodingRun, name: string) {
    super();
    this.#inner = inner;
    this.info = { ...inner.info, name };
    this.iterations = inner.iterations;
  }

  snapshot(i: number): Tree {
    return this.#inner.snapshot(i);
  }

  override snapshots(): Generator<Snapshot> {
    return this.#inner.snapshots();
  }

  override sample(k: number): Snapshot[] {
    return this.#inner.sample(k);
  }
}

/** Totals of tree facts over a run (weighted by snapshot weights). */
export interface RunFacts {
  /** Iterations in the run. */
  iterations: number;
  /** Snapshots the totals were computed from. */
  snapshots: number;
  /** Σ over iterations of N_tree. */
  treeTokens: number;
  /** Σ over iterations of Σ N_i. */
  pathTokens: number;
  /** Σ over iterations of queries. */
  queries: number;
  /** Largest snapshot facts seen (nodes, depth, N_tree, queries). */
  max: Pick<TreeFacts, "nodes" | "depth" | "treeTokens" | "queries">;
  /** Run-average KV IO reduction of tree-aware over sequence methods: 1 - ΣN_tree / ΣΣN_i. */
  kvIoReduction: number;
}

/** Aggregates facts over every snapshot of a run (or of the given snapshots). */
export function runFacts(run: DecodingRun, snapshots?: Iterable<Snapshot>): RunFacts {
  let treeTokens = 0, pathTokens = 0, queries = 0, count = 0;
  const max = { nodes: 0, depth: 0, treeTokens: 0, queries: 0 };
  for (const s of snapshots ?? run.snapshots()) {
    const f = treeFacts(new IndexedTree(s.tree));
    treeTokens += s.weight * f.treeTokens;
    pathTokens += s.weight * f.pathTokens;
    queries += s.weight * f.queries;
    max.nodes = Math.max(max.nodes, f.nodes);
    max.depth = Math.max(max.depth, f.depth);
    max.treeTokens = Math.max(max.treeTokens, f.treeTokens);
    max.queries = Math.max(max.queries, f.queries);
    count++;
  }
  return {
    iterations: run.iterations,
    snapshots: count,
    treeTokens,
    pathTokens,
    queries,
    max,
    kvIoReduction: pathTokens === 0 ? 0 : 1 - treeTokens / pathTokens,
  };
}

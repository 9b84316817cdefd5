/**
 * Checking a method's output against the float64 reference: one tolerance, one row sampler and one
 * verdict, used by `bench`, `run`, `tune`, the conformance suite and the tools.
 *
 * A method passes when every output value was written and is finite (over the whole output) and
 * the largest relative error over the checked rows (per row: max |actual - expected| / max
 * |expected|) is within {@linkcode TOLERANCE} of its storage dtype.
 *
 * @module
 */

import { Rng } from "../workloads/rng.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import type { AttentionData, KvLayout } from "./layout.ts";
import { compareOutput, referenceAttention, type Row, scanOutput } from "./reference.ts";

/**
 * Largest relative error against the float64 reference per storage dtype: 1e-4 in f32; 1e-2 in
 * f16, because the paper's kernels reach 0.4% in f16 and we allow 1%.
 */
export const TOLERANCE: Readonly<Record<Dtype, number>> = { f32: 1e-4, f16: 1e-2 };

/** Every (query, head) row of a problem, in output order. */
export function allRows(queries: number, heads: number): Row[] {
  return Array.from({ length: queries * heads }, (_, i) => ({
    query: Math.floor(i / heads),
    head: i % heads,
  }));
}

/**
 * A seeded sample of `count` distinct (query, head) rows in output order (every row when there are
 * no more than `count`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sampleRows } from "./verify.ts";
 *
 * assert.equal(sampleRows(2, 3, 10, 1).length, 6); // all six rows
 * const some = sampleRows(100, 32, 64, 5);
 * assert.equal(new Set(some.map((r) => `${r.query}/${r.head}`)).size, 64);
 * assert.deepEqual(sampleRows(100, 32, 64, 5), some); // the same seed, the same rows
 * ```
 */
export function sampleRows(queries: number, heads: number, count: number, seed: number): Row[] {
  const total = queries * heads;
  if (total <= count) return allRows(queries, heads);
  const pick = (i: number): Row => ({ query: Math.floor(i / heads), head: i % heads });
  const rng = new Rng(seed);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(rng.int(0, total - 1));
  return [...chosen].sort((a, b) => a - b).map(pick);
}

/** The float64 reference outputs of some rows of a problem. */
export interface Reference {
  /** The rows checked. */
  readonly rows: readonly Row[];
  /** Their reference outputs, `[row][d]` in the order of `rows`. */
  readonly expected: Float64Array;
}

/** The reference of `rows` (every row when omitted) of a problem's tree and data. */
export function referenceOf(
  problem: { readonly ix: IndexedTree; readonly layout: KvLayout; readonly data: AttentionData },
  rows?: readonly Row[],
): Reference {
  const list = rows ?? allRows(problem.ix.queryCount, problem.data.shape.qHeads);
  return {
    rows: list,
    expected: referenceAttention(problem.ix, problem.layout, problem.data, list),
  };
}

/** What {@linkcode verify} found. */
export interface Verdict {
  /** Rows compared. */
  rows: number;
  /** Largest relative error over the rows (see the module). */
  maxRelError: number;
  /** Largest absolute error over the rows. */
  maxAbsError: number;
  /** The row with the largest relative error. */
  worst: Row | null;
  /** The bound `maxRelError` was held to. */
  tolerance: number;
  /** Output values never written (still the poison pattern), over the whole output. */
  unwritten: number;
  /** NaN or infinite output values, over the whole output. */
  nonFinite: number;
  /** Rows holding an unwritten or non-finite value (at most 64). */
  badRows: Row[];
  /** Every value written and finite, and the error within the tolerance. */
  passed: boolean;
}

/**
 * Checks a GPU output `[query][qHead][d]` (f32) against a reference with the tolerance of `dtype`.
 *
 * @example An output one part in a million off passes in f32
 * ```ts
 * import assert from "node:assert/strict";
 * import { verify } from "./verify.ts";
 *
 * const shape = { qHeads: 1, headDim: 2 };
 * const ref = { rows: [{ query: 0, head: 0 }], expected: new Float64Array([1, 2]) };
 * const v = verify(new Float32Array([1, 2.000002]), ref, shape, "f32");
 * assert.ok(v.passed && v.maxRelError < 1e-4);
 * assert.equal(verify(new Float32Array([1, NaN]), ref, shape, "f16").nonFinite, 1);
 * ```
 */
export function verify(
  output: Float32Array,
  ref: Reference,
  shape: Pick<ModelShape, "qHeads" | "headDim">,
  dtype: Dtype,
): Verdict {
  const r = compareOutput(output, ref.expected, shape, 0, ref.rows);
  const scan = scanOutput(output, shape);
  const tolerance = TOLERANCE[dtype];
  return {
    rows: r.rows,
    maxRelError: r.maxRelError,
    maxAbsError: r.maxAbsError,
    worst: r.worst,
    tolerance,
    unwritten: scan.unwritten,
    nonFinite: scan.nonFinite,
    badRows: scan.badRows,
    passed: scan.unwritten === 0 && scan.nonFinite === 0 && r.maxRelError <= tolerance,
  };
}

/** What is wrong with a verdict, one phrase per problem (empty when it passed). */
export function verdictProblems(v: Verdict): string[] {
  const problems: string[] = [];
  if (!(v.maxRelError <= v.tolerance)) {
    const worst = v.worst ? ` (worst row: query ${v.worst.query}, head ${v.worst.head})` : "";
    problems.push(
      `max relative error ${
        v.maxRelError.toPrecision(3)
      } > ${v.tolerance} over ${v.rows} rows${worst}`,
    );
  }
  if (v.unwritten > 0) problems.push(`${v.unwritten} output values unwritten`);
  if (v.nonFinite > 0) problems.push(`${v.nonFinite} NaN or infinite values`);
  return problems;
}

/**
 * Exact float64 CPU tree attention: the oracle every GPU method is checked against. For query q and
 * query head h it gathers the KV of every node on q's root-to-node path (through the shared layout),
 * and computes softmax(q·K^T / sqrt(d))·V with a max-shifted, numerically stable softmax.
 *
 * @module
 */

import type { IndexedTree } from "../workloads/tree.ts";
import type { AttentionData, KvLayout } from "./layout.ts";

/** One output row: a query and a query head. */
export interface Row {
  query: number;
  head: number;
}

/** Slots a query sees, in path order (root first). */
export function querySlots(ix: IndexedTree, layout: KvLayout, q: number): Int32Array {
  const path = ix.queryPath(q);
  let n = 0;
  for (const v of path) n += ix.tokens(v);
  const out = new Int32Array(n);
  let o = 0;
  for (const v of path) {
    const s = layout.slotStart[v]!;
    for (let t = 0; t < ix.tokens(v); t++) out[o++] = s + t;
  }
  return out;
}

/**
 * Reference outputs for the given rows (all rows when omitted), as float64 `[row][d]` in the order
 * of `rows` (or `[query][qHead][d]` for all rows).
 */
export function referenceAttention(
  ix: IndexedTree,
  layout: KvLayout,
  data: AttentionData,
  rows?: readonly Row[],
): Float64Array {
  const { qHeads, kvHeads, headDim: d } = data.shape;
  const group = qHeads / kvHeads;
  const list: Row[] = rows ? rows.slice() : [];
  if (!rows) {
    for (let q = 0; q < ix.queryCount; q++) {
      for (let h = 0; h < qHeads; h++) list.push({ query: q, head: h });
    }
  }
  const out = new Float64Array(list.length * d);
  const scale = 1 / Math.sqrt(d);
  const slotCache = new Map<number, Int32Array>();
  const acc = new Float64Array(d);
  const qv = new Float64Array(d);
  list.forEach(({ query, head }, r) => {
    if (query < 0 || query >= ix.queryCount || head < 0 || head >= qHeads) {
      throw new RangeError(`Row (query ${query}, head ${head}) is outside the problem`);
    }
    let slots = slotCache.get(query);
    if (!slots) {
      slots = querySlots(ix, layout, query);
      slotCache.set(query, slots);
    }
    const kvh = Math.floor(head / group);
    const qOff = (query * qHeads + head) * d;
    for (let i = 0; i < d; i++) qv[i] = data.q[qOff + i]!;
    const scores = new Float64Array(slots.length);
    let max = -Infinity;
    for (let j = 0; j < slots.length; j++) {
      const kOff = (slots[j]! * kvHeads + kvh) * d;
      let s = 0;
      for (let i = 0; i < d; i++) s += qv[i]! * data.k[kOff + i]!;
      s *= scale;
      scores[j] = s;
      if (s > max) max = s;
    }
    acc.fill(0);
    let sum = 0;
    for (let j = 0; j < slots.length; j++) {
      const p = Math.exp(scores[j]! - max);
      sum += p;
      const vOff = (slots[j]! * kvHeads + kvh) * d;
      for (let i = 0; i < d; i++) acc[i]! += p * data.v[vOff + i]!;
    }
    for (let i = 0; i < d; i++) out[r * d + i] = acc[i]! / sum;
  });
  return out;
}

/** Bit pattern written into outputs before a run; a value still equal to it was never written. */
export const POISON_BITS = 0x7fbadbad;

/** Result of comparing a GPU output with the reference. */
export interface ErrorReport {
  /** Max over rows of max|actual - expected| / max|expected| within the row. */
  maxRelError: number;
  /** Max absolute difference over all compared elements. */
  maxAbsError: number;
  /** The row with the largest relative error. */
  worst: Row | null;
  /** Elements still holding the poison pattern. */
  unwritten: number;
  /** Elements that are NaN or infinite (poison excluded). */
  nonFinite: number;
  /** Rows compared. */
  rows: number;
}

/** Unwritten (still poisoned) and NaN or infinite elements of a whole output. */
export interface OutputScan {
  /** Elements still holding the poison pattern. */
  unwritten: number;
  /** Elements that are NaN or infinite (poison excluded). */
  nonFinite: number;
  /** Rows `[query][qHead]` holding at least one such element, in order (at most `maxRows`). */
  badRows: Row[];
}

/**
 * Scans a whole GPU output `[query][qHead][d]` for elements a method never wrote (the poison
 * pattern) and for NaN or infinite ones; cheap next to a reference check of sampled rows.
 */
export function scanOutput(
  actual: Float32Array,
  shape: { qHeads: number; headDim: number },
  maxRows = 64,
): OutputScan {
  const bits = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  let unwritten = 0, nonFinite = 0;
  const badRows: Row[] = [];
  const d = shape.headDim;
  for (let i = 0; i < actual.length; i++) {
    if (Number.isFinite(actual[i]!)) continue;
    if (bits[i] === POISON_BITS) unwritten++;
    else nonFinite++;
    const row = Math.floor(i / d);
    const last = badRows[badRows.length - 1];
    const q = Math.floor(row / shape.qHeads), h = row % shape.qHeads;
    if (badRows.length < maxRows && !(last && last.query === q && last.head === h)) {
      badRows.push({ query: q, head: h });
    }
  }
  return { unwritten, nonFinite, badRows };
}

/**
 * Compares a GPU output `[query][qHead][d]` (f32) against reference rows. `expected` is laid out as
 * returned by {@linkcode referenceAttention} for the same `rows` (all rows when omitted).
 */
export function compareOutput(
  actual: Float32Array,
  expected: Float64Array,
  shape: { qHeads: number; headDim: number },
  queries: number,
  rows?: readonly Row[],
): ErrorReport {
  const d = shape.headDim;
  const bits = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const list = rows ?? Array.from(
    { length: queries * shape.qHeads },
    (_, i) => ({ query: Math.floor(i / shape.qHeads), head: i % shape.qHeads }),
  );
  let maxRel = 0, maxAbs = 0, unwritten = 0, nonFinite = 0;
  let worst: Row | null = null;
  list.forEach((row, r) => {
    const base = (row.query * shape.qHeads + row.head) * d;
    let rowAbs = 0, rowMax = 0;
    for (let i = 0; i < d; i++) {
      const a = actual[base + i]!;
      const e = expected[r * d + i]!;
      if (bits[base + i] === POISON_BITS) {
        unwritten++;
        continue;
      }
      if (!Number.isFinite(a)) {
        nonFinite++;
        continue;
      }
      rowAbs = Math.max(rowAbs, Math.abs(a - e));
      rowMax = Math.max(rowMax, Math.abs(e));
    }
    const rel = rowAbs / Math.max(rowMax, 1e-30);
    maxAbs = Math.max(maxAbs, rowAbs);
    if (rel > maxRel || worst === null) {
      if (rel >= maxRel) worst = row;
      maxRel = Math.max(maxRel, rel);
    }
  });
  return {
    maxRelError: maxRel,
    maxAbsError: maxAbs,
    worst,
    unwritten,
    nonFinite,
    rows: list.length,
  };
}

/**
 * The range of f16 logits. Two baselines keep their logits in global memory in the storage dtype,
 * as their published kernels do: `tree-mask` stores S = Q·K^T before the 1/sqrt(d) scale, `radix`
 * the scaled logits. In f16 that is faithful to the baselines but has two limits:
 *
 * - **overflow**: a stored value beyond ±65504 (f16's largest) becomes ±infinity and the softmax
 *   returns NaN; for `tree-mask` that is at |logit| = 65504 / sqrt(d) (5790 at d = 128);
 * - **rounding**: f16 keeps 11 significant bits, so a stored logit x is off by up to |x| / 2048 and
 *   its softmax weight by a factor up to e^(|x| / 2048): beyond about ±20 (2048 x the f16 error
 *   bound, `TOLERANCE.f16` = 1e-2) the output can miss that bound.
 *
 * Every other method keeps logits in f32 registers. {@linkcode logitLimitNote} names the limit a
 * failed check ran into.
 *
 * @module
 */

import type { IndexedTree } from "../workloads/tree.ts";
import type { AttentionData, KvLayout } from "./layout.ts";
import type { AttentionMethod } from "./method.ts";
import { querySlots, type Row } from "./reference.ts";
import { TOLERANCE } from "./verify.ts";

/** The largest finite f16 value. */
export const F16_MAX = 65504;

/** A logit stored in f16 is off by up to |logit| times this (half a unit in the last place). */
export const F16_ROUNDING = 2 ** -11;

/** Largest |q·k| (unscaled) over the KV each of `rows` sees (every row when omitted), in float64. */
export function maxAbsScore(
  ix: IndexedTree,
  layout: KvLayout,
  data: AttentionData,
  rows?: readonly Row[],
): number {
  const { qHeads, kvHeads, headDim: d } = data.shape;
  const group = qHeads / kvHeads;
  const list = rows ??
    Array.from({ length: ix.queryCount * qHeads }, (_, i) => ({
      query: Math.floor(i / qHeads),
      head: i % qHeads,
    }));
  const slotCache = new Map<number, Int32Array>();
  let most = 0;
  for (const { query, head } of list) {
    let slots = slotCache.get(query);
    if (!slots) {
      slots = querySlots(ix, layout, query);
      slotCache.set(query, slots);
    }
    const qOff = (query * qHeads + head) * d;
    const kvh = Math.floor(head / group);
    for (const slot of slots) {
      const kOff = (slot * kvHeads + kvh) * d;
      let s = 0;
      for (let i = 0; i < d; i++) s += data.q[qOff + i]! * data.k[kOff + i]!;
      most = Math.max(most, Math.abs(s));
    }
  }
  return most;
}

/** The f16 logit range of a method that stores logits, in logit units (q·k / sqrt(d)). */
export function f16LogitRange(
  method: Pick<AttentionMethod, "storedLogits">,
  headDim: number,
  tolerance: number = TOLERANCE.f16,
): { overflow: number; accurate: number } | null {
  if (!method.storedLogits) return null;
  return {
    overflow: method.storedLogits === "unscaled" ? F16_MAX / Math.sqrt(headDim) : F16_MAX,
    accurate: tolerance / F16_ROUNDING,
  };
}

const fmt = (x: number) => (x >= 100 ? Math.round(x).toString() : x.toPrecision(3));

/** Options of {@linkcode logitLimitNote}. */
export interface LogitLimitOptions {
  /** The error bound the output was checked against (default `TOLERANCE.f16`). */
  tolerance?: number;
  /** Only the overflow limit (for NaN or infinite outputs); default false: rounding too. */
  overflowOnly?: boolean;
}

/**
 * Why a method that stores logits in f16 may have failed its check on this data: the largest logit
 * over `rows` (every row when omitted) against the method's f16 range, as one sentence; null when
 * the method keeps logits in f32, the data are f32, or the logits are within the range.
 */
export function logitLimitNote(
  method: Pick<AttentionMethod, "name" | "storedLogits">,
  ix: IndexedTree,
  layout: KvLayout,
  data: AttentionData,
  rows?: readonly Row[],
  { tolerance = TOLERANCE.f16, overflowOnly = false }: LogitLimitOptions = {},
): string | null {
  const range = f16LogitRange(method, data.shape.headDim, tolerance);
  if (!range || data.dtype !== "f16") return null;
  const score = maxAbsScore(ix, layout, data, rows);
  const logit = score / Math.sqrt(data.shape.headDim);
  const what = method.storedLogits === "unscaled"
    ? "q·k before the 1/sqrt(d) scale"
    : "the scaled logits q·k/sqrt(d)";
  const head = `${method.name} stores ${what} in f16, as the published kernel does`;
  if (logit > range.overflow) {
    return `${head}: the largest |logit| here is ${fmt(logit)}, beyond the ±${
      fmt(range.overflow)
    } at which the stored value passes f16's ${F16_MAX} and overflows to infinity`;
  }
  if (!overflowOnly && logit > range.accurate) {
    return `${head}: the largest |logit| here is ${
      fmt(logit)
    }; f16 rounds a stored logit by up to |logit|/2048, so beyond about ±${
      fmt(range.accurate)
    } the output can miss the ${tolerance} bound (overflow at ±${fmt(range.overflow)})`;
  }
  return null;
}

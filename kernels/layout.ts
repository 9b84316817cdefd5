/**
 * The memory layout every method shares, and seeded random attention inputs.
 *
 * - KV pool: K and V are two buffers indexed `[slot][kvHead][d]`. Each node owns a contiguous run of
 *   slots (`slotStart[v]` .. `slotStart[v] + tokens - 1`); node order in the pool is not DFS order,
 *   so methods must gather through the layout, as a paged KV cache requires.
 * - Q: `[query][qHead][d]`. Output: `[query][qHead][d]`, always f32.
 * - Query head h reads KV head `floor(h / (qHeads / kvHeads))` (GQA).
 *
 * @module
 */

import { Rng } from "../workloads/rng.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";

/** Where each node's tokens live in the KV pool. */
export interface KvLayout {
  /** First slot of each node (by node position in `tree.nodes`). */
  readonly slotStart: Int32Array;
  /** Slots in the pool (holes included). */
  readonly slots: number;
}

/** How nodes are placed in the pool. */
export type LayoutOrder = "id" | "shuffled";

/**
 * Places every node's tokens contiguously in the KV pool. `"id"` packs nodes in the order of
 * `tree.nodes` (allocation order); `"shuffled"` places them in a seeded random order with holes of
 * 0-3 slots between them, like a fragmented paged pool (the holes hold random data that no method
 * may read).
 */
export function kvLayout(ix: IndexedTree, order: LayoutOrder = "id", seed = 0): KvLayout {
  const n = ix.nodeCount;
  const slotStart = new Int32Array(n);
  const place = Array.from({ length: n }, (_, i) => i);
  const rng = new Rng(seed ^ 0x51a7);
  if (order === "shuffled") {
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [place[i], place[j]] = [place[j]!, place[i]!];
    }
  }
  let next = 0;
  for (const v of place) {
    if (order === "shuffled") next += rng.int(0, 3);
    slotStart[v] = next;
    next += ix.tokens(v);
  }
  return { slotStart, slots: next };
}

/** Typed array used for a dtype's storage. */
export type StorageArray = Float32Array | Float16Array;

/** Q, K and V of one attention call, already rounded to the storage dtype. */
export interface AttentionData {
  readonly dtype: Dtype;
  readonly shape: ModelShape;
  readonly queries: number;
  readonly slots: number;
  /** `[query][qHead][d]` */
  readonly q: StorageArray;
  /** `[slot][kvHead][d]` */
  readonly k: StorageArray;
  /** `[slot][kvHead][d]` */
  readonly v: StorageArray;
}

function alloc(dtype: Dtype, n: number): StorageArray {
  return dtype === "f16" ? new Float16Array(n) : new Float32Array(n);
}

/**
 * Seeded random Q, K and V, never zero: Q and K entries are ±[0.1, 1); V entries add a per-(head,
 * dim) offset of ±[0.25, 1) to noise in [-0.5, 0.5), so outputs stay well away from zero and
 * relative errors stay meaningful.
 */
export function randomAttentionData(
  shape: ModelShape,
  dtype: Dtype,
  queries: number,
  slots: number,
  seed: number,
): AttentionData {
  const d = shape.headDim;
  const rng = new Rng(seed);
  const signed = (r: Rng) => {
    const m = 0.1 + 0.9 * r.next();
    return r.nextU32() & 1 ? m : -m;
  };
  const q = alloc(dtype, queries * shape.qHeads * d);
  const qr = rng.fork(1);
  for (let i = 0; i < q.length; i++) q[i] = signed(qr);
  const k = alloc(dtype, slots * shape.kvHeads * d);
  const kr = rng.fork(2);
  for (let i = 0; i < k.length; i++) k[i] = signed(kr);
  const v = alloc(dtype, slots * shape.kvHeads * d);
  const offset = new Float64Array(shape.kvHeads * d);
  const or = rng.fork(3);
  for (let i = 0; i < offset.length; i++) {
    const m = 0.25 + 0.75 * or.next();
    offset[i] = or.nextU32() & 1 ? m : -m;
  }
  const vr = rng.fork(4);
  const hd = shape.kvHeads * d;
  for (let i = 0; i < v.length; i++) v[i] = offset[i % hd]! + (vr.next() - 0.5);
  return { dtype, shape, queries, slots, q, k, v };
}

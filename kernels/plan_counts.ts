/**
 * Helpers every planner uses for its counts (see `PlanCounts` in `method.ts`, which re-exports
 * them): the paper's IO accounting, the real IO total, the DRAM floor, and zero counts.
 *
 * @module
 */

import { type Dtype, dtypeBytes, type ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import type { PaperIo, PlanCounts, PlanInput, RealIo } from "./method.ts";

/** Plan counts that are all zero (a case that never got a plan), with `overrides` applied. */
export function zeroPlanCounts(
  overrides: {
    paper?: Partial<PaperIo>;
    real?: Partial<RealIo>;
    dramBytes?: number;
    flops?: number;
    usefulFlops?: number;
  } = {},
): PlanCounts {
  return {
    paper: { kvBytes: 0, maskBytes: 0, partialBytes: 0, totalBytes: 0, ...overrides.paper },
    real: {
      kvBytes: 0,
      qBytes: 0,
      maskBytes: 0,
      metadataBytes: 0,
      partialBytes: 0,
      logitsBytes: 0,
      outputBytes: 0,
      totalBytes: 0,
      ...overrides.real,
    },
    dramBytes: overrides.dramBytes ?? 0,
    flops: overrides.flops ?? 0,
    usefulFlops: overrides.usefulFlops ?? 0,
  };
}

/** Sums the fields of a {@linkcode RealIo} into `totalBytes`. */
export function realIo(io: Omit<RealIo, "totalBytes">): RealIo {
  return {
    ...io,
    totalBytes: io.kvBytes + io.qBytes + io.maskBytes + io.metadataBytes + io.partialBytes +
      io.logitsBytes + io.outputBytes,
  };
}

/** Paper-accounting IO (see {@linkcode PaperIo}) from element counts per query head. */
export function paperIo(
  shape: ModelShape,
  dtype: Dtype,
  kvTokens: number,
  maskElements: number,
  partialElements: number,
): PaperIo {
  const b = (dtype === "f16" ? 2 : 4) * shape.qHeads;
  const kvBytes = 2 * shape.headDim * kvTokens * b;
  const maskBytes = maskElements * b;
  const partialBytes = partialElements * b;
  return { kvBytes, maskBytes, partialBytes, totalBytes: kvBytes + maskBytes + partialBytes };
}

/** Tokens on at least one query's root-to-node path: the KV every correct method must read. */
export function visibleTokens(ix: IndexedTree): number {
  const seen = new Uint8Array(ix.nodeCount);
  let n = 0;
  for (let q = 0; q < ix.queryCount; q++) {
    for (let u = ix.queryNode[q]!; u >= 0 && seen[u] === 0; u = ix.parent[u]!) {
      seen[u] = 1;
      n += ix.tokens(u);
    }
  }
  return n;
}

/**
 * {@linkcode PlanCounts.dramBytes} of a plan: `kvTokens` (default: {@linkcode visibleTokens}) of K
 * and V per KV head, Q and the f32 output once, plus `extraBytes` the method must read once (a
 * mask it uploads).
 */
export function dramFloorBytes(
  input: Pick<PlanInput, "ix" | "shape" | "dtype">,
  { kvTokens, extraBytes = 0 }: { kvTokens?: number; extraBytes?: number } = {},
): number {
  const { ix, shape, dtype } = input;
  const b = dtypeBytes(dtype);
  const tokens = kvTokens ?? visibleTokens(ix);
  const kv = 2 * tokens * shape.kvHeads * shape.headDim * b;
  const q = ix.queryCount * shape.qHeads * shape.headDim * b;
  const out = ix.queryCount * shape.qHeads * shape.headDim * 4;
  return kv + q + out + extraBytes;
}

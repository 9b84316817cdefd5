/**
 * The tree-topology-aware global reduction shared by every split method (DeFT paper, section 3.5,
 * stage 2): partial results `(o_g, lse_g)` of each query are gathered through a CSR list and merged
 * with the log-sum-exp rule into the final output.
 *
 * Partial buffers, shared with the stage-1 kernels that write them (all f32):
 * - `partialO`: `[partial][qHead][d]`, each partial already normalised (o_g = Σ p·v / Σ p);
 * - `partialLse`: `[partial][qHead]`, lse_g = m_g + ln ℓ_g, or a value <= -3e38 for a row that saw
 *   no key (it then contributes nothing).
 *
 * The kernel (`wgsl/reduce.wgsl`) is one pass with an online maximum: no workgroup memory, no
 * barrier, {@linkcode REDUCE_ROUND} entries per loop iteration. Mesa's software adapters end a
 * shader after 65535 loop iterations ({@linkcode reductionLoopIterations}); `prepareReduction`
 * refuses, on those adapters, a list long enough to reach the limit (over a million partials per
 * query) instead of returning rows it never wrote.
 *
 * @module
 */

import type { ModelShape } from "../workloads/shapes.ts";
import { type Gpu, GpuError } from "./gpu.ts";
import type { DispatchInfo } from "./method.ts";
import { specializeWgsl, unrollWgsl } from "./wgsl.ts";
import reduceWgsl from "./wgsl/reduce.wgsl" with { type: "text" };

/** Value stage-1 kernels write as lse for a row that saw no key. */
export const EMPTY_LSE = -3.0e38;

/** CSR lists of partial indices per query. */
export interface ReductionLists {
  /** `[queries + 1]`: entries of query q are `entries[offsets[q] .. offsets[q+1])`. */
  offsets: Uint32Array;
  /** Partial indices. */
  entries: Uint32Array;
}

/** Builds CSR lists from the query of every partial (`partialQuery[p]` = query id of partial p). */
export function reductionLists(queries: number, partialQuery: ArrayLike<number>): ReductionLists {
  const offsets = new Uint32Array(queries + 1);
  for (let p = 0; p < partialQuery.length; p++) offsets[partialQuery[p]! + 1]!++;
  for (let q = 0; q < queries; q++) offsets[q + 1]! += offsets[q]!;
  const fill = offsets.slice(0, queries);
  const entries = new Uint32Array(partialQuery.length);
  for (let p = 0; p < partialQuery.length; p++) entries[fill[partialQuery[p]!]!++] = p;
  return { offsets, entries };
}

/** Bytes the reduction moves: partials read, CSR metadata read, output written. */
export function reductionIo(
  lists: ReductionLists,
  shape: ModelShape,
): { partialReadBytes: number; metadataBytes: number; outputBytes: number } {
  const queries = lists.offsets.length - 1;
  return {
    partialReadBytes: lists.entries.length * shape.qHeads * (shape.headDim + 1) * 4,
    metadataBytes: lists.offsets.byteLength + lists.entries.byteLength,
    outputBytes: queries * shape.qHeads * shape.headDim * 4,
  };
}

/**
 * Where a stage writes its partials: the buffers `[partial][qHead][d]` and `[partial][qHead]` the
 * reduction reads, from partial `base` on (two stages then share one reduction).
 */
export interface PartialTarget {
  readonly o: GPUBuffer;
  readonly lse: GPUBuffer;
  /** First partial of the stage's chunks (its byte offsets must be multiples of 256). */
  readonly base: number;
}

/** The alignment of storage binding offsets that every WebGPU device accepts. */
export const BINDING_OFFSET_ALIGNMENT = 256;

/**
 * The first partial index at or after `partials` whose byte offsets in both partial buffers are
 * multiples of {@linkcode BINDING_OFFSET_ALIGNMENT}, so a stage can bind the buffers from there (see {@linkcode PartialTarget}).
 */
export function alignedPartialBase(partials: number, shape: ModelShape): number {
  const lseBytes = shape.qHeads * 4; // o's row (qHeads x d x 4) is a multiple of it
  let step = 1;
  while ((step * lseBytes) % BINDING_OFFSET_ALIGNMENT !== 0) step *= 2;
  return Math.ceil(partials / step) * step;
}

/** Threads of the reduction's workgroup: one per vec4 of the output row (two past 128 dims). */
export const REDUCE_THREADS = 32;

/** List entries the reduction merges per loop iteration (all of their loads in flight at once). */
export const REDUCE_ROUND = 16;

/**
 * Mesa's llvmpipe (and lavapipe, which shares its compiler) ends a shader invocation after this many
 * loop iterations in all, silently (`LP_MAX_TGSI_LOOP_ITERATIONS`, shared between every loop of
 * the shader). The group kernel guards against it too.
 */
export const LLVMPIPE_LOOP_LIMIT = 65535;

/**
 * Loop iterations one invocation of the reduction runs for a query with `entries` partials (an
 * upper bound): its rounds of {@linkcode REDUCE_ROUND} entries plus the exit test (the other loops
 * are unrolled).
 */
export function reductionLoopIterations(entries: number): number {
  return Math.ceil(entries / REDUCE_ROUND) + 1;
}

/** The reduction's WGSL for `shape`: constants specialised, rounds unrolled. */
export function reductionSource(shape: ModelShape): string {
  const d4 = shape.headDim / 4;
  const halves = Math.ceil(d4 / REDUCE_THREADS);
  if (shape.headDim % 4 !== 0 || halves > 2) {
    throw new RangeError(
      `The reduction needs a head dim that is a multiple of 4 and at most ${
        8 * REDUCE_THREADS
      }, got ${shape.headDim}`,
    );
  }
  const consts = { Q_HEADS: shape.qHeads, D4: d4, HALVES: halves, U: REDUCE_ROUND };
  return unrollWgsl(
    specializeWgsl(reduceWgsl, { consts: { ...consts, WG: REDUCE_THREADS }, name: "reduce.wgsl" }),
    consts,
  );
}

/** The longest CSR list (most partials of one query). */
export function longestList(lists: ReductionLists): number {
  let most = 0;
  for (let q = 0; q + 1 < lists.offsets.length; q++) {
    most = Math.max(most, lists.offsets[q + 1]! - lists.offsets[q]!);
  }
  return most;
}

/** Workgroup grid for `rows` one-workgroup-per-row dispatches within the per-dimension limit. */
export function rowGrid(rows: number, maxPerDim = 65535): [number, number, number] {
  if (rows <= maxPerDim) return [Math.max(1, rows), 1, 1];
  const y = Math.ceil(rows / maxPerDim);
  return [Math.ceil(rows / y), y, 1];
}

/** The reduction's dispatch, for plan dispatch lists. */
export function reductionDispatch(queries: number, shape: ModelShape): DispatchInfo {
  return { kernel: "reduce", workgroups: rowGrid(queries * shape.qHeads), workgroupSize: 32 };
}

/** A prepared reduction, recorded after the stage-1 dispatches in the same pass. */
export interface PreparedReduction {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** Uploads the CSR lists and binds the reduction to the partial and output buffers. */
export async function prepareReduction(
  gpu: Gpu,
  lists: ReductionLists,
  shape: ModelShape,
  partialO: GPUBuffer,
  partialLse: GPUBuffer,
  out: GPUBuffer,
): Promise<PreparedReduction> {
  if (gpu.info.description.includes("llvmpipe")) {
    const entries = longestList(lists);
    const n = reductionLoopIterations(entries);
    if (n > LLVMPIPE_LOOP_LIMIT) {
      throw new GpuError(
        `The reduction of a query with ${entries} partial results needs about ${n} shader loop iterations, more than the ${LLVMPIPE_LOOP_LIMIT} after which Mesa's llvmpipe silently ends a shader; use a hardware GPU, or fewer partials per query (a larger --chunk-size or --block-size)`,
      );
    }
  }
  const pipeline = await gpu.pipeline("reduce", reductionSource(shape));
  const offsets = gpu.buffer("reduce offsets", lists.offsets);
  const entries = gpu.buffer("reduce entries", lists.entries);
  const bindGroup = gpu.device.createBindGroup({
    label: "reduce",
    layout: pipeline.getBindGroupLayout(0),
    entries: [offsets, entries, partialO, partialLse, out].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
  const grid = rowGrid(
    (lists.offsets.length - 1) * shape.qHeads,
    gpu.limit("maxComputeWorkgroupsPerDimension"),
  );
  return {
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...grid);
    },
    destroy() {
      offsets.destroy();
      entries.destroy();
    },
  };
}

/**
 * The lists of two stages merged per query: `a`'s entries, then `b`'s shifted by `base` (where the
 * second stage's partials start in the shared buffers).
 */
export function mergeLists(a: ReductionLists, b: ReductionLists, base: number): ReductionLists {
  const queries = a.offsets.length - 1;
  if (b.offsets.length - 1 !== queries) {
    throw new RangeError(`mergeLists: ${queries} queries against ${b.offsets.length - 1}`);
  }
  const offsets = new Uint32Array(queries + 1);
  const entries = new Uint32Array(a.entries.length + b.entries.length);
  let at = 0;
  for (let q = 0; q < queries; q++) {
    offsets[q] = at;
    for (let i = a.offsets[q]!; i < a.offsets[q + 1]!; i++) entries[at++] = a.entries[i]!;
    for (let i = b.offsets[q]!; i < b.offsets[q + 1]!; i++) entries[at++] = base + b.entries[i]!;
  }
  offsets[queries] = at;
  return { offsets, entries };
}

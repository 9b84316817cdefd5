/**
 * The one interface every attention method implements: a CPU `plan` (tree + shape + options ->
 * metadata, dispatch list, analytic IO and FLOP counts) and a GPU `prepare` whose result records
 * the method's dispatches into one compute pass. The data flows one way: tree -> plan -> prepare ->
 * encode.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import type { Gpu } from "./gpu.ts";
import type { KvLayout } from "./layout.ts";

/** Names of the methods, as used on the command line and in results. */
export const METHOD_NAMES = [
  "sequence",
  "radix",
  "tree-mask",
  "deft-node",
  "deft-node-chunk",
  "deft-flatten",
  "cascade",
] as const;

/** A method name. */
export type MethodName = (typeof METHOD_NAMES)[number];

/** Tunables of the methods; every method ignores those it does not use. */
export interface MethodOptions {
  /** DeFT-Flatten: tokens per flattened KV block (paper: 128). */
  blockSize: number;
  /** DeFT-Node-Chunk: most tokens per node chunk (paper: 128). */
  chunkSize: number;
  /**
   * Sequence (Flash-Decoding): workgroups to aim for when splitting each query's KV into chunks
   * (0: derive from the device, e.g. a few waves of the GPU).
   */
  targetWorkgroups: number;
}

/** Defaults of {@linkcode MethodOptions}. */
export const DEFAULT_METHOD_OPTIONS: Readonly<MethodOptions> = {
  blockSize: 128,
  chunkSize: 128,
  targetWorkgroups: 0,
};

/** Everything a planner reads. */
export interface PlanInput {
  readonly ix: IndexedTree;
  readonly layout: KvLayout;
  readonly shape: ModelShape;
  readonly dtype: Dtype;
  readonly options: MethodOptions;
}

/**
 * IO in the paper's accounting (Table 12 formulas, per layer, counted per query head as the paper's
 * Table 17 does: elements x qHeads x dtype bytes).
 */
export interface PaperIo {
  /** KV cache: 2·d·ΣN_i (sequence-based) or 2·d·N_tree (tree-aware), x qHeads x bytes. */
  kvBytes: number;
  /** Masks: dense causal mask l_n·N_tree (tree-mask), N_tree (deft-flatten), 0 otherwise. */
  maskBytes: number;
  /** Partial results: 8·l_n·N_tree (tree-mask: QK^T, scaled, masked, softmax), 0 otherwise. */
  partialBytes: number;
  /** Sum of the above. */
  totalBytes: number;
}

/**
 * Bytes this implementation actually moves per layer, counted at global-memory loads and stores
 * as the kernels issue them (cache hits included: a KV tile re-read by another workgroup counts
 * again).
 */
export interface RealIo {
  kvBytes: number;
  qBytes: number;
  maskBytes: number;
  metadataBytes: number;
  /** Split partial results (o and lse), written and read back. */
  partialBytes: number;
  /** Materialized logits / probabilities (radix, tree-mask), written and read back. */
  logitsBytes: number;
  /** Final output written. */
  outputBytes: number;
  totalBytes: number;
}

/** Analytic counts of a plan; deterministic facts of the plan. */
export interface PlanCounts {
  paper: PaperIo;
  real: RealIo;
  /** FLOPs the kernels execute (multiply and add count 2), masked-out and padded work included. */
  flops: number;
  /** FLOPs of exact tree attention (4·d·ΣN_i·qHeads), the same for every method. */
  usefulFlops: number;
}

/** One dispatch of a plan, for reports and limit checks. */
export interface DispatchInfo {
  kernel: string;
  workgroups: [number, number, number];
  workgroupSize: number;
}

/** A method's plan for one tree. */
export interface Plan {
  readonly method: MethodName;
  readonly shape: ModelShape;
  readonly dtype: Dtype;
  readonly queries: number;
  readonly slots: number;
  readonly dispatches: readonly DispatchInfo[];
  readonly counts: PlanCounts;
  /** Method-specific facts (groups, blocks, mask words per token, ...). */
  readonly stats: Readonly<Record<string, number>>;
}

/** The problem's GPU buffers, shared by every method (layout in `layout.ts`). */
export interface GpuProblem {
  /** `[query][qHead][d]`, f16 or f32. */
  readonly q: GPUBuffer;
  /** `[slot][kvHead][d]`, f16 or f32. */
  readonly k: GPUBuffer;
  /** `[slot][kvHead][d]`, f16 or f32. */
  readonly v: GPUBuffer;
  /** `[query][qHead][d]`, f32. */
  readonly out: GPUBuffer;
}

/** A plan bound to GPU buffers and pipelines, ready to record. */
export interface PreparedMethod {
  /** Records every dispatch of the method into `pass` (all of them: one pass times the method). */
  encode(pass: GPUComputePassEncoder): void;
  /** Frees the method's own buffers (not the problem's). */
  destroy(): void;
}

/** One attention method. */
export interface AttentionMethod<P extends Plan = Plan> {
  readonly name: MethodName;
  /** One line for help texts and reports. */
  readonly description: string;
  /**
   * Set by a method that keeps logits in global memory in the storage dtype, as a published
   * baseline does: `unscaled` for q·k, `scaled` for q·k / sqrt(d). In f16 that bounds the logits
   * it computes correctly (see `f16_logits.ts`); unset: logits stay in f32.
   */
  readonly storedLogits?: "unscaled" | "scaled";
  /** Builds the plan on the CPU. */
  plan(input: PlanInput): P;
  /** Uploads metadata, builds pipelines and bind groups. */
  prepare(gpu: Gpu, plan: P, problem: GpuProblem): Promise<PreparedMethod>;
}

/** Plan counts that are all zero (a case that never got a plan), with `overrides` applied. */
export function zeroPlanCounts(
  overrides: {
    paper?: Partial<PaperIo>;
    real?: Partial<RealIo>;
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

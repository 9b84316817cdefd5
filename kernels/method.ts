/**
 * The one interface every attention method implements: a CPU `plan` (tree + shape + options ->
 * metadata, dispatch list, analytic IO and FLOP counts) and a GPU `prepare` whose result records
 * the method's dispatches into one compute pass. The data flows one way: tree -> plan -> prepare ->
 * encode.
 *
 * @module
 */

import { type Dtype, dtypeBytes, type ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import type { Gpu, RuntimeName, SubgroupMatrixConfig } from "./gpu.ts";
import type { MmaKernelOptions } from "./group_attention_mma.ts";
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
   * Workgroups to aim for (0: the method's default). Sequence (Flash-Decoding) splits each query's
   * KV into chunks to reach it; deft-flatten on matrix units halves its blocks (down to 64 tokens)
   * while a tree gives fewer.
   */
  targetWorkgroups: number;
  /**
   * Kernel family: `mma` uses subgroup matrices (tensor cores; f16 storage on a device with an
   * f16 x f16 -> f32 configuration), `fma` the plain FMA kernels, `auto` the fastest the device
   * offers. Methods without an `mma` kernel ignore it.
   */
  kernel: KernelChoice;
  /** Tile of the matrix kernel of the group-attention methods (default 32 rows, 16 keys). */
  mma?: Partial<MmaKernelOptions>;
}

/** Kernel families (see {@linkcode MethodOptions.kernel}). */
export const KERNEL_CHOICES = ["auto", "fma", "mma"] as const;

/** A kernel family. */
export type KernelChoice = (typeof KERNEL_CHOICES)[number];

/** What a planner may assume about the device it plans for. */
export interface KernelCaps {
  /** The runtime the device comes from. */
  runtime: RuntimeName;
  /** The f16 x f16 -> f32 subgroup-matrix configuration to use, or null. */
  matrix: SubgroupMatrixConfig | null;
  /** Subgroup built-ins available. */
  subgroups: boolean;
  /** Subgroup size when the adapter has one fixed size, else 0. */
  subgroupSize: number;
  /** Granted maxComputeWorkgroupStorageSize. */
  workgroupStorage: number;
}

/** The {@linkcode KernelCaps} of an open device. */
export function kernelCaps(gpu: Gpu): KernelCaps {
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = gpu.info;
  return {
    runtime: gpu.runtime.name,
    matrix: gpu.matrixConfig(),
    subgroups: gpu.hasSubgroups,
    subgroupSize: lo > 0 && lo === hi ? lo : 0,
    workgroupStorage: gpu.limit("maxComputeWorkgroupStorageSize"),
  };
}

/** Defaults of {@linkcode MethodOptions}. */
export const DEFAULT_METHOD_OPTIONS: Readonly<MethodOptions> = {
  blockSize: 128,
  chunkSize: 128,
  targetWorkgroups: 0,
  kernel: "auto",
};

/** Everything a planner reads. */
export interface PlanInput {
  readonly ix: IndexedTree;
  readonly layout: KvLayout;
  readonly shape: ModelShape;
  readonly dtype: Dtype;
  readonly options: MethodOptions;
  /** The device the plan is for; absent: a device with FMA kernels only. */
  readonly caps?: KernelCaps;
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
  /**
   * The bytes that must cross DRAM at least once however well caches serve the rest: every KV
   * token the plan reads (all of them in the tree for `tree-mask`, those on some query's path
   * otherwise) once per KV head, Q once, masks the method uploads once, and the output written
   * once. Re-reads, metadata and intermediates (partials, logits) are left out: caches may serve
   * them. The roofline divides these bytes by the DRAM bandwidth (see `results/roofline.ts`).
   */
  dramBytes: number;
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
  /** The kernel variant the plan runs, e.g. `mma-16x16x16-r64-k32` (absent: the method's only one). */
  readonly kernelVariant?: string;
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

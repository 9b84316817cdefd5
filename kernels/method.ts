/**
 * The one interface every attention method implements: a CPU `plan` (tree + shape + options ->
 * metadata, dispatch list, analytic IO and FLOP counts) and a GPU `prepare` whose result records
 * the method's dispatches into one compute pass. The data flows one way: tree -> plan -> prepare ->
 * encode. A {@linkcode MethodRecord} adds what the harness needs to know: the options the planner
 * reads and the kernel variants it has; the list of records is `methods/mod.ts`, and the names,
 * the registry and the default options come from it (re-exported here).
 *
 * Loading: this module re-exports values of `methods/mod.ts`, so the method modules (and every
 * kernels module they load) import only types from here (`import type`), and their helpers from
 * `plan_counts.ts` and `options.ts`; a value import would let a method module that is loaded first
 * be read by `methods/mod.ts` before it is initialised (`tests/method_records_test.ts` checks).
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import { type Gpu, isSoftwareAdapter, type RuntimeName, type SubgroupMatrixConfig } from "./gpu.ts";
import type { GroupKernelOptions } from "./group_attention.ts";
import type { MmaKernelOptions } from "./group_attention_mma.ts";
import type { KvLayout } from "./layout.ts";
import type { SequenceParams } from "./methods/sequence.ts";
import type { KernelChoice, KernelVariant, MethodOption, OptionValue } from "./options.ts";

export { DEFAULT_METHOD_OPTIONS, METHOD_NAMES, type MethodName } from "./methods/mod.ts";
import type { MethodName } from "./methods/mod.ts";
export { dramFloorBytes, paperIo, realIo, visibleTokens, zeroPlanCounts } from "./plan_counts.ts";
export {
  KERNEL_CHOICES,
  type KernelChoice,
  type KernelVariant,
  type MethodOption,
  type OptionValue,
} from "./options.ts";

/**
 * Options of the methods; every method ignores those it does not read (its record lists those it
 * does). The fields below are the options of the built-in methods; a method may read further
 * options through its {@linkcode MethodOption}s.
 */
export interface MethodOptions {
  /** DeFT-Flatten: tokens per flattened KV block (paper: 128). */
  blockSize: number;
  /** DeFT-Node-Chunk: most tokens per node chunk (paper: 128). */
  chunkSize: number;
  /**
   * Workgroups to aim for (0: the method's default). Sequence (Flash-Decoding) splits each query's
   * KV into chunks to reach it; deft-flatten halves its blocks (down to 64 tokens) while a tree
   * gives fewer (on matrix units only without a resident-workgroup count), and its Flash-Decoding
   * parts (private suffixes, tail queries, the unshared fallback) split to it as `sequence` does,
   * before `sequence`'s own variant.
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
  /** Tile of the FMA kernel of the group-attention methods (default 256 threads, 64 rows, 64 keys). */
  fma?: Partial<GroupKernelOptions>;
  /** Kernel variant of `sequence` (its geometry; default `DEFAULT_SEQUENCE_VARIANT`). */
  sequence?: SequenceParams;
  /** Options of further methods, read through their {@linkcode MethodOption}s. */
  [option: string]: OptionValue | undefined;
}

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
  /** A CPU implementation (lavapipe, llvmpipe, ...): more workgroups buy it nothing. */
  software?: boolean;
  /**
   * Workgroups of the whole workgroup storage the device runs at once (`calibrate`'s
   * `residentWorkgroups`; see {@linkcode Gpu.residentWorkgroups}), when known.
   */
  residentWorkgroups?: number;
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
    software: isSoftwareAdapter(gpu.info),
    ...(gpu.residentWorkgroups ? { residentWorkgroups: gpu.residentWorkgroups } : {}),
  };
}

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
  /**
   * The same dispatches in named parts (`stage-1`, `reduce`), for tools that time them apart
   * (`tools/profile_mma.ts --parts`); absent where a method does not say.
   */
  readonly parts?: readonly PreparedPart[];
  /**
   * Profiling counters the dispatches write (u32 words), by name, for tools that read them after a
   * run (`occupancy`: see `MmaKernelOptions.occupancy`); absent unless a profiling option asks.
   */
  readonly counters?: Readonly<Record<string, GPUBuffer>>;
  /** Frees the method's own buffers (not the problem's). */
  destroy(): void;
}

/** Some of a prepared method's dispatches (see {@linkcode PreparedMethod.parts}). */
export interface PreparedPart {
  readonly name: string;
  encode(pass: GPUComputePassEncoder): void;
}

/** One attention method. */
export interface AttentionMethod<P extends Plan = Plan, N extends string = MethodName> {
  readonly name: N;
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

/**
 * A method with what the harness needs to know about it: the options its planner reads and its
 * kernel variants with the adapter features each needs. The command line's flags, `tune`'s
 * candidates and the conformance suite come from these.
 */
export interface MethodRecord<P extends Plan = Plan, N extends string = MethodName>
  extends AttentionMethod<P, N> {
  /** Options the planner reads, besides `kernel` and its variants' parameters. */
  readonly options: readonly MethodOption[];
  /** Its kernel variants, the default (what `kernel: "auto"` runs without matrix units) first. */
  readonly variants: readonly KernelVariant[];
  /**
   * Methods whose plans this one runs for part of a tree (deft-flatten runs `sequence`'s where
   * there is nothing to share): their stored tuned variant parameters apply to those parts too.
   */
  readonly delegatesTo?: readonly string[];
}

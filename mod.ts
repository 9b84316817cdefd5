/**
 * deft-bench: tree-structured LLM decoding attention on WebGPU. It implements DeFT (Decoding with
 * Flash Tree-attention, arXiv 2404.00242) and the baselines the paper compares against as WGSL
 * compute shaders, generates the paper's workloads as synthetic trees, checks every method against
 * an exact float64 CPU reference, and measures latency and IO.
 *
 * The data flows one way: workload -> tree -> plan -> prepare/encode -> measurement -> results ->
 * report.
 *
 * @example Run DeFT-Flatten on one few-shot tree and check it against the reference
 * ```ts
 * import {
 *   FewShotRun,
 *   getMethod,
 *   Gpu,
 *   Problem,
 *   referenceOf,
 *   resolveShape,
 *   runMethod,
 *   verify,
 * } from "./mod.ts";
 *
 * // Iteration 7 of a few-shot run: a 256-token prompt and 4 branches of 8 tokens.
 * const tree = new FewShotRun({ prompt: 256, branches: 4, generated: 8 }).snapshot(7);
 * const gpu = await Gpu.open();
 * const problem = Problem.create(gpu, tree, {
 *   // 8 query heads, 2 KV heads, head dim 128 (MODEL_SHAPES holds the paper's models).
 *   shape: resolveShape("8/2/128"),
 *   dtype: "f32",
 *   seed: 1,
 * });
 * const { output, plan } = await runMethod(problem, getMethod("deft-flatten"));
 * // Every output row against the float64 reference, within the f32 tolerance (1e-4).
 * const verdict = verify(output, referenceOf(problem), problem.data.shape, "f32");
 * console.log(verdict.passed, plan.counts.paper.kvBytes, plan.counts.real.totalBytes);
 * problem.destroy();
 * gpu.destroy();
 * ```
 *
 * @example Benchmark two methods on a tree run, keep the results document, render its report
 * ```ts
 * import {
 *   createTimer,
 *   DEFAULT_METHOD_OPTIONS,
 *   FewShotRun,
 *   getMethod,
 *   Gpu,
 *   parseResults,
 *   renderReport,
 *   resolveShape,
 *   runBench,
 * } from "./mod.ts";
 *
 * const gpu = await Gpu.open();
 * const doc = await runBench(gpu, {
 *   workloads: [{ run: new FewShotRun({ prompt: 256, branches: 4, generated: 8 }) }],
 *   methods: [getMethod("sequence"), getMethod("deft-flatten")],
 *   shape: resolveShape("8/2/128"), // the conformance suite's shape (its kernels are cached)
 *   dtype: "f32",
 *   methodOptions: DEFAULT_METHOD_OPTIONS,
 *   samplesPerRun: 1, // one snapshot of the run
 *   seed: 1,
 *   scale: 1,
 *   scaleReason: null,
 *   verify: true, // each method is checked against the float64 reference before it is timed
 *   verifyRows: 8,
 *   timing: {
 *     warmupMs: 5,
 *     budgetMs: 50,
 *     minSamples: 3,
 *     maxSamples: 10,
 *     targetRelativeCi: 0.05,
 *     cold: false,
 *     interleaved: true,
 *   },
 *   calibration: null,
 *   command: ["mod.ts example"],
 *   clockGuard: false,
 * }, { timer: createTimer(gpu), probeHost: false });
 * // The document is the contract: what bench writes as results.json, and what report reads.
 * const again = parseResults(JSON.stringify(doc), "results.json");
 * const cases = again.workloads[0]!.snapshots[0]!.cases;
 * if (cases.length !== 2 || cases.some((c) => c.status !== "ok")) throw new Error("not verified");
 * const html = renderReport([again]); // self-contained HTML, charts included
 * if (!html.includes("deft-flatten")) throw new Error("the report lost a method");
 * gpu.destroy();
 * ```
 *
 * Two WebGPU runtimes are reachable (the command line's `--runtime`): Deno's built-in WebGPU
 * (`"deno"`, the default) and Chromium's Dawn (`"dawn"`), loaded on first use from the `dawnNode`
 * path, `DAWN_NODE`, or the npm package `webgpu` (the only runtime with subgroup matrices, i.e.
 * tensor cores). `MethodOptions.kernel` is `--kernel`: `"auto"`, `"fma"` or `"mma"`. `runBench`
 * takes one `BenchDevice` per runtime and measures them in one run (`bench --runtime deno,dawn`);
 * `tune` measures option candidates and `loadTuning`/`storedChoices` read what it stored. Dawn's
 * objects keep the process alive: end a script with `Deno.exit()`.
 *
 * @example Pick the runtime and see what the device offers
 * ```ts
 * import { Gpu, kernelCaps, type RuntimeName } from "./mod.ts";
 *
 * const runtime: RuntimeName = Deno.env.get("DEFT_RUNTIME") === "dawn" ? "dawn" : "deno";
 * const gpu = await Gpu.open({ runtime, dawnNode: Deno.env.get("DAWN_NODE") });
 * const caps = kernelCaps(gpu);
 * console.log(gpu.runtime.version, caps.matrix ? "mma and fma kernels" : "fma kernels only");
 * gpu.destroy();
 * ```
 *
 * @module
 */

// Workloads: the tree model, its JSON formats, generators and presets.
export {
  IndexedTree,
  type Query,
  show,
  type Tree,
  TREE_LIMITS,
  TreeError,
  type TreeFacts,
  treeFacts,
  type TreeNode,
} from "./workloads/tree.ts";
export {
  FORMAT_VERSION,
  parseRun,
  parseTree,
  parseWorkloadDocument,
  RUN_FORMAT,
  type RunDocument,
  type RunSnapshot,
  stringifyRun,
  stringifyTree,
  TREE_FORMAT,
  type WorkloadInfo,
} from "./workloads/format.ts";
export {
  checkShape,
  type Dtype,
  dtypeBytes,
  groupSize,
  MODEL_SHAPES,
  type ModelShape,
  resolveShape,
} from "./workloads/shapes.ts";
export {
  DecodingRun,
  type RunFacts,
  runFacts,
  sampleIterations,
  type Snapshot,
  StoredRun,
} from "./workloads/run.ts";
export { type FewShotParams, FewShotRun } from "./workloads/few_shot.ts";
export { type ReasoningParams, ReasoningRun } from "./workloads/reasoning.ts";
export {
  depthHistogram,
  medusaTokenTree,
  type SpeculativeParams,
  SpeculativeRun,
} from "./workloads/speculative.ts";
export {
  type GridLevel,
  LevelGridRun,
  levelGridTree,
  parseGridSpec,
} from "./workloads/level_grid.ts";
export { getPreset, PAPER_PRESETS, type Preset, PRESETS } from "./workloads/presets.ts";
export { type KvIo, kvIo } from "./workloads/io.ts";
export { Rng } from "./workloads/rng.ts";

// Kernels: device, shared layout, reference, the method interface and the methods.
export {
  DAWN_FLAGS,
  DAWN_PACKAGE,
  Gpu,
  GpuError,
  type GpuInfo,
  type GpuOpenOptions,
  RUNTIME_NAMES,
  type RuntimeInfo,
  type RuntimeName,
  type SubgroupMatrixConfig,
} from "./kernels/gpu.ts";
export {
  type AttentionData,
  type KvLayout,
  kvLayout,
  randomAttentionData,
} from "./kernels/layout.ts";
export {
  compareOutput,
  type ErrorReport,
  type OutputScan,
  POISON_BITS,
  referenceAttention,
  type Row,
  scanOutput,
} from "./kernels/reference.ts";
export {
  allRows,
  type Reference,
  referenceOf,
  sampleRows,
  TOLERANCE,
  type Verdict,
  verdictProblems,
  verify,
} from "./kernels/verify.ts";
export {
  F16_MAX,
  f16LogitRange,
  logitLimitNote,
  type LogitLimitOptions,
  maxAbsScore,
} from "./kernels/f16_logits.ts";
export {
  type AttentionMethod,
  DEFAULT_METHOD_OPTIONS,
  type GpuProblem,
  KERNEL_CHOICES,
  type KernelCaps,
  kernelCaps,
  type KernelChoice,
  METHOD_NAMES,
  type MethodName,
  type MethodOptions,
  type MethodRecord,
  type PaperIo,
  type Plan,
  type PlanCounts,
  type PreparedMethod,
  type RealIo,
} from "./kernels/method.ts";
export { getMethod, METHOD_LIST, METHOD_OPTIONS, METHODS } from "./kernels/methods/mod.ts";
export {
  type AdapterFeature,
  type KernelVariant,
  type MethodOption,
  type OptionValue as MethodOptionValue,
  parseVariantParams,
  type VariantParam,
  type VariantParams,
} from "./kernels/options.ts";
export {
  InvalidOutputError,
  type MethodRun,
  Problem,
  type ProblemOptions,
  runMethod,
  runPrepared,
} from "./kernels/problem.ts";

// Benchmarking: the run on one device per runtime, timers, and tuning.
export {
  type BenchConfig,
  type BenchDevice,
  type BenchWorkload,
  kernelVariant,
  runBench,
} from "./bench/run.ts";
export { createTimer, type Timer } from "./bench/timer.ts";
export {
  kernelFamilies,
  loadTuning,
  storedChoices,
  type Tunable,
  TUNABLES,
  tune,
  type TuningDocument,
  type TuningEntry,
  tuningPath,
} from "./bench/tune.ts";

// Results: the versioned results document and its readers.
export * from "./results/schema.ts";
export { parseResults, seriesLabel } from "./results/document.ts";

// Report: readers of results documents (HTML report, comparison, dashboard).
export { renderReport } from "./report/report.ts";
export { compareRuns } from "./report/compare.ts";

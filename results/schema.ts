/**
 * The results document: one versioned JSON file per `bench` run (`deft-bench/results`, version 2;
 * version 1 documents are still read, see `results/document.ts`). Reports, `compare` and
 * `dashboard` read only this document, never in-memory state.
 *
 * Layout: `environment` (where and how it ran) -> `settings` (what was asked) -> `calibration`
 * (device ceilings) -> `runtimes[]` (each WebGPU runtime of the run: name, version, flags, adapter,
 * calibration, stored tuning it used) -> `workloads[]` -> `snapshots[]` (sampled iterations) ->
 * `cases[]` (one per method and runtime) with plan counts, timing with raw samples, roofline and
 * verification. Every case carries a `key` that identifies it across runs, the runtime and kernel
 * variant it ran, and a `sourceHash` of its kernels, so `compare` never compares an edited kernel
 * with old numbers silently.
 *
 * Runtimes in keys: a case of Deno's built-in WebGPU keeps the key it always had
 * (`workload@iteration/method`), so runs from before version 2 stay comparable; a case of any other
 * runtime adds `@runtime` (`workload@iteration/method@dawn`). Keys of different runtimes never
 * match, so `compare` and `dashboard` keep runtimes apart.
 *
 * Units are in the field names: `Ns` nanoseconds, `Bytes`, `Flops`, `PerS` per second.
 *
 * The format owns its record types (adapter, IO counts, runtime names, kernel families) rather than
 * borrowing the kernels' live ones, so a field a kernel record gains does not silently change the
 * persisted format; `tests/schema_test.ts` checks at compile time that the live records still fit
 * these field for field.
 *
 * Fields added within a version are optional on read (`?` below: `clock` of the environment, of
 * each runtime and of each case, `l2ReadBytesPerS` and `reference` of the calibration, the DRAM/L2
 * fields of a roofline, `partial`). A document written before the DRAM/L2 roofline model is
 * upgraded on read (`results/roofline.ts`): `counts.dramBytes` estimated from the snapshot's facts,
 * rooflines recomputed, and a `roofline-recomputed` warning added.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { Tree, TreeFacts } from "../workloads/tree.ts";

/** Format tag of a results document. */
export const RESULTS_FORMAT = "deft-bench/results";
/** Current version of the results format. */
export const RESULTS_VERSION = 2;
/** Versions {@linkcode parseResults} reads (older ones are upgraded in memory). */
export const READABLE_RESULTS_VERSIONS: readonly number[] = [1, 2];

/**
 * The WebGPU runtimes a results document names (`kernels/gpu.ts` opens them): Deno's built-in
 * WebGPU and Dawn. The format owns this list: a runtime the kernels gain is not a runtime of the
 * format until it is added here (`tests/schema_test.ts` fails until then).
 */
export const RESULTS_RUNTIMES = ["deno", "dawn"] as const;

/** A runtime as results documents name it (see {@linkcode RESULTS_RUNTIMES}). */
export type ResultsRuntime = (typeof RESULTS_RUNTIMES)[number];

/** The runtime every run before version 2 used, and the one whose case keys carry no suffix. */
export const DEFAULT_RUNTIME: ResultsRuntime = "deno";

/** Kernel families a run asks for (`bench --kernel`; each case records the variant it ran). */
export const KERNEL_FAMILIES = ["auto", "fma", "mma"] as const;

/** A kernel family (see {@linkcode KERNEL_FAMILIES}). */
export type KernelFamily = (typeof KERNEL_FAMILIES)[number];

/** One subgroup-matrix configuration of an adapter (`left x right -> result`, M x N x K). */
export interface SubgroupMatrixRecord {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** What the adapter was and what the device was granted, as recorded. */
export interface AdapterRecord {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** Features granted to the device. */
  features: string[];
  /** Limits granted to the device. */
  limits: Record<string, number>;
  /** Subgroup sizes the adapter may use (0 when unknown; absent in version 1 documents). */
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** Subgroup-matrix configurations usable on the device (absent in version 1 documents). */
  subgroupMatrixConfigs?: SubgroupMatrixRecord[];
}

/**
 * IO of a case in the paper's accounting (Table 12 formulas, per layer, counted per query head as
 * the paper's Table 17 does: elements x qHeads x dtype bytes).
 */
export interface PaperIoRecord {
  /** KV cache: 2·d·ΣN_i (sequence-based) or 2·d·N_tree (tree-aware), x qHeads x bytes. */
  kvBytes: number;
  /** Masks: dense causal mask l_n·N_tree (tree-mask), N_tree (deft-flatten), 0 otherwise. */
  maskBytes: number;
  /** Partial results: 8·l_n·N_tree (tree-mask: QK^T, scaled, masked, softmax), 0 otherwise. */
  partialBytes: number;
  /** Sum of the above. */
  totalBytes: number;
}

/** Bytes the kernels of a case load and store per layer, re-reads included. */
export interface RealIoRecord {
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

/** The deterministic counts of a case's plan: compared exactly by `compare`. */
export interface CountsRecord {
  paper: PaperIoRecord;
  real: RealIoRecord;
  /**
   * The bytes that must cross DRAM at least once (KV on some query's path once per KV head, Q,
   * uploaded masks, the output): the roofline's DRAM floor. Estimated on read for documents
   * written before it existed (`results/roofline.ts`).
   */
  dramBytes: number;
  /** FLOPs the kernels execute (multiply and add count 2), masked-out and padded work included. */
  flops: number;
  /** FLOPs of exact tree attention (4·d·ΣN_i·qHeads), the same for every method. */
  usefulFlops: number;
}

/**
 * The key of a case: `workload@iteration/method`, plus `@runtime` for runtimes other than
 * {@linkcode DEFAULT_RUNTIME} (so keys of Deno runs are the same as before runtimes existed).
 */
export function caseKey(
  workload: string,
  iteration: number,
  method: string,
  runtime: ResultsRuntime = DEFAULT_RUNTIME,
): string {
  const key = `${workload}@${iteration}/${method}`;
  return runtime === DEFAULT_RUNTIME ? key : `${key}@${runtime}`;
}

/** Where the run happened. */
export interface Environment {
  /** The adapter of the first runtime (every runtime's adapter is in `runtimes[]`). */
  adapter: AdapterRecord;
  deno: string;
  v8: string;
  typescript: string;
  os: string;
  arch: string;
  /** Host name is not recorded (privacy); a CPU description is, when readable. */
  cpu: string | null;
  gitCommit: string | null;
  gitDirty: boolean | null;
  /** ISO time the run started. */
  startedAt: string;
  /** ISO time the run ended. */
  finishedAt: string;
  /** The command line as given (arguments after the program). */
  command: string[];
  /** `nvidia-smi` readings (name, driver, clocks, temperature, power) before and after, if any. */
  nvidiaSmi: { before: Record<string, string>; after: Record<string, string> } | null;
  /**
   * Timestamp tick check: GPU time of a long pass by timestamps divided by its wall time (near 1
   * when timestamps are nanoseconds), or null when not checked (first runtime; each runtime's is in
   * `runtimes[]`).
   */
  tickRatio: number | null;
  /** How the run kept and checked the GPU's clock (absent in older documents). */
  clock?: RunClock | null;
}

/**
 * The clock check of a run (`bench/clock.ts`). A busy reference kernel runs before every group of
 * cases until its time is stable (spin-up), opens every timed batch (lead), and is timed between
 * the rounds of every batch and after its last one; each case's samples are compared with the
 * reference's working speed.
 */
export interface RunClock {
  /** The reference kernel: source id, workgroups, loop iterations, dispatches per timed pass. */
  reference: { kernel: string; workgroups: number; iterations: number; repetitions: number };
  /**
   * Time of one reference dispatch at the adapter's working speed, ns: the calibrated time of the
   * same kernel in the same timing mode, lowered to the best batch median of this run.
   */
  workingNs: number;
  /** `calibration` when the calibrated time is the working speed, `run` when this run set it. */
  workingSource: "calibration" | "run";
  /** A case below this fraction of the working speed is flagged `lowClock` (0.9). */
  lowClockFraction: number;
  /** Spin-ups (one per group of cases), how many reached a stable speed, and their wall time. */
  spinUps: number;
  stableSpinUps: number;
  spinUpMs: number;
  /** Lead at the end of the run, ns of GPU time before every batch (0: none, wall clock). */
  leadNs: number;
  /** Cases flagged `lowClock`. */
  lowClockCases: number;
  /**
   * Samples dropped with rounds that ran at a low clock and taken again after a new spin-up (at
   * most two rounds per group; absent in older documents).
   */
  retriedSamples?: number;
  /**
   * `nvidia-smi` SM clock read every 250 ms during the run: readings, the highest SM clock read
   * while cases were measured (the working clock) and the adapter's maximum; null without it.
   */
  smi: { readings: number; workingSmMHz: number | null; maxSmMHz: number | null } | null;
}

/** Where a case was measured against the working clock. */
export interface CaseClock {
  /**
   * Working speed over the case's speed by the reference kernel: the working time divided by the
   * median over its samples of the reference time bracketing each sample (the faster of the
   * reference points before and after it; 1: at working speed).
   */
  fraction: number;
  /** The same for its slowest-bracketed sample. */
  minFraction: number;
  /** Samples bracketed by a reference below `lowClockFraction`. */
  lowSamples: number;
  /**
   * Samples of rounds that ran at a low clock, dropped and taken again after a new spin-up (not in
   * `timing`; absent in older documents).
   */
  retriedSamples?: number;
  /** Median `nvidia-smi` SM clock while its group was measured, MHz, or null. */
  smMHz: number | null;
  /** smMHz over the run's working SM clock, or null. */
  smFraction: number | null;
  /**
   * Measured below `lowClockFraction` of the working speed (by the reference or by nvidia-smi):
   * its latency is not comparable, and `compare` calls no change on it.
   */
  lowClock: boolean;
}

/** A method option's value: a number, a name, or a group of them (e.g. `mma: {rows, keys}`). */
export type OptionValue = number | string | Record<string, number | string>;

/** A stored tuning (`deft-bench tune`) that a runtime of the run used. */
export interface TuningUse {
  /** The tuning file. */
  file: string;
  /** When the tuning was measured. */
  tunedAt: string;
  /** Options applied per method (explicit command-line options are not among them). */
  applied: Record<string, Record<string, OptionValue>>;
}

/** One WebGPU runtime of a run: what it is, how it was started, its adapter and ceilings. */
export interface RuntimeRun {
  name: ResultsRuntime;
  /** `deno 2.9.6` or `dawn (npm webgpu@0.6.2)`. */
  version: string;
  /** Flags the runtime was created with (Dawn's `create()` options; empty for Deno). */
  flags: string[];
  /** Where the runtime was loaded from (Dawn's addon path or npm specifier), or null. */
  source: string | null;
  adapter: AdapterRecord;
  /** This runtime's device ceilings, or null. */
  calibration: Calibration | null;
  /** Timestamp tick check of this runtime's device (see `Environment.tickRatio`). */
  tickRatio: number | null;
  /** How this runtime's samples were timed. */
  timingMode: TimingSettings["mode"];
  /** How this runtime's device kept and checked its clock (absent when not checked). */
  clock?: RunClock | null;
  /** Stored tuning this runtime's cases used, or null. */
  tuning: TuningUse | null;
}

/** How timings were taken. */
export interface TimingSettings {
  /**
   * `timestamp`: begin/end timestamps around each sample's compute pass (the default when the
   * adapter has `timestamp-query`); `wallclock-batched`: many repetitions inside one submit timed by
   * the wall clock (when it has not; coarse, said so in every report).
   */
  mode: "timestamp" | "wallclock-batched";
  /**
   * Dispatch repetitions of the method inside one timed pass (per-sample time is divided); 0 when
   * chosen per case (see `TimingStats.repetitions`).
   */
  repetitionsPerSample: number;
  warmupMs: number;
  /** Time budget per case. */
  budgetMs: number;
  minSamples: number;
  maxSamples: number;
  /** Stop once the 95% CI half-width is below this fraction of the median. */
  targetRelativeCi: number;
  /** Evict caches between samples (a flush pass writing 2x the L2 size). */
  cold: boolean;
  /** Order of cases within a round: interleaved round-robin over methods. */
  interleaved: boolean;
}

/** What was asked for. */
export interface Settings {
  /**
   * The methods of the run, in the order reports show them: the method registry's, as `bench`
   * writes them (reports take their method order from here, never from the kernels).
   */
  methods: string[];
  dtype: Dtype;
  shape: ModelShape;
  blockSize: number;
  chunkSize: number;
  /** Kernel family asked for (`auto`, `fma`, `mma`); each case records the variant it ran. */
  kernel: KernelFamily;
  /** The runtimes of the run, in the order their cases appear. */
  runtimes: ResultsRuntime[];
  /** Sampled iterations per workload run. */
  samplesPerRun: number;
  seed: number;
  /** Presets scaled by this factor (1 = the paper's sizes). */
  scale: number;
  /** Why the run was scaled, e.g. "software adapter", or null. */
  scaleReason: string | null;
  /**
   * A smoke run (the default of `bench` on a software adapter): what it did, that it measures
   * nothing about GPUs, and how to get real numbers; null or absent for a measurement.
   */
  smoke?: string | null;
  verify: boolean;
  /** Rows (query, head) checked against the reference per case. */
  verifyRows: number;
  timing: TimingSettings;
}

/** The clock reference kernel as calibrated (see {@linkcode RunClock}). */
export interface ClockReferenceCalibration {
  /** Source id of the kernel (`busy-<hash>`): another kernel's time is not comparable. */
  kernel: string;
  timingMode: TimingSettings["mode"];
  workgroups: number;
  iterations: number;
  repetitions: number;
  /** Time of one dispatch at the working clock (after a spin-up), ns. */
  nsPerDispatch: number;
}

/** Device ceilings measured by `calibrate`. */
export interface Calibration {
  /** Adapter the numbers belong to (vendor/architecture/description). */
  adapterKey: string;
  measuredAt: string;
  /** Read bandwidth by buffer size. */
  readBandwidth: { bytes: number; bytesPerS: number }[];
  /** Best read bandwidth over the sizes: the DRAM roof. */
  peakReadBytesPerS: number;
  /**
   * Read bandwidth of working sets well inside L2 (a few MiB), each read many times in one
   * dispatch with every workgroup moving to other lines each round (absent in older calibrations).
   */
  l2ReadBandwidth?: { bytes: number; bytesPerS: number }[];
  /** Best of `l2ReadBandwidth`: the L2 roof (null or absent: not measured). */
  l2ReadBytesPerS?: number | null;
  /** The clock reference kernel's working speed (absent in older calibrations). */
  reference?: ClockReferenceCalibration | null;
  /** FMA throughput, vec4<f32>, FLOP/s (an FMA counts 2). */
  f32FlopsPerS: number;
  /** FMA throughput, vec4<f16>, FLOP/s, or null without shader-f16. */
  f16FlopsPerS: number | null;
  /**
   * Subgroup-matrix f16 x f16 -> f32 throughput with operands in registers, FLOP/s: the compute
   * roof of the matrix (`mma-*`) kernels. Null or absent without matrix units.
   */
  matrixFlopsPerS?: number | null;
  /** GPU time of one empty dispatch, and of each extra dispatch in a pass. */
  dispatchNs: number;
  extraDispatchNs: number;
  /**
   * Workgroups that each take the device's whole workgroup storage that run at once (one per SM
   * on an H200: 132); null on a software adapter, absent in older calibrations. deft-flatten sizes
   * its blocks from it (`multiprocessors`).
   */
  residentWorkgroups?: number | null;
}

/** Robust statistics of a sample set (all in ns). */
export interface TimingStats {
  samplesNs: number[];
  medianNs: number;
  meanNs: number;
  minNs: number;
  maxNs: number;
  /** Median absolute deviation (unscaled). */
  madNs: number;
  /** 95% bootstrap confidence interval of the median. */
  ci95Ns: [number, number];
  /** Tukey fences labels: counts of mild/severe low/high outliers (labelled, never dropped). */
  outliers: { lowSevere: number; lowMild: number; highMild: number; highSevere: number };
  /** Repetitions of the method inside each timed pass (samples are per repetition); 1 if absent. */
  repetitions?: number;
}

/**
 * Where a case sits against the calibrated ceilings (`results/roofline.ts`). Three floors, each a
 * lower bound of its GPU time: DRAM (`counts.dramBytes`, the bytes that must cross DRAM once, at
 * the DRAM read bandwidth), L2 (all real bytes, re-reads included, at the L2 read bandwidth) and
 * compute (executed FLOPs at the FMA peak). No case can beat a floor whose byte count and ceiling
 * are right, so the fraction is at most 1; a case above 1 carries a `roof-exceeded` warning.
 */
export interface Roofline {
  /** `dram-l2-compute` (older documents are recomputed on read). */
  model?: string;
  /** Real bytes / median time. */
  achievedBytesPerS: number;
  /** Executed FLOPs / median time. */
  achievedFlopsPerS: number;
  /** The bytes counted against DRAM (`counts.dramBytes`). */
  dramBytes?: number;
  /** dramBytes at the DRAM read bandwidth. */
  dramTimeNs?: number;
  /** Real bytes at the L2 read bandwidth; null when the calibration has no L2 roof. */
  l2TimeNs?: number | null;
  /** max(dramTime, l2Time): the memory floor. */
  ioTimeNs: number;
  /** Executed FLOPs at the dtype's FMA peak. */
  flopTimeNs: number;
  /** max(dramTime, l2Time, flopTime) / median: 1 means on the roof that binds. */
  fraction: number;
  /** The floor that binds (`memory`: the pre-L2 model, real bytes at DRAM bandwidth). */
  bound: "dram" | "l2" | "compute" | "memory";
}

/** Outcome of checking a case's output against the float64 reference. */
export interface Verification {
  checked: boolean;
  rows: number;
  maxRelError: number;
  tolerance: number;
  unwritten: number;
  nonFinite: number;
  passed: boolean;
}

/** One method on one snapshot on one runtime. */
export interface CaseResult {
  /** `workload@iteration/method[@runtime]` (see {@linkcode caseKey}): stable across runs. */
  key: string;
  method: string;
  /** The WebGPU runtime the case ran on. */
  runtime: ResultsRuntime;
  /**
   * The kernel variant the plan chose (`fma`, `mma`, or a method's own name for it); the kernel
   * family asked for when the plan does not name one.
   */
  kernel: string;
  /** Method options the case was planned with (block size, chunk size, kernel family, ...). */
  options: Record<string, OptionValue>;
  /** Hash of the method's WGSL sources and constants. */
  sourceHash: string;
  status: "ok" | "failed" | "error";
  /** Why it failed or errored. */
  message: string | null;
  counts: CountsRecord;
  stats: Record<string, number>;
  dispatches: number;
  /** Pipeline creation and metadata upload time (wall clock), not part of latency. */
  prepareMs: number;
  /** Planning time on the CPU (wall clock). */
  planMs: number;
  timing: TimingStats | null;
  roofline: Roofline | null;
  verification: Verification;
  /** Clock check of its samples; null when not checked, absent in older documents. */
  clock?: CaseClock | null;
}

/** One sampled iteration of a workload. */
export interface SnapshotResult {
  iteration: number;
  /** Iterations of the full run this snapshot stands for. */
  weight: number;
  facts: TreeFacts;
  /** The tree itself for small trees (at most 4096 nodes), so reports can draw it; else null. */
  tree: Tree | null;
  cases: CaseResult[];
}

/** Per-method totals over a workload's run on one runtime. */
export interface MethodTotal {
  method: string;
  runtime: ResultsRuntime;
  /** Σ weight x median: estimated attention time of one layer over the whole run. */
  runNs: number;
  /** runNs x layers: the paper's Table 16 shape (whole model, one query batch per iteration). */
  modelRunNs: number;
  /** runNs / iterations. */
  meanIterationNs: number;
  /**
   * sequence.runNs / runNs on the same runtime, measured in this run; null when sequence did not
   * run or failed.
   */
  speedupVsSequence: number | null;
  /** Run totals of paper-accounting IO for the whole model (x layers). */
  paperIo: PaperIoRecord;
  /** Run total of real bytes for the whole model (x layers). */
  realBytes: number;
  /** True when every snapshot of this method ran and passed verification. */
  complete: boolean;
}

/** One workload of the run. */
export interface WorkloadResult {
  name: string;
  kind: string;
  params: Record<string, unknown>;
  iterations: number;
  /** Tree facts summed over the whole run (not only the samples). */
  runFacts: { treeTokens: number; pathTokens: number; queries: number; kvIoReduction: number };
  snapshots: SnapshotResult[];
  totals: MethodTotal[];
  /** Sweep coordinates when the workload is part of a sweep (e.g. prompt or width). */
  sweep: { parameter: string; value: number } | null;
}

/** A warning attached to the run (high noise, fallback adapter, too few samples, ...). */
export interface Warning {
  code: string;
  message: string;
  /** Case key it concerns, or null for the whole run. */
  key: string | null;
}

/**
 * Why a run holds fewer cases than it planned: `bench` was interrupted (SIGINT, SIGTERM) and wrote
 * the cases finished so far. Absent (or null) for a run that completed.
 */
export interface PartialRun {
  /** What stopped the run, e.g. `interrupted by SIGINT`. */
  reason: string;
  /** Cases written (all of every finished snapshot). */
  completedCases: number;
  /** Cases the run had planned. */
  plannedCases: number;
}

/** The whole results document. */
export interface ResultsDocument {
  format: typeof RESULTS_FORMAT;
  version: typeof RESULTS_VERSION;
  environment: Environment;
  settings: Settings;
  /** Ceilings of the first runtime (every runtime's are in `runtimes[]`). */
  calibration: Calibration | null;
  /** Every runtime of the run, in `settings.runtimes` order. */
  runtimes: RuntimeRun[];
  workloads: WorkloadResult[];
  warnings: Warning[];
  /** Set when the run was interrupted and holds only the cases finished by then. */
  partial?: PartialRun | null;
}

/**
 * The results document: one versioned JSON file per `bench` run (`deft-bench/results`, version 1).
 * Reports, `compare` and `dashboard` read only this document, never in-memory state.
 *
 * Layout: `environment` (where and how it ran) -> `settings` (what was asked) -> `calibration`
 * (device ceilings) -> `workloads[]` -> `snapshots[]` (sampled iterations) -> `cases[]` (one per
 * method) with plan counts, timing with raw samples, roofline and verification. Every case carries
 * a `key` that identifies it across runs and a `sourceHash` of its kernels, so `compare` never
 * compares an edited kernel with old numbers silently.
 *
 * Units are in the field names: `Ns` nanoseconds, `Bytes`, `Flops`, `PerS` per second.
 *
 * @module
 */

import type { MethodName, PaperIo, PlanCounts } from "../kernels/method.ts";
import type { GpuInfo } from "../kernels/gpu.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { Tree, TreeFacts } from "../workloads/tree.ts";

/** Format tag of a results document. */
export const RESULTS_FORMAT = "deft-bench/results";
/** Current version of the results format. */
export const RESULTS_VERSION = 1;

/** Where the run happened. */
export interface Environment {
  adapter: GpuInfo;
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
   * when timestamps are nanoseconds), or null when not checked.
   */
  tickRatio: number | null;
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
  methods: MethodName[];
  dtype: Dtype;
  shape: ModelShape;
  blockSize: number;
  chunkSize: number;
  /** Sampled iterations per workload run. */
  samplesPerRun: number;
  seed: number;
  /** Presets scaled by this factor (1 = the paper's sizes). */
  scale: number;
  /** Why the run was scaled, e.g. "software adapter", or null. */
  scaleReason: string | null;
  verify: boolean;
  /** Rows (query, head) checked against the reference per case. */
  verifyRows: number;
  timing: TimingSettings;
}

/** Device ceilings measured by `calibrate`. */
export interface Calibration {
  /** Adapter the numbers belong to (vendor/architecture/description). */
  adapterKey: string;
  measuredAt: string;
  /** Read bandwidth by buffer size. */
  readBandwidth: { bytes: number; bytesPerS: number }[];
  /** Best read bandwidth over the sizes. */
  peakReadBytesPerS: number;
  /** FMA throughput, vec4<f32>, FLOP/s (an FMA counts 2). */
  f32FlopsPerS: number;
  /** FMA throughput, vec4<f16>, FLOP/s, or null without shader-f16. */
  f16FlopsPerS: number | null;
  /** GPU time of one empty dispatch, and of each extra dispatch in a pass. */
  dispatchNs: number;
  extraDispatchNs: number;
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

/** Where a case sits against the calibrated roofline. */
export interface Roofline {
  /** Real bytes / median time. */
  achievedBytesPerS: number;
  /** Executed FLOPs / median time. */
  achievedFlopsPerS: number;
  /** Real bytes at peak bandwidth. */
  ioTimeNs: number;
  /** Executed FLOPs at the dtype's FMA peak. */
  flopTimeNs: number;
  /** max(ioTime, flopTime) / median: 1 means at the roofline. */
  fraction: number;
  bound: "memory" | "compute";
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

/** One method on one snapshot. */
export interface CaseResult {
  /** `workload@iteration/method`: stable across runs with the same settings. */
  key: string;
  method: MethodName;
  /** Hash of the method's WGSL sources and constants. */
  sourceHash: string;
  status: "ok" | "failed" | "error";
  /** Why it failed or errored. */
  message: string | null;
  counts: PlanCounts;
  stats: Record<string, number>;
  dispatches: number;
  /** Pipeline creation and metadata upload time (wall clock), not part of latency. */
  prepareMs: number;
  /** Planning time on the CPU (wall clock). */
  planMs: number;
  timing: TimingStats | null;
  roofline: Roofline | null;
  verification: Verification;
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

/** Per-method totals over a workload's run. */
export interface MethodTotal {
  method: MethodName;
  /** Σ weight x median: estimated attention time of one layer over the whole run. */
  runNs: number;
  /** runNs x layers: the paper's Table 16 shape (whole model, one query batch per iteration). */
  modelRunNs: number;
  /** runNs / iterations. */
  meanIterationNs: number;
  /** sequence.runNs / runNs, measured in this run; null when sequence did not run or failed. */
  speedupVsSequence: number | null;
  /** Run totals of paper-accounting IO for the whole model (x layers). */
  paperIo: PaperIo;
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
  calibration: Calibration | null;
  workloads: WorkloadResult[];
  warnings: Warning[];
  /** Set when the run was interrupted and holds only the cases finished by then. */
  partial?: PartialRun | null;
}

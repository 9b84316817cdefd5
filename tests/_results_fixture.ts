/**
 * Builds valid results documents for the reporting tests: real workload trees (from the presets,
 * scaled down), paper-style IO counts, and raw latency samples drawn from a seeded log-normal
 * around a chosen median, summarized with the same statistics the bench uses.
 */

import type { GpuInfo, RuntimeName } from "../kernels/gpu.ts";
import { METHOD_NAMES, type MethodName, type PaperIo, type RealIo } from "../kernels/method.ts";
import { estimateDramBytes, roofline } from "../results/roofline.ts";
import {
  type Calibration,
  caseKey,
  type CaseResult,
  type MethodTotal,
  RESULTS_FORMAT,
  RESULTS_VERSION,
  type ResultsDocument,
  type SnapshotResult,
  type WorkloadResult,
} from "../results/schema.ts";
import { summarize } from "../results/stats.ts";
import { getPreset } from "../workloads/presets.ts";
import { Rng } from "../workloads/rng.ts";
import { IndexedTree, type Tree, type TreeFacts, treeFacts } from "../workloads/tree.ts";

/** One workload of a fixture run. */
export interface FixtureWorkload {
  /** Preset the trees come from (default `few-shot-b20`). */
  preset?: string;
  /** Name shown in results (default: the preset's). */
  name?: string;
  /** Preset scale (default 0.02: small trees). */
  scale?: number;
  /** Sampled snapshots (default 2). */
  snapshots?: number;
  /** Use these trees instead of a preset (one snapshot each). */
  trees?: Tree[];
  sweep?: { parameter: string; value: number } | null;
}

/** Options of {@linkcode makeRun}. */
export interface FixtureOptions {
  /** Seed of the latency noise. */
  seed?: number;
  commit?: string | null;
  startedAt?: string;
  methods?: MethodName[];
  workloads?: FixtureWorkload[];
  /** Samples per case (default 30). */
  samples?: number;
  /** Log-normal sigma of the samples (default 0.02, i.e. about 2 % noise). */
  noise?: number;
  /** Median latency of a case (default: a bandwidth model of its real bytes). */
  latencyNs?: (
    method: MethodName,
    facts: TreeFacts,
    counts: { real: RealIo; flops: number },
  ) => number;
  sourceHash?: (method: MethodName) => string;
  /** Software adapter (llvmpipe), as in CI. */
  fallback?: boolean;
  calibration?: boolean;
  /** Runtimes of the run (default `["deno"]`); every case runs on each. */
  runtimes?: RuntimeName[];
  /** Median latency factor of a runtime's cases (default 1). */
  runtimeFactor?: (runtime: RuntimeName) => number;
}

const SHAPE = { name: "llama3-8b", qHeads: 32, kvHeads: 8, headDim: 128, layers: 32 };
const BYTES = 2;
const PEAK_BW = 50e9;
const PEAK_FLOPS = 2e12;

/** How far each method's default latency sits from the roofline (deft-node's poor balance). */
const SLOWDOWN: Partial<Record<MethodName, number>> = {
  "radix": 1.05,
  "tree-mask": 1.2,
  "deft-node": 1.8,
  "deft-node-chunk": 1.4,
  "cascade": 1.1,
};

const SEQUENCE_BASED = new Set<MethodName>(["sequence", "radix", "cascade"]);

/** Paper and real IO and FLOPs of a method on a tree, in the paper's accounting (per layer). */
function countsFor(method: MethodName, f: TreeFacts, blockSize: number) {
  const d = SHAPE.headDim;
  const per = SHAPE.qHeads * BYTES;
  const kvTokens = SEQUENCE_BASED.has(method) ? f.pathTokens : f.treeTokens;
  const mask = method === "tree-mask"
    ? f.queries * f.treeTokens
    : method === "deft-flatten"
    ? f.treeTokens
    : 0;
  const partial = method === "tree-mask" ? 8 * f.queries * f.treeTokens : 0;
  const paper: PaperIo = {
    kvBytes: 2 * d * kvTokens * per,
    maskBytes: mask * per,
    partialBytes: partial * per,
    totalBytes: 0,
  };
  paper.totalBytes = paper.kvBytes + paper.maskBytes + paper.partialBytes;
  const group = SHAPE.qHeads / SHAPE.kvHeads;
  const blocks = Math.ceil(f.treeTokens / blockSize);
  const real: RealIo = {
    kvBytes: paper.kvBytes / group,
    qBytes: f.queries * SHAPE.qHeads * d * BYTES * (method.startsWith("deft") ? 2 : 1),
    maskBytes: method === "deft-flatten" ? blocks * blockSize * 4 : paper.maskBytes,
    metadataBytes: method.startsWith("deft") ? blocks * 16 : f.queries * 8,
    partialBytes: method === "sequence" || method.startsWith("deft")
      ? 2 * f.queries * SHAPE.qHeads * (d + 1) * 4
      : 0,
    logitsBytes: method === "radix" || method === "tree-mask" ? paper.partialBytes : 0,
    outputBytes: f.queries * SHAPE.qHeads * d * 4,
    totalBytes: 0,
  };
  real.totalBytes = real.kvBytes + real.qBytes + real.maskBytes + real.metadataBytes +
    real.partialBytes + real.logitsBytes + real.outputBytes;
  const usefulFlops = 4 * d * f.pathTokens * SHAPE.qHeads;
  const flops = method === "tree-mask"
    ? 4 * d * f.queries * f.treeTokens * SHAPE.qHeads
    : usefulFlops;
  const dramBytes = estimateDramBytes(f, SHAPE, "f16");
  return { paper, real, dramBytes, flops, usefulFlops };
}

function normal(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** Draws `n` samples around `medianNs` (log-normal, sigma `noise`). */
export function drawSamples(rng: Rng, medianNs: number, n: number, noise: number): number[] {
  return Array.from({ length: n }, () => medianNs * Math.exp(noise * normal(rng)));
}

/** The fixture's calibration: DRAM at PEAK_BW, L2 at 2.5x that, FMA at PEAK_FLOPS. */
const CALIBRATION: Calibration = {
  adapterKey: "nvidia/hopper/NVIDIA H100 80GB HBM3",
  measuredAt: "2025-01-02T03:00:00.000Z",
  readBandwidth: [{ bytes: 1 << 20, bytesPerS: 30e9 }, { bytes: 1 << 28, bytesPerS: PEAK_BW }],
  peakReadBytesPerS: PEAK_BW,
  l2ReadBandwidth: [{ bytes: 4 << 20, bytesPerS: 2.5 * PEAK_BW }],
  l2ReadBytesPerS: 2.5 * PEAK_BW,
  f32FlopsPerS: PEAK_FLOPS / 2,
  f16FlopsPerS: PEAK_FLOPS,
  dispatchNs: 3000,
  extraDispatchNs: 800,
};

/** A valid results document; every field is filled, raw samples included. */
export function makeRun(o: FixtureOptions = {}): ResultsDocument {
  const rng = new Rng(o.seed ?? 1);
  const methods = o.methods ?? ["sequence", "tree-mask", "deft-node", "deft-flatten"];
  const samples = o.samples ?? 30;
  const noise = o.noise ?? 0.02;
  const blockSize = 128;
  const runtimes = o.runtimes ?? ["deno"];
  // Default: a roofline model at 80 % of peak, a per-method inefficiency and a launch cost.
  const latency = o.latencyNs ??
    ((m, _f, c) =>
      4000 +
      1.25e9 * (SLOWDOWN[m] ?? 1) * Math.max(c.real.totalBytes / PEAK_BW, c.flops / PEAK_FLOPS));
  const workloads: WorkloadResult[] = (o.workloads ?? [{}]).map((w) => {
    const preset = w.preset ?? "few-shot-b20";
    let snaps: { iteration: number; weight: number; tree: Tree }[];
    let iterations: number;
    let name = w.name ?? preset;
    if (w.trees) {
      snaps = w.trees.map((tree, i) => ({ iteration: i, weight: 1, tree }));
      iterations = w.trees.length;
      name = w.name ?? "custom";
    } else {
      const run = getPreset(preset).build(1, w.scale ?? 0.02);
      snaps = run.sample(w.snapshots ?? 2);
      iterations = run.iterations;
    }
    const snapshots: SnapshotResult[] = snaps.map((s) => {
      const facts = treeFacts(new IndexedTree(s.tree));
      const cases: CaseResult[] = runtimes.flatMap((runtime) =>
        methods.map((method): CaseResult => {
          const counts = countsFor(method, facts, blockSize);
          const med = latency(method, facts, counts) * (o.runtimeFactor?.(runtime) ?? 1);
          const timing = summarize(drawSamples(rng, med, samples, noise), { seed: 7 });
          return {
            key: caseKey(name, s.iteration, method, runtime),
            method,
            runtime,
            kernel: "fma",
            options: { blockSize, chunkSize: 128, kernel: "auto" },
            sourceHash: o.sourceHash?.(method) ?? `h-${method}${runtime === "deno" ? "" : runtime}`,
            status: "ok",
            message: null,
            counts,
            stats: (method === "deft-flatten"
              ? { blocks: Math.ceil(facts.treeTokens / blockSize) }
              : {}) as Record<string, number>,
            dispatches: method.startsWith("deft") ? 2 : 1,
            prepareMs: 3,
            planMs: 0.2,
            timing,
            roofline: roofline(
              counts,
              timing.medianNs,
              "f16",
              o.calibration === false ? null : CALIBRATION,
            ),
            verification: {
              checked: true,
              rows: 8,
              maxRelError: 1e-4,
              tolerance: 2e-2,
              unwritten: 0,
              nonFinite: 0,
              passed: true,
            },
          };
        })
      );
      return { iteration: s.iteration, weight: s.weight, facts, tree: s.tree, cases };
    });
    return {
      name,
      kind: w.trees ? "file" : preset,
      params: { scale: w.scale ?? 0.02 },
      iterations,
      runFacts: { treeTokens: 0, pathTokens: 0, queries: 0, kvIoReduction: 0 },
      snapshots,
      totals: [],
      sweep: w.sweep ?? null,
    };
  });
  const adapter: GpuInfo = {
    vendor: o.fallback ? "mesa" : "nvidia",
    architecture: o.fallback ? "llvmpipe" : "hopper",
    device: "",
    description: o.fallback ? "llvmpipe (LLVM 15.0.6, 256 bits)" : "NVIDIA H100 80GB HBM3",
    isFallbackAdapter: o.fallback ?? false,
    features: ["shader-f16", "timestamp-query"],
    limits: { maxStorageBufferBindingSize: 134217728, maxComputeWorkgroupStorageSize: 32768 },
    subgroupMinSize: 32,
    subgroupMaxSize: 32,
    subgroupMatrixConfigs: [],
  };
  const calibration: Calibration | null = o.calibration === false ? null : CALIBRATION;
  const doc: ResultsDocument = {
    format: RESULTS_FORMAT,
    version: RESULTS_VERSION,
    environment: {
      adapter,
      deno: "2.9.6",
      v8: "14.0",
      typescript: "5.9",
      os: "linux",
      arch: "x86_64",
      cpu: "Test CPU",
      gitCommit: o.commit === undefined ? "0123456789abcdef0123456789abcdef01234567" : o.commit,
      gitDirty: false,
      startedAt: o.startedAt ?? "2025-01-02T03:04:05.000Z",
      finishedAt: o.startedAt ?? "2025-01-02T03:14:05.000Z",
      command: ["bench", "--preset", "few-shot-b20", "--scale", "0.02"],
      nvidiaSmi: null,
      tickRatio: 1.0003,
    },
    settings: {
      methods,
      dtype: "f16",
      shape: SHAPE,
      blockSize,
      chunkSize: 128,
      kernel: "auto",
      runtimes,
      samplesPerRun: 2,
      seed: 1,
      scale: 0.02,
      scaleReason: o.fallback ? "software adapter" : null,
      verify: true,
      verifyRows: 8,
      timing: {
        mode: "timestamp",
        repetitionsPerSample: 1,
        warmupMs: 200,
        budgetMs: 1000,
        minSamples: 10,
        maxSamples: samples,
        targetRelativeCi: 0.02,
        cold: false,
        interleaved: true,
      },
    },
    calibration: calibration === null ? null : structuredClone(calibration),
    runtimes: runtimes.map((name) => ({
      name,
      version: name === "deno" ? "deno 2.9.6" : "dawn (npm webgpu@0.6.2)",
      flags: name === "deno" ? [] : ["backend=vulkan"],
      source: name === "deno" ? null : "npm:webgpu@0.6.2",
      adapter,
      calibration: calibration === null ? null : structuredClone(calibration),
      tickRatio: 1.0003,
      timingMode: "timestamp",
      tuning: null,
    })),
    workloads,
    warnings: [],
  };
  return retotal(doc);
}

/** Recomputes run facts and per-method totals (per runtime) after a test changed cases. */
export function retotal(doc: ResultsDocument): ResultsDocument {
  const layers = doc.settings.shape.layers;
  for (const w of doc.workloads) {
    let treeTokens = 0, pathTokens = 0, queries = 0;
    for (const s of w.snapshots) {
      treeTokens += s.weight * s.facts.treeTokens;
      pathTokens += s.weight * s.facts.pathTokens;
      queries += s.weight * s.facts.queries;
    }
    w.runFacts = {
      treeTokens,
      pathTokens,
      queries,
      kvIoReduction: pathTokens === 0 ? 0 : 1 - treeTokens / pathTokens,
    };
    const methods = [...new Set(w.snapshots.flatMap((s) => s.cases.map((c) => c.method)))];
    const totals: MethodTotal[] = doc.settings.runtimes.flatMap((runtime) =>
      runtimeTotals(w, methods, runtime, layers)
    );
    w.totals = totals;
  }
  return doc;
}

function runtimeTotals(
  w: WorkloadResult,
  methods: readonly string[],
  runtime: RuntimeName,
  layers: number,
): MethodTotal[] {
  const totals: MethodTotal[] = methods.map((method) => {
    let runNs = 0;
    let complete = true;
    const paperIo = { kvBytes: 0, maskBytes: 0, partialBytes: 0, totalBytes: 0 };
    let realBytes = 0;
    for (const s of w.snapshots) {
      const c = s.cases.find((x) => x.method === method && x.runtime === runtime);
      if (!c || c.status !== "ok" || !c.timing || !c.verification.passed) {
        complete = false;
        continue;
      }
      runNs += s.weight * c.timing.medianNs;
      for (const k of ["kvBytes", "maskBytes", "partialBytes", "totalBytes"] as const) {
        paperIo[k] += s.weight * c.counts.paper[k] * layers;
      }
      realBytes += s.weight * c.counts.real.totalBytes * layers;
    }
    return {
      method,
      runtime,
      runNs,
      modelRunNs: runNs * layers,
      meanIterationNs: runNs / w.iterations,
      speedupVsSequence: null,
      paperIo,
      realBytes,
      complete,
    };
  });
  const seq = totals.find((t) => t.method === "sequence");
  for (const t of totals) {
    t.speedupVsSequence = seq && seq.complete && t.complete && t.runNs > 0
      ? seq.runNs / t.runNs
      : null;
  }
  return totals;
}

/** Finds a case by key (throws when absent). */
export function caseOf(doc: ResultsDocument, key: string): CaseResult {
  for (const w of doc.workloads) {
    for (const s of w.snapshots) for (const c of s.cases) if (c.key === key) return c;
  }
  throw new Error(`No case ${key}`);
}

/** Marks a case failed (status, message, no timing), as the bench records it. */
export function failCase(
  doc: ResultsDocument,
  key: string,
  status: "failed" | "error" = "failed",
): ResultsDocument {
  const c = caseOf(doc, key);
  c.status = status;
  c.message = status === "failed"
    ? "verification failed: max relative error 0.4 > 0.02"
    : "GPU validation error: binding too large";
  c.timing = null;
  c.roofline = null;
  if (status === "failed") c.verification = { ...c.verification, passed: false, maxRelError: 0.4 };
  return retotal(doc);
}

/** Every method name, for fixtures that run all. */
export const ALL_METHODS: MethodName[] = [...METHOD_NAMES];

/**
 * A run that exercises every part of the report: several workload kinds, a width sweep, all
 * charts, one failed and one errored case, and warnings. `name` renames the first workload.
 */
export function showcaseRun(o: FixtureOptions & { name?: string } = {}): ResultsDocument {
  const doc = makeRun({
    methods: ["sequence", "radix", "tree-mask", "deft-node", "deft-node-chunk", "deft-flatten"],
    workloads: [
      { preset: "few-shot-b20", name: o.name, scale: 0.05 },
      { preset: "sorting", scale: 0.1 },
      { preset: "speculative-t32", scale: 0.2, sweep: { parameter: "tree width", value: 32 } },
      { preset: "speculative-t64", scale: 0.2, sweep: { parameter: "tree width", value: 64 } },
      { preset: "speculative-t128", scale: 0.2, sweep: { parameter: "tree width", value: 128 } },
    ],
    ...o,
  });
  const first = doc.workloads[0]!;
  failCase(doc, `${first.name}@${first.snapshots[0]!.iteration}/tree-mask`, "error");
  failCase(doc, `speculative-t64@${doc.workloads[3]!.snapshots[1]!.iteration}/deft-node-chunk`);
  doc.warnings.push(
    {
      code: "high-noise",
      message: "CI half-width 7.5 % of the median after the budget",
      key: doc.workloads[1]!.snapshots[0]!.cases[0]!.key,
    },
    {
      code: "few-samples",
      message: "Only 10 samples fit in the time budget of one case",
      key: null,
    },
  );
  return doc;
}

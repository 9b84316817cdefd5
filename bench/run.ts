/**
 * The benchmark run: workloads x methods on one device, into one results document.
 *
 * For each workload, K iterations are sampled (weighted snapshots). For each snapshot a
 * {@linkcode Problem} is uploaded once; every method is planned and prepared, checked against the
 * float64 reference on a seeded sample of (query, head) rows, and the methods that passed are
 * timed interleaved. A method whose output is wrong is `failed` (never timed, never reported as
 * fast); one that throws is `error` with the message, and the run goes on. GPU buffers are freed
 * after every snapshot, so large trees do not pile up.
 *
 * @module
 */

import { type Gpu, GpuError, type PipelineSource } from "../kernels/gpu.ts";
import type {
  AttentionMethod,
  MethodName,
  MethodOptions,
  Plan,
  PlanCounts,
  PreparedMethod,
} from "../kernels/method.ts";
import { zeroPlanCounts } from "../kernels/method.ts";
import { Problem } from "../kernels/problem.ts";
import { logitLimitNote } from "../kernels/f16_logits.ts";
import { compareOutput, referenceAttention, type Row, scanOutput } from "../kernels/reference.ts";
import {
  type Calibration,
  type CaseResult,
  type Environment,
  type MethodTotal,
  RESULTS_FORMAT,
  RESULTS_VERSION,
  type ResultsDocument,
  type Roofline,
  type Settings,
  type SnapshotResult,
  type TimingSettings,
  type Verification,
  type Warning,
  type WorkloadResult,
} from "../results/schema.ts";
import { summarize } from "../results/stats.ts";
import { Rng } from "../workloads/rng.ts";
import { type DecodingRun, runFacts, type Snapshot } from "../workloads/run.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import { IndexedTree, treeFacts } from "../workloads/tree.ts";
import {
  type CaseMeasurement,
  createFlushPass,
  type MeasureCase,
  measureInterleaved,
} from "./measure.ts";
import { type ProgressReporter, silentProgress } from "./progress.ts";
import { busyPass, checkTicks, type Timer } from "./timer.ts";

/** Relative error bounds of the issue: f32 1e-4, f16 1e-2. */
export const VERIFY_TOLERANCE: Record<Dtype, number> = { f32: 1e-4, f16: 1e-2 };

/** Trees with at most this many nodes are stored in the results. */
export const MAX_STORED_TREE_NODES = 4096;

/** One workload of a run. */
export interface BenchWorkload {
  run: DecodingRun;
  sweep?: { parameter: string; value: number } | null;
}

/** Timing settings as asked (the mode comes from the timer). */
export interface TimingConfig extends Omit<TimingSettings, "mode" | "repetitionsPerSample"> {
  /** Fixed repetitions per sample, or undefined to let the timer's minimum sample length decide. */
  repetitions?: number;
}

/** Everything a run needs besides the device. */
export interface BenchConfig {
  workloads: BenchWorkload[];
  methods: AttentionMethod[];
  shape: ModelShape;
  dtype: Dtype;
  methodOptions: MethodOptions;
  samplesPerRun: number;
  seed: number;
  scale: number;
  scaleReason: string | null;
  verify: boolean;
  verifyRows: number;
  timing: TimingConfig;
  /** Device ceilings for rooflines, or null (no roofline). */
  calibration: Calibration | null;
  /** The command line as given. */
  command: string[];
  /** Run the timestamp tick check (default true). */
  tickCheck?: boolean;
  /** Bytes of the cold-mode flush buffer (default 128 MiB). */
  flushBytes?: number;
}

/** Injection points (tests pass a fake timer and clock). */
export interface BenchHooks {
  timer: Timer;
  progress?: ProgressReporter;
  now?: () => number;
  /** Read git and nvidia-smi (default true). */
  probeHost?: boolean;
}

function unverified(tolerance: number): Verification {
  return {
    checked: false,
    rows: 0,
    maxRelError: 0,
    tolerance,
    unwritten: 0,
    nonFinite: 0,
    passed: true,
  };
}

const finite = (x: number) => (Number.isFinite(x) ? x : Number.MAX_VALUE);

/** Hex SHA-256 (first 16 digits) of a method's pipeline sources, deduplicated and sorted. */
export async function sourceHash(
  method: string,
  sources: readonly PipelineSource[],
): Promise<string> {
  const items = [
    ...new Set(
      sources.map((s) =>
        JSON.stringify([s.label, s.entryPoint, Object.entries(s.constants).sort(), s.code])
      ),
    ),
  ].sort();
  const bytes = new TextEncoder().encode(JSON.stringify([method, items]));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A seeded sample of `count` distinct (query, head) rows (all rows when there are fewer). */
export function verificationRows(
  queries: number,
  heads: number,
  count: number,
  seed: number,
): Row[] {
  const total = queries * heads;
  const pick = (i: number): Row => ({ query: Math.floor(i / heads), head: i % heads });
  if (total <= count) return Array.from({ length: total }, (_, i) => pick(i));
  const rng = new Rng(seed);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(rng.int(0, total - 1));
  return [...chosen].sort((a, b) => a - b).map(pick);
}

/** Roofline of a case from its counts, median and the device ceilings. */
export function roofline(
  counts: PlanCounts,
  medianNs: number,
  dtype: Dtype,
  c: Calibration | null,
): Roofline | null {
  if (!c || !(medianNs > 0) || !(c.peakReadBytesPerS > 0) || !(c.f32FlopsPerS > 0)) return null;
  const flopsPerS = dtype === "f16" ? (c.f16FlopsPerS ?? c.f32FlopsPerS) : c.f32FlopsPerS;
  const ioTimeNs = (counts.real.totalBytes / c.peakReadBytesPerS) * 1e9;
  const flopTimeNs = (counts.flops / flopsPerS) * 1e9;
  return {
    achievedBytesPerS: counts.real.totalBytes / (medianNs * 1e-9),
    achievedFlopsPerS: counts.flops / (medianNs * 1e-9),
    ioTimeNs,
    flopTimeNs,
    fraction: Math.max(ioTimeNs, flopTimeNs) / medianNs,
    bound: ioTimeNs >= flopTimeNs ? "memory" : "compute",
  };
}

/** Per-method totals over a workload (Σ weight x median, whole model, speedup vs sequence). */
export function methodTotals(
  methods: readonly MethodName[],
  snapshots: readonly SnapshotResult[],
  iterations: number,
  shape: ModelShape,
): MethodTotal[] {
  const totals = methods.map((method): MethodTotal => {
    let runNs = 0, realBytes = 0, complete = snapshots.length > 0;
    const paperIo = { kvBytes: 0, maskBytes: 0, partialBytes: 0, totalBytes: 0 };
    for (const s of snapshots) {
      const c = s.cases.find((x) => x.method === method);
      if (!c || c.status !== "ok" || !c.timing || !c.verification.passed) {
        complete = false;
        continue;
      }
      runNs += s.weight * c.timing.medianNs;
      realBytes += s.weight * c.counts.real.totalBytes * shape.layers;
      for (const k of ["kvBytes", "maskBytes", "partialBytes", "totalBytes"] as const) {
        paperIo[k] += s.weight * c.counts.paper[k] * shape.layers;
      }
    }
    return {
      method,
      runNs,
      modelRunNs: runNs * shape.layers,
      meanIterationNs: iterations > 0 ? runNs / iterations : 0,
      speedupVsSequence: null,
      paperIo,
      realBytes,
      complete,
    };
  });
  const seq = totals.find((t) => t.method === "sequence");
  if (seq?.complete && seq.runNs > 0) {
    for (const t of totals) {
      if (t.complete && t.runNs > 0) t.speedupVsSequence = seq.runNs / t.runNs;
    }
  }
  return totals;
}

async function commandText(cmd: string, args: string[], cwd?: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      cwd,
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null; // not installed, or not permitted
  }
}

/** `git rev-parse HEAD` and whether the tree is dirty, at the harness's own checkout. */
export async function gitState(): Promise<{ commit: string | null; dirty: boolean | null }> {
  let cwd: string | undefined;
  try {
    cwd = decodeURIComponent(new URL("..", import.meta.url).pathname);
  } catch {
    cwd = undefined;
  }
  const head = await commandText("git", ["rev-parse", "HEAD"], cwd);
  if (!head) return { commit: null, dirty: null };
  const status = await commandText("git", ["status", "--porcelain"], cwd);
  return { commit: head.trim(), dirty: status === null ? null : status.trim().length > 0 };
}

const SMI_FIELDS =
  "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,clocks_event_reasons.active";

/** One `nvidia-smi` reading of the first GPU as field -> value, or null without nvidia-smi. */
export async function nvidiaSmi(): Promise<Record<string, string> | null> {
  const text = await commandText("nvidia-smi", [`--query-gpu=${SMI_FIELDS}`, "--format=csv"]);
  if (!text) return null;
  return parseSmiCsv(text);
}

/** Parses `nvidia-smi --format=csv` output (header and first data row). */
export function parseSmiCsv(text: string): Record<string, string> | null {
  const lines = text.trim().split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines.length < 2) return null;
  const keys = lines[0]!.split(",").map((s) => s.trim());
  const values = lines[1]!.split(",").map((s) => s.trim());
  const out: Record<string, string> = {};
  keys.forEach((k, i) => (out[k] = values[i] ?? ""));
  return out;
}

/** SM clock as a fraction of its maximum in an nvidia-smi reading, or null. */
export function smClockFraction(r: Record<string, string>): number | null {
  const find = (pre: string) => {
    const k = Object.keys(r).find((x) => x.startsWith(pre));
    return k ? parseFloat(r[k]!) : NaN;
  };
  const sm = find("clocks.current.sm") || find("clocks.sm");
  const max = find("clocks.max.sm");
  return sm > 0 && max > 0 ? sm / max : null;
}

async function cpuModel(): Promise<string | null> {
  try {
    const text = await Deno.readTextFile("/proc/cpuinfo");
    const m = /^model name\s*:\s*(.+)$/m.exec(text);
    return m ? m[1]!.trim() : null;
  } catch {
    return null;
  }
}

interface Prepared {
  method: AttentionMethod;
  plan: Plan;
  prepared: PreparedMethod;
}

/** Runs the benchmark and returns the results document (the caller writes it). */
export async function runBench(
  gpu: Gpu,
  config: BenchConfig,
  hooks: BenchHooks,
): Promise<ResultsDocument> {
  const { timer } = hooks;
  const progress = hooks.progress ?? silentProgress;
  const now = hooks.now ?? (() => performance.now());
  const probeHost = hooks.probeHost ?? true;
  const startedAt = new Date().toISOString();
  const warnings: Warning[] = [];
  const warn = (code: string, message: string, key: string | null = null) => {
    warnings.push({ code, message, key });
    if (key === null && code !== "scaled") progress.note(`warning: ${message}`);
  };
  const tolerance = VERIFY_TOLERANCE[config.dtype];

  const [git, smiBefore, cpu] = probeHost
    ? await Promise.all([gitState(), nvidiaSmi(), cpuModel()])
    : [{ commit: null, dirty: null }, null, null];

  if (gpu.info.isFallbackAdapter) {
    warn(
      "fallback-adapter",
      `${
        gpu.info.description || "the adapter"
      } is a software (fallback) adapter: its timings say nothing about GPUs`,
    );
  }
  if (timer.mode === "wallclock-batched") {
    warn(
      "no-timestamps",
      "the adapter has no timestamp-query: every sample is many repetitions in one submit timed by the wall clock (coarse)",
    );
  }
  if (config.scaleReason) warn("scaled", config.scaleReason);
  if (!config.calibration) warn("no-calibration", "no calibration: rooflines are not computed");

  let tickRatio: number | null = null;
  if (config.tickCheck !== false && gpu.hasTimestamps && timer.mode === "timestamp") {
    const busy = await busyPass(gpu, { workgroups: 8, iterations: 2000 });
    try {
      tickRatio = (await checkTicks(gpu, busy, { targetMs: 60 })).ratio;
    } finally {
      busy.destroy();
    }
    if (tickRatio < 0.8 || tickRatio > 1.25) {
      warn(
        "tick-ratio",
        `timestamp ticks do not look like nanoseconds: timestamp/wall ratio ${
          tickRatio.toFixed(3)
        }; GPU times may be scaled wrongly`,
      );
    }
  }

  const flush = config.timing.cold
    ? await createFlushPass(gpu, { bytes: config.flushBytes })
    : undefined;

  const plans = config.workloads.map((w) => ({ w, snaps: w.run.sample(config.samplesPerRun) }));
  progress.start(plans.reduce((n, p) => n + p.snaps.length * config.methods.length, 0));

  const workloads: WorkloadResult[] = [];
  try {
    for (const { w, snaps } of plans) {
      const run = w.run;
      const snapshots: SnapshotResult[] = [];
      for (const snap of snaps) {
        progress.current(`${run.info.name}@${snap.iteration}`);
        const cases = await runSnapshot(
          gpu,
          config,
          hooks,
          run.info.name,
          snap,
          flush,
          tolerance,
          now,
        );
        for (const c of cases) {
          progress.caseDone(c);
          if (c.status === "error") warn("case-error", `${c.key}: ${c.message}`, c.key);
          if (c.status === "failed") warn("verification-failed", `${c.key}: ${c.message}`, c.key);
        }
        const facts = treeFacts(snap.tree);
        snapshots.push({
          iteration: snap.iteration,
          weight: snap.weight,
          facts,
          tree: facts.nodes <= MAX_STORED_TREE_NODES ? snap.tree : null,
          cases,
        });
      }
      const f = runFacts(run);
      workloads.push({
        name: run.info.name,
        kind: run.info.kind,
        params: run.info.params,
        iterations: run.iterations,
        runFacts: {
          treeTokens: f.treeTokens,
          pathTokens: f.pathTokens,
          queries: f.queries,
          kvIoReduction: f.kvIoReduction,
        },
        snapshots,
        totals: methodTotals(
          config.methods.map((m) => m.name),
          snapshots,
          run.iterations,
          config.shape,
        ),
        sweep: w.sweep ?? null,
      });
    }
  } finally {
    flush?.destroy();
    progress.finish();
  }

  for (const w of workloads) {
    for (const s of w.snapshots) {
      for (const c of s.cases) caseWarnings(c, config.timing, warn);
    }
  }
  if (timer.discarded > 0) {
    warn(
      "discarded-samples",
      `${timer.discarded} samples had non-positive timestamp deltas and were discarded`,
    );
  }
  const smiAfter = probeHost && smiBefore ? await nvidiaSmi() : null;
  if (smiBefore && smiAfter) {
    // nvbench's rule: an SM clock below 75% of its maximum means the GPU throttled.
    const frac = smClockFraction(smiAfter);
    if (frac !== null && frac < 0.75) {
      const reasons = smiAfter["clocks_event_reasons.active"];
      warn(
        "throttled",
        `the SM clock was at ${(frac * 100).toFixed(0)}% of its maximum after the run (nvidia-smi${
          reasons ? `, clock event reasons ${reasons}` : ""
        })`,
      );
    }
  }

  const environment: Environment = {
    adapter: gpu.info,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    os: Deno.build.os,
    arch: Deno.build.arch,
    cpu,
    gitCommit: git.commit,
    gitDirty: git.dirty,
    startedAt,
    finishedAt: new Date().toISOString(),
    command: config.command,
    nvidiaSmi: smiBefore ? { before: smiBefore, after: smiAfter ?? {} } : null,
    tickRatio,
  };
  const t = config.timing;
  const settings: Settings = {
    methods: config.methods.map((m) => m.name),
    dtype: config.dtype,
    shape: config.shape,
    blockSize: config.methodOptions.blockSize,
    chunkSize: config.methodOptions.chunkSize,
    samplesPerRun: config.samplesPerRun,
    seed: config.seed,
    scale: config.scale,
    scaleReason: config.scaleReason,
    verify: config.verify,
    verifyRows: config.verifyRows,
    timing: {
      mode: timer.mode,
      // 0: chosen per case (each case's timing.repetitions).
      repetitionsPerSample: t.repetitions ??
        (t.cold && timer.mode === "timestamp" ? 1 : timer.minSampleNs > 0 ? 0 : 1),
      warmupMs: t.warmupMs,
      budgetMs: t.budgetMs,
      minSamples: t.minSamples,
      maxSamples: t.maxSamples,
      targetRelativeCi: t.targetRelativeCi,
      cold: t.cold,
      interleaved: t.interleaved,
    },
  };
  return {
    format: RESULTS_FORMAT,
    version: RESULTS_VERSION,
    environment,
    settings,
    calibration: config.calibration,
    workloads,
    warnings,
  };
}

function caseWarnings(
  c: CaseResult,
  t: TimingConfig,
  warn: (code: string, message: string, key: string | null) => void,
): void {
  const tm = c.timing;
  if (c.status !== "ok" || !tm) return;
  if (tm.samplesNs.length < Math.min(t.minSamples, 5)) {
    warn("few-samples", `${c.key}: only ${tm.samplesNs.length} samples`, c.key);
  }
  const rel = (tm.ci95Ns[1] - tm.ci95Ns[0]) / 2 / tm.medianNs;
  if (rel > t.targetRelativeCi) {
    warn(
      "high-noise",
      `${c.key}: the 95% CI half-width is ${(rel * 100).toFixed(1)}% of the median (target ${
        (t.targetRelativeCi * 100).toFixed(1)
      }%)`,
      c.key,
    );
  }
}

/** Plans, prepares, verifies and times every method on one snapshot. */
async function runSnapshot(
  gpu: Gpu,
  config: BenchConfig,
  hooks: BenchHooks,
  workload: string,
  snap: Snapshot,
  flush: Awaited<ReturnType<typeof createFlushPass>> | undefined,
  tolerance: number,
  now: () => number,
): Promise<CaseResult[]> {
  const keyOf = (m: AttentionMethod) => `${workload}@${snap.iteration}/${m.name}`;
  const results = new Map<MethodName, CaseResult>();
  const base = (m: AttentionMethod): CaseResult => ({
    key: keyOf(m),
    method: m.name,
    sourceHash: "",
    status: "ok",
    message: null,
    counts: zeroPlanCounts(),
    stats: {},
    dispatches: 0,
    prepareMs: 0,
    planMs: 0,
    timing: null,
    roofline: null,
    verification: unverified(tolerance),
  });
  const errorOut = (c: CaseResult, e: unknown) => {
    c.status = "error";
    c.message = (e as Error)?.message ?? String(e);
  };

  let problem: Problem;
  try {
    problem = Problem.create(gpu, new IndexedTree(snap.tree), {
      shape: config.shape,
      dtype: config.dtype,
      seed: (config.seed * 1_000_003 + snap.iteration) >>> 0,
    });
  } catch (e) {
    return config.methods.map((m) => {
      const c = base(m);
      errorOut(c, e);
      c.sourceHash = "";
      return c;
    });
  }

  const prepared: Prepared[] = [];
  try {
    // Reference rows once per snapshot, shared by every method.
    let rows: Row[] = [];
    let expected: Float64Array | null = null;
    if (config.verify) {
      rows = verificationRows(
        problem.ix.queryCount,
        config.shape.qHeads,
        config.verifyRows,
        config.seed ^ snap.iteration,
      );
      expected = referenceAttention(problem.ix, problem.layout, problem.data, rows);
    }

    for (const m of config.methods) {
      const c = base(m);
      results.set(m.name, c);
      const sources: PipelineSource[] = [];
      try {
        const p0 = now();
        const plan = problem.plan(m, config.methodOptions);
        c.planMs = now() - p0;
        c.counts = plan.counts;
        c.stats = { ...plan.stats };
        c.dispatches = plan.dispatches.length;
        const stop = gpu.onPipeline((s) => sources.push(s));
        let pm: PreparedMethod;
        const r0 = now();
        try {
          pm = await gpu.scoped(`Preparing ${m.name}`, () => m.prepare(gpu, plan, problem.buffers));
        } finally {
          stop();
        }
        c.prepareMs = now() - r0;
        c.sourceHash = await sourceHash(m.name, sources);
        prepared.push({ method: m, plan, prepared: pm });
        if (expected) {
          problem.poisonOutput();
          await gpu.scoped(`Running ${m.name}`, () => {
            const enc = gpu.device.createCommandEncoder({ label: `verify ${m.name}` });
            const pass = enc.beginComputePass({ label: m.name });
            pm.encode(pass);
            pass.end();
            gpu.device.queue.submit([enc.finish()]);
          });
          const out = await problem.readOutput();
          const r = compareOutput(out, expected, config.shape, problem.ix.queryCount, rows);
          // Unwritten and NaN values count over the whole output, not only the sampled rows.
          const scan = scanOutput(out, config.shape);
          const passed = scan.unwritten === 0 && scan.nonFinite === 0 &&
            r.maxRelError <= tolerance;
          c.verification = {
            checked: true,
            rows: r.rows,
            maxRelError: finite(r.maxRelError),
            tolerance,
            unwritten: scan.unwritten,
            nonFinite: scan.nonFinite,
            passed,
          };
          if (!passed) {
            c.status = "failed";
            const worst = r.worst
              ? ` (worst row: query ${r.worst.query}, head ${r.worst.head})`
              : "";
            const note = logitLimitNote(m, problem.ix, problem.layout, problem.data, [
              ...rows,
              ...scan.badRows,
            ], { tolerance, overflowOnly: r.maxRelError <= tolerance });
            const problems = [];
            if (!(r.maxRelError <= tolerance)) {
              problems.push(
                `max relative error ${
                  r.maxRelError.toPrecision(3)
                } > ${tolerance} over ${r.rows} rows${worst}`,
              );
            }
            if (scan.unwritten > 0) problems.push(`${scan.unwritten} output values unwritten`);
            if (scan.nonFinite > 0) problems.push(`${scan.nonFinite} NaN or infinite values`);
            c.message = `${problems.join(", ")}${note ? `; ${note}` : ""}`;
          }
        }
      } catch (e) {
        if (!c.sourceHash) c.sourceHash = await sourceHash(m.name, sources);
        errorOut(c, e);
      }
    }

    // Time every method that is ok, interleaved.
    const timed = prepared.filter((p) => results.get(p.method.name)!.status === "ok");
    const cases: MeasureCase[] = timed.map((p) => ({
      key: keyOf(p.method),
      encode: (pass) => p.prepared.encode(pass),
    }));
    const measured = await measureCases(hooks.timer, cases, config, flush, now);
    for (const p of timed) {
      const c = results.get(p.method.name)!;
      const m = measured.get(c.key)!;
      if (m instanceof Error) {
        errorOut(c, m);
        continue;
      }
      if (m.samplesNs.length === 0) {
        errorOut(c, new GpuError("every sample was discarded (non-positive timestamp deltas)"));
        continue;
      }
      c.timing = { ...summarize(m.samplesNs, { seed: config.seed }), repetitions: m.repetitions };
      c.roofline = roofline(c.counts, c.timing.medianNs, config.dtype, config.calibration);
    }
  } finally {
    for (const p of prepared) {
      try {
        p.prepared.destroy();
      } catch { /* a lost device: nothing left to free */ }
    }
    problem.destroy();
  }
  return config.methods.map((m) => results.get(m.name)!);
}

/** Measures cases interleaved; on a GPU error, measures each alone to find the culprit. */
async function measureCases(
  timer: Timer,
  cases: MeasureCase[],
  config: BenchConfig,
  flush: Awaited<ReturnType<typeof createFlushPass>> | undefined,
  now: () => number,
): Promise<Map<string, CaseMeasurement | Error>> {
  const t = config.timing;
  const options = {
    warmupMs: t.warmupMs,
    budgetMs: t.budgetMs,
    minSamples: t.minSamples,
    maxSamples: t.maxSamples,
    targetRelativeCi: t.targetRelativeCi,
    // Cold samples are single calls: a repeat inside the pass would find warm caches.
    repetitions: t.repetitions ?? (t.cold && timer.mode === "timestamp" ? 1 : undefined),
    flush,
    now,
    seed: config.seed,
  };
  const out = new Map<string, CaseMeasurement | Error>();
  if (cases.length === 0) return out;
  const groups = t.interleaved ? [cases] : cases.map((c) => [c]);
  for (const group of groups) {
    try {
      for (const m of await measureInterleaved(timer, group, options)) out.set(m.key, m);
    } catch (e) {
      if (!(e instanceof GpuError) || group.length === 1) {
        if (group.length === 1) {
          out.set(group[0]!.key, e as Error);
          continue;
        }
        throw e;
      }
      for (const c of group) {
        try {
          const [m] = await measureInterleaved(timer, [c], options);
          out.set(c.key, m!);
        } catch (e2) {
          out.set(c.key, e2 as Error);
        }
      }
    }
  }
  return out;
}

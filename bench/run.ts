/**
 * The benchmark run: workloads x methods on one device per WebGPU runtime, into one results
 * document.
 *
 * For each workload, K iterations are sampled (weighted snapshots). For each snapshot and runtime
 * a {@linkcode Problem} is uploaded once (the same seeded data on every runtime, checked against
 * one float64 reference); every method is planned and prepared, checked against the reference on
 * a seeded sample of (query, head) rows, and the methods that passed are timed interleaved. With
 * several runtimes, each snapshot runs on every runtime back to back, the order rotating from one
 * snapshot to the next, so drift falls on both sides of their ratio alike. A method whose output is
 * wrong is `failed` (never timed, never reported as fast); one that throws is `error` with the
 * message, and the run goes on. GPU buffers are freed after every snapshot, so large trees do not
 * pile up. A clock guard per device (`clock.ts`) keeps the GPU at its working clock while timing
 * and flags every case measured below 90% of it (`lowClock`).
 *
 * @module
 */

import { Gpu, GpuError, type PipelineSource, type RuntimeName } from "../kernels/gpu.ts";
import type {
  AttentionMethod,
  MethodName,
  MethodOptions,
  Plan,
  PreparedMethod,
} from "../kernels/method.ts";
import { METHOD_NAMES, zeroPlanCounts } from "../kernels/method.ts";
import { Problem, runPrepared } from "../kernels/problem.ts";
import { logitLimitNote } from "../kernels/f16_logits.ts";
import {
  type Reference,
  referenceOf,
  sampleRows,
  TOLERANCE,
  verdictProblems,
  verify,
} from "../kernels/verify.ts";
import {
  type Calibration,
  type CaseClock,
  caseKey,
  type CaseResult,
  DEFAULT_RUNTIME,
  type Environment,
  type MethodTotal,
  type OptionValue,
  RESULTS_FORMAT,
  RESULTS_VERSION,
  type ResultsDocument,
  type RunClock,
  type RuntimeRun,
  type Settings,
  type SnapshotResult,
  type TimingSettings,
  type TuningUse,
  type Verification,
  type Warning,
  type WorkloadResult,
} from "../results/schema.ts";
import { roofline } from "../results/roofline.ts";
import { median, summarize } from "../results/stats.ts";
import { type DecodingRun, runFacts, type Snapshot } from "../workloads/run.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import { IndexedTree, treeFacts } from "../workloads/tree.ts";
import {
  type CaseMeasurement,
  createFlushPass,
  type MeasureCase,
  measureInterleaved,
} from "./measure.ts";
import {
  type ClockGuard,
  createClockGuard,
  LOW_CLOCK_FRACTION,
  REFERENCE_KERNEL,
  SmiSampler,
} from "./clock.ts";
import { type ProgressReporter, silentProgress } from "./progress.ts";
import { busyPass, checkTicks, type Timer } from "./timer.ts";

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
  /** What makes this a smoke run and how to get real numbers, or null/absent (see `settings.smoke`). */
  smoke?: string | null;
  verify: boolean;
  verifyRows: number;
  timing: TimingConfig;
  /**
   * Device ceilings for rooflines, or null (no roofline), when {@linkcode runBench} runs on one
   * `Gpu`; with devices, each {@linkcode BenchDevice} carries its own.
   */
  calibration: Calibration | null;
  /** The command line as given. */
  command: string[];
  /** Run the timestamp tick check (default true). */
  tickCheck?: boolean;
  /** Bytes of the cold-mode flush buffer (default 128 MiB). */
  flushBytes?: number;
  /** Keep and check the GPU clock with a reference kernel (default true; see `clock.ts`). */
  clockGuard?: boolean;
}

/** One runtime's device in a run, with its timer and ceilings. */
export interface BenchDevice {
  gpu: Gpu;
  timer: Timer;
  /** This device's ceilings for rooflines, or null (no roofline). */
  calibration: Calibration | null;
  /** Options per method on this device (stored tuning); absent methods use `config.methodOptions`. */
  methodOptions?: Partial<Record<MethodName, MethodOptions>>;
  /** The stored tuning behind `methodOptions`, recorded in the results. */
  tuning?: TuningUse | null;
}

/** Injection points (tests pass a fake timer and clock). */
export interface BenchHooks {
  /** The timer of the device passed to {@linkcode runBench} as a `Gpu` (unused with devices). */
  timer?: Timer;
  progress?: ProgressReporter;
  now?: () => number;
  /** Read git and nvidia-smi (default true). */
  probeHost?: boolean;
  /** SM clock readings during the run (default: `nvidia-smi` when probing the host finds it). */
  smi?: SmiSampler | null;
  /**
   * Stops the run early (Ctrl-C): the snapshot in progress is abandoned and the document holds
   * the snapshots finished so far, with `partial` saying why (the signal's reason).
   */
  signal?: AbortSignal;
}

/** Clock facts of one device gathered while measuring, turned into case and run clocks at the end. */
export interface ClockRecord {
  guard: ClockGuard | null;
  /** Reference time bracketing each sample of each case. */
  refs: Map<string, (number | null)[]>;
  /** When each case's group was measured, ms on the run's clock. */
  windows: Map<string, [number, number]>;
  /** Samples of each case dropped with a round that ran at a low clock, and taken again. */
  retried?: Map<string, number>;
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

/** The roofline of a case (see `results/roofline.ts`). */
export { roofline };

/**
 * Method names in the registry's order ({@linkcode METHOD_NAMES}; others after them, as given):
 * the order `settings.methods` records, which reports show methods in.
 */
export function registryOrder(names: readonly MethodName[]): MethodName[] {
  const rank = (n: MethodName) => {
    const i = METHOD_NAMES.indexOf(n);
    return i < 0 ? METHOD_NAMES.length : i;
  };
  return [...names].sort((a, b) => rank(a) - rank(b));
}

/**
 * Per-method totals over a workload on one runtime (Σ weight x median, whole model, speedup vs
 * sequence on the same runtime).
 */
export function methodTotals(
  methods: readonly string[],
  snapshots: readonly SnapshotResult[],
  iterations: number,
  shape: ModelShape,
  runtime: RuntimeName = DEFAULT_RUNTIME,
): MethodTotal[] {
  const totals = methods.map((method): MethodTotal => {
    let runNs = 0, realBytes = 0, complete = snapshots.length > 0;
    const paperIo = { kvBytes: 0, maskBytes: 0, partialBytes: 0, totalBytes: 0 };
    for (const s of snapshots) {
      const c = s.cases.find((x) => x.method === method && x.runtime === runtime);
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
      runtime,
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

/**
 * The `throttled` warning for an `nvidia-smi` reading taken after a run, or null. nvbench's rule:
 * an SM clock below 75% of its maximum means the GPU throttled, unless the only active clock event
 * reason is GPU idle (bit 0x1): a GPU read after its work is done idles at its lowest clock (an
 * H200 at 345 MHz), which says nothing about the run.
 */
export function throttledAfterRun(r: Record<string, string>): string | null {
  const frac = smClockFraction(r);
  if (frac === null || frac >= 0.75) return null;
  const reasons = r["clocks_event_reasons.active"]?.trim();
  let mask: bigint | null = null;
  try {
    mask = reasons ? BigInt(reasons) : null;
  } catch {
    mask = null; // "[N/A]" and the like: unknown reasons
  }
  if (mask !== null && (mask & ~1n) === 0n && (mask & 1n) === 1n) return null;
  return `the SM clock was at ${(frac * 100).toFixed(0)}% of its maximum after the run (nvidia-smi${
    reasons ? `, clock event reasons ${reasons}` : ""
  })`;
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
  spec: CaseSpec;
  plan: Plan;
  prepared: PreparedMethod;
}

/** One case to run on a problem: a method with its options, under a key unique in the group. */
export interface CaseSpec {
  key: string;
  method: AttentionMethod;
  options: MethodOptions;
}

/** The float64 reference of a problem on a sample of rows (shared by every runtime). */
export type ProblemReference = Reference;

/** How {@linkcode runCases} checks and times. */
export interface CaseRunSettings {
  dtype: Dtype;
  timing: TimingConfig;
  seed: number;
  calibration: Calibration | null;
  /** Cold-mode flush pass of this device, if any. */
  flush?: Awaited<ReturnType<typeof createFlushPass>>;
  now?: () => number;
  /** The device's clock guard and where its reference points go (none: no clock check). */
  clocks?: ClockRecord;
  /** Notes worth showing (dropped samples). */
  note?: (message: string) => void;
}

/**
 * The kernel variant a plan says it uses (`plan.kernelVariant`, a string, when the method sets
 * one), else the kernel family that was asked for.
 */
export function kernelVariant(plan: Plan, options: MethodOptions): string {
  const v = (plan as { kernelVariant?: unknown }).kernelVariant;
  return typeof v === "string" && v !== "" ? v : options.kernel;
}

/** Method options as a results record: plain values, groups copied, absent options left out. */
export function optionRecord(o: MethodOptions): Record<string, OptionValue> {
  const out: Record<string, OptionValue> = {};
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === "number" || typeof v === "string") out[k] = v;
    else if (typeof v === "object" && v !== null) {
      const group: Record<string, number | string> = {};
      for (const [gk, gv] of Object.entries(v)) {
        if (typeof gv === "number" || typeof gv === "string") group[gk] = gv;
      }
      out[k] = group;
    }
  }
  return out;
}

/** A snapshot's reference, computed once for every runtime that runs it. */
function sharedReference(config: BenchConfig, iteration: number) {
  let ref: ProblemReference | null = null;
  return (problem: Problem): ProblemReference => {
    if (ref) return ref;
    const rows = sampleRows(
      problem.ix.queryCount,
      config.shape.qHeads,
      config.verifyRows,
      config.seed ^ iteration,
    );
    ref = referenceOf(problem, rows);
    return ref;
  };
}

/**
 * Runs the benchmark and returns the results document (the caller writes it): on one device (a
 * `Gpu` and `hooks.timer`, with `config.calibration`), or on one device per runtime.
 */
export async function runBench(
  target: Gpu | readonly BenchDevice[],
  config: BenchConfig,
  hooks: BenchHooks,
): Promise<ResultsDocument> {
  let devices: readonly BenchDevice[];
  if (target instanceof Gpu) {
    if (!hooks.timer) throw new TypeError("runBench() on a Gpu needs hooks.timer");
    devices = [{ gpu: target, timer: hooks.timer, calibration: config.calibration }];
  } else {
    devices = target;
  }
  if (devices.length === 0) throw new RangeError("runBench() needs at least one device");
  const names = devices.map((d) => d.gpu.runtime.name);
  if (new Set(names).size !== names.length) {
    throw new RangeError(`runBench() takes one device per runtime, got ${names.join(", ")}`);
  }
  const progress = hooks.progress ?? silentProgress;
  const now = hooks.now ?? (() => performance.now());
  const probeHost = hooks.probeHost ?? true;
  const startedAt = new Date().toISOString();
  const warnings: Warning[] = [];
  const warn = (code: string, message: string, key: string | null = null) => {
    warnings.push({ code, message, key });
    if (key === null && code !== "scaled" && code !== "smoke") progress.note(`warning: ${message}`);
  };
  const many = devices.length > 1;
  const on = (d: BenchDevice) => (many ? `${d.gpu.runtime.name}: ` : "");
  // Case keys are workload@iteration/method: two workloads with one name would collide.
  const workloadNames = new Set<string>();
  for (const w of config.workloads) {
    if (workloadNames.has(w.run.info.name)) {
      throw new RangeError(
        `Two workloads are named ${JSON.stringify(w.run.info.name)}: case keys must be unique`,
      );
    }
    workloadNames.add(w.run.info.name);
  }

  const [git, smiBefore, cpu] = probeHost
    ? await Promise.all([gitState(), nvidiaSmi(), cpuModel()])
    : [{ commit: null, dirty: null }, null, null];

  for (const d of devices) {
    if (d.gpu.info.isFallbackAdapter) {
      warn(
        "fallback-adapter",
        `${on(d)}${
          d.gpu.info.description || "the adapter"
        } is a software (fallback) adapter: its timings say nothing about GPUs`,
      );
    }
    if (d.timer.mode === "wallclock-batched") {
      warn(
        "no-timestamps",
        `${
          on(d)
        }the adapter has no timestamp-query: every sample is many repetitions in one submit timed by the wall clock (coarse)`,
      );
    }
  }
  if (config.smoke) warn("smoke", config.smoke);
  if (config.scaleReason) warn("scaled", config.scaleReason);
  for (const d of devices) {
    if (!d.calibration) {
      warn("no-calibration", `${on(d)}no calibration: rooflines are not computed`);
    }
  }

  const tickRatios: (number | null)[] = [];
  for (const d of devices) {
    let tickRatio: number | null = null;
    if (config.tickCheck !== false && d.gpu.hasTimestamps && d.timer.mode === "timestamp") {
      // Heavy dispatches, so that few make the pass: Dawn's submit costs host time per dispatch,
      // which the wall clock counts (timer.ts, checkTicks).
      const busy = await busyPass(d.gpu, { workgroups: 8, iterations: 50_000 });
      try {
        tickRatio = (await checkTicks(d.gpu, busy, { targetMs: 60 })).ratio;
      } finally {
        busy.destroy();
      }
      if (tickRatio < 0.8 || tickRatio > 1.25) {
        warn(
          "tick-ratio",
          `${on(d)}timestamp ticks do not look like nanoseconds: timestamp/wall ratio ${
            tickRatio.toFixed(3)
          }; GPU times may be scaled wrongly`,
        );
      }
    }
    tickRatios.push(tickRatio);
  }

  const flushes: (Awaited<ReturnType<typeof createFlushPass>> | undefined)[] = [];
  const clocks: ClockRecord[] = [];
  const smi = hooks.smi !== undefined
    ? hooks.smi
    : probeHost && smiBefore
    ? SmiSampler.start({ now })
    : null;
  const plans = config.workloads.map((w) => ({ w, snaps: w.run.sample(config.samplesPerRun) }));
  const plannedCases = plans.reduce(
    (n, p) => n + p.snaps.length * config.methods.length * devices.length,
    0,
  );
  // Resolves when the run is asked to stop, so a snapshot in progress is not waited for.
  const signal = hooks.signal;
  const stop = signal
    ? new Promise<"stop">((resolve) => {
      if (signal.aborted) resolve("stop");
      else signal.addEventListener("abort", () => resolve("stop"), { once: true });
    })
    : null;
  let interrupted = false;
  let completedCases = 0;
  const workloads: WorkloadResult[] = [];
  try {
    for (const d of devices) {
      flushes.push(
        config.timing.cold ? await createFlushPass(d.gpu, { bytes: config.flushBytes }) : undefined,
      );
      clocks.push({
        guard: config.clockGuard === false
          ? null
          : await createClockGuard(d.gpu, d.timer, { calibrated: d.calibration?.reference, now }),
        refs: new Map(),
        windows: new Map(),
        retried: new Map(),
      });
    }
    progress.start(plannedCases);
    for (const { w, snaps } of plans) {
      if (interrupted) break;
      const run = w.run;
      const snapshots: SnapshotResult[] = [];
      for (const [j, snap] of snaps.entries()) {
        if (signal?.aborted) interrupted = true;
        if (interrupted) break;
        const reference = sharedReference(config, snap.iteration);
        const byRuntime = new Map<RuntimeName, CaseResult[]>();
        // Rotate the runtime order per snapshot, so neither always runs first.
        for (let k = 0; k < devices.length && !interrupted; k++) {
          const i = (j + k) % devices.length;
          const d = devices[i]!;
          progress.current(`${run.info.name}@${snap.iteration}${many ? ` (${names[i]})` : ""}`);
          const work = runSnapshot(d, config, run.info.name, snap, {
            dtype: config.dtype,
            timing: config.timing,
            seed: config.seed,
            calibration: d.calibration,
            flush: flushes[i],
            now,
            clocks: clocks[i],
            note: (m) => progress.note(m),
          }, reference);
          const cases = stop ? await Promise.race([work, stop]) : await work;
          if (cases === "stop") {
            // Abandoned: it fails once the device is destroyed; nobody waits for it.
            work.catch(() => {});
            interrupted = true;
            break;
          }
          for (const c of cases) {
            progress.caseDone(c);
            if (c.status === "error") warn("case-error", `${c.key}: ${c.message}`, c.key);
            if (c.status === "failed") {
              warn("verification-failed", `${c.key}: ${c.message}`, c.key);
            }
          }
          byRuntime.set(names[i]!, cases);
        }
        // A snapshot counts once every runtime finished it (its ratio needs both sides).
        if (interrupted) break;
        completedCases += names.reduce((n, r) => n + byRuntime.get(r)!.length, 0);
        const facts = treeFacts(snap.tree);
        snapshots.push({
          iteration: snap.iteration,
          weight: snap.weight,
          facts,
          tree: facts.nodes <= MAX_STORED_TREE_NODES ? snap.tree : null,
          cases: names.flatMap((n) => byRuntime.get(n)!),
        });
      }
      if (snapshots.length === 0) continue; // interrupted before its first snapshot ended
      const f = runFacts(run);
      const totals = names.flatMap((n) =>
        methodTotals(
          config.methods.map((m) => m.name),
          snapshots,
          run.iterations,
          config.shape,
          n,
        )
      );
      // An interrupted workload's totals miss snapshots: not an estimate of the whole run.
      if (snapshots.length < snaps.length) {
        for (const t of totals) {
          t.complete = false;
          t.speedupVsSequence = null;
        }
      }
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
        totals,
        sweep: w.sweep ?? null,
      });
    }
  } finally {
    for (const f of flushes) f?.destroy();
    for (const c of clocks) c.guard?.destroy();
    await smi?.stop();
    progress.finish();
  }
  const runClocks = clocks.map((c) =>
    c.guard ? applyClocks(workloads, c, c.guard, smi, warn) : null
  );

  for (const w of workloads) {
    for (const s of w.snapshots) {
      for (const c of s.cases) caseWarnings(c, config.timing, warn);
    }
  }
  for (const d of devices) {
    if (d.timer.discarded > 0) {
      warn(
        "discarded-samples",
        `${on(d)}${d.timer.discarded} samples had non-positive timestamp deltas and were discarded`,
      );
    }
  }
  const smiAfter = probeHost && smiBefore ? await nvidiaSmi() : null;
  if (smiBefore && smiAfter) {
    const throttled = throttledAfterRun(smiAfter);
    if (throttled) warn("throttled", throttled);
  }

  const first = devices[0]!;
  const environment: Environment = {
    adapter: first.gpu.info,
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
    tickRatio: tickRatios[0] ?? null,
    clock: runClocks[0] ?? null,
  };
  const runtimes: RuntimeRun[] = devices.map((d, i) => ({
    name: d.gpu.runtime.name,
    version: d.gpu.runtime.version,
    flags: [...d.gpu.runtime.flags],
    source: d.gpu.runtime.source ?? null,
    adapter: d.gpu.info,
    calibration: d.calibration,
    tickRatio: tickRatios[i] ?? null,
    timingMode: d.timer.mode,
    clock: runClocks[i] ?? null,
    tuning: d.tuning ?? null,
  }));
  const t = config.timing;
  const timer = first.timer;
  const settings: Settings = {
    methods: registryOrder(config.methods.map((m) => m.name)),
    dtype: config.dtype,
    shape: config.shape,
    blockSize: config.methodOptions.blockSize,
    chunkSize: config.methodOptions.chunkSize,
    kernel: config.methodOptions.kernel,
    runtimes: names,
    samplesPerRun: config.samplesPerRun,
    seed: config.seed,
    scale: config.scale,
    scaleReason: config.scaleReason,
    smoke: config.smoke ?? null,
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
  const doc: ResultsDocument = {
    format: RESULTS_FORMAT,
    version: RESULTS_VERSION,
    environment,
    settings,
    calibration: first.calibration,
    runtimes,
    workloads,
    warnings,
  };
  if (interrupted) {
    const reason = signal?.reason;
    doc.partial = {
      reason: `interrupted${typeof reason === "string" ? ` by ${reason}` : ""}`,
      completedCases,
      plannedCases,
    };
    warn(
      "partial",
      `the run was ${doc.partial.reason} and holds ${completedCases} of ${plannedCases} planned cases`,
    );
  }
  return doc;
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
  if (c.roofline && c.roofline.fraction > 1) {
    warn(
      "roof-exceeded",
      `${c.key}: measured faster than its ${c.roofline.bound} floor (${
        (c.roofline.fraction * 100).toFixed(0)
      }% of that roof): the byte count or the calibration is wrong for this case`,
      c.key,
    );
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

/** Uploads one snapshot to a device and runs every method on it. */
async function runSnapshot(
  d: BenchDevice,
  config: BenchConfig,
  workload: string,
  snap: Snapshot,
  settings: CaseRunSettings,
  reference: (problem: Problem) => ProblemReference,
): Promise<CaseResult[]> {
  const runtime = d.gpu.runtime.name;
  const specs: CaseSpec[] = config.methods.map((m) => ({
    key: caseKey(workload, snap.iteration, m.name, runtime),
    method: m,
    options: d.methodOptions?.[m.name] ?? config.methodOptions,
  }));
  let problem: Problem;
  try {
    problem = Problem.create(d.gpu, new IndexedTree(snap.tree), {
      shape: config.shape,
      dtype: config.dtype,
      seed: (config.seed * 1_000_003 + snap.iteration) >>> 0,
    });
  } catch (e) {
    return specs.map((s) => {
      const c = blankCase(s, runtime, TOLERANCE[settings.dtype]);
      c.status = "error";
      c.message = (e as Error)?.message ?? String(e);
      return c;
    });
  }
  try {
    // Reference rows once per snapshot, shared by every method and runtime.
    const ref = config.verify ? reference(problem) : null;
    return await runCases(d.gpu, d.timer, problem, specs, ref, settings);
  } finally {
    problem.destroy();
  }
}

function blankCase(spec: CaseSpec, runtime: RuntimeName, tolerance: number): CaseResult {
  return {
    key: spec.key,
    method: spec.method.name,
    runtime,
    kernel: spec.options.kernel,
    options: optionRecord(spec.options),
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
  };
}

/**
 * Plans, prepares, verifies (against `reference`, when given) and times `specs` on one problem,
 * interleaved; one result per spec, in order. A case whose output is wrong is `failed` and not
 * timed; one that throws is `error`. `tune` runs its candidates through this too.
 */
export async function runCases(
  gpu: Gpu,
  timer: Timer,
  problem: Problem,
  specs: readonly CaseSpec[],
  reference: ProblemReference | null,
  settings: CaseRunSettings,
): Promise<CaseResult[]> {
  const now = settings.now ?? (() => performance.now());
  const runtime = gpu.runtime.name;
  const results = new Map<string, CaseResult>();
  const errorOut = (c: CaseResult, e: unknown) => {
    c.status = "error";
    c.message = (e as Error)?.message ?? String(e);
  };
  const prepared: Prepared[] = [];
  try {
    for (const spec of specs) {
      const m = spec.method;
      const c = blankCase(spec, runtime, TOLERANCE[settings.dtype]);
      results.set(spec.key, c);
      const sources: PipelineSource[] = [];
      try {
        const p0 = now();
        const plan = problem.plan(m, spec.options);
        c.planMs = now() - p0;
        c.counts = plan.counts;
        c.stats = { ...plan.stats };
        c.dispatches = plan.dispatches.length;
        c.kernel = kernelVariant(plan, spec.options);
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
        prepared.push({ spec, plan, prepared: pm });
        if (reference) {
          const out = await runPrepared(problem, pm, m.name);
          // Unwritten and NaN values count over the whole output, not only the sampled rows.
          const v = verify(out, reference, problem.data.shape, problem.data.dtype);
          c.verification = {
            checked: true,
            rows: v.rows,
            maxRelError: finite(v.maxRelError),
            tolerance: v.tolerance,
            unwritten: v.unwritten,
            nonFinite: v.nonFinite,
            passed: v.passed,
          };
          if (!v.passed) {
            c.status = "failed";
            const note = logitLimitNote(m, problem.ix, problem.layout, problem.data, [
              ...reference.rows,
              ...v.badRows,
            ], { tolerance: v.tolerance, overflowOnly: v.maxRelError <= v.tolerance });
            c.message = `${verdictProblems(v).join(", ")}${note ? `; ${note}` : ""}`;
          }
        }
      } catch (e) {
        if (!c.sourceHash) c.sourceHash = await sourceHash(m.name, sources);
        errorOut(c, e);
      }
    }

    // Time every case that is ok, interleaved.
    const timed = prepared.filter((p) => results.get(p.spec.key)!.status === "ok");
    const cases: MeasureCase[] = timed.map((p) => ({
      key: p.spec.key,
      encode: (pass) => p.prepared.encode(pass),
    }));
    const measured = await measureCases(
      timer,
      cases,
      settings,
      settings.flush,
      now,
      settings.clocks,
    );
    for (const p of timed) {
      const c = results.get(p.spec.key)!;
      const m = measured.get(c.key)!;
      if (m instanceof Error) {
        errorOut(c, m);
        continue;
      }
      // A sample of 0 ns or less (a wall-clock batch under the submit floor) is no latency:
      // results readers refuse it, so it is dropped here and counted.
      const samples = m.samplesNs.filter((x) => x > 0 && Number.isFinite(x));
      if (samples.length < m.samplesNs.length) {
        settings.note?.(
          `${c.key}: dropped ${m.samplesNs.length - samples.length} non-positive sample(s)`,
        );
      }
      if (samples.length === 0) {
        errorOut(c, new GpuError("every sample was discarded (non-positive timestamp deltas)"));
        continue;
      }
      c.timing = { ...summarize(samples, { seed: settings.seed }), repetitions: m.repetitions };
      // Reference points stay aligned with the kept samples.
      settings.clocks?.refs.set(
        c.key,
        m.referenceNs.filter((_, i) => m.samplesNs[i]! > 0 && Number.isFinite(m.samplesNs[i]!)),
      );
      if (m.retriedSamples > 0) settings.clocks?.retried?.set(c.key, m.retriedSamples);
      c.roofline = roofline(
        c.counts,
        c.timing.medianNs,
        settings.dtype,
        settings.calibration,
        c.kernel,
      );
    }
  } finally {
    for (const p of prepared) {
      try {
        p.prepared.destroy();
      } catch { /* a lost device: nothing left to free */ }
    }
  }
  return specs.map((s) => results.get(s.key)!);
}

/** Measures cases interleaved; on a GPU error, measures each alone to find the culprit. */
async function measureCases(
  timer: Timer,
  cases: MeasureCase[],
  config: Pick<CaseRunSettings, "timing" | "seed">,
  flush: Awaited<ReturnType<typeof createFlushPass>> | undefined,
  now: () => number,
  clocks: ClockRecord | undefined,
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
    clock: clocks?.guard ?? undefined,
  };
  const out = new Map<string, CaseMeasurement | Error>();
  if (cases.length === 0) return out;
  const groups = t.interleaved ? [cases] : cases.map((c) => [c]);
  for (const group of groups) {
    const t0 = now();
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
    const t1 = now();
    for (const c of group) clocks?.windows.set(c.key, [t0, t1]);
  }
  return out;
}

/**
 * Gives every timed case its clock (reference fraction against the final working speed, and the
 * nvidia-smi SM clock of its window), warns `low-clock` for each case below
 * {@linkcode LOW_CLOCK_FRACTION}, and returns the run's clock summary.
 */
function applyClocks(
  workloads: readonly WorkloadResult[],
  clocks: ClockRecord,
  guard: ClockGuard,
  smi: SmiSampler | null,
  warn: (code: string, message: string, key: string | null) => void,
): RunClock | null {
  const working = guard.workingNs;
  const source = guard.workingSource;
  if (working === null || source === null) return null;
  // The working SM clock: the highest reading while cases were measured.
  let workingSm: number | null = null;
  let maxSm: number | null = null;
  let readings = 0;
  if (smi) {
    for (const [t0, t1] of clocks.windows.values()) {
      for (const r of smi.window(t0, t1)) workingSm = Math.max(workingSm ?? 0, r.smMHz);
    }
    for (const r of smi.readings) if (r.maxSmMHz !== null) maxSm = Math.max(maxSm ?? 0, r.maxSmMHz);
    readings = smi.readings.length;
  }
  let low = 0;
  let smiLow = 0;
  for (const w of workloads) {
    for (const s of w.snapshots) {
      for (const c of s.cases) {
        const refs = (clocks.refs.get(c.key) ?? []).filter((v): v is number => v !== null);
        if (!c.timing || refs.length === 0) continue;
        const fractions = refs.map((v) => working / v);
        const win = clocks.windows.get(c.key);
        const sm = smi && win ? smi.window(win[0], win[1]).map((r) => r.smMHz) : [];
        const smMHz = sm.length > 0 ? median(sm) : null;
        const smFraction = smMHz !== null && workingSm ? smMHz / workingSm : null;
        const fraction = working / median(refs);
        const cc: CaseClock = {
          fraction,
          minFraction: Math.min(...fractions),
          lowSamples: fractions.filter((f) => f < LOW_CLOCK_FRACTION).length,
          smMHz,
          smFraction,
          // The reference kernel ran beside the case's samples and decides. nvidia-smi samples every
          // 250 ms, host gaps between rounds included, and on an H200 it read 1492 MHz of 1980
          // during a case whose reference ran at 99.7% (results/data/nvidia-h200-dawn/
          // issue-trees-10.json.gz, table14 on Deno): its reading is kept, not used to flag.
          lowClock: fraction < LOW_CLOCK_FRACTION,
          retriedSamples: clocks.retried?.get(c.key) ?? 0,
        };
        c.clock = cc;
        if (cc.lowClock) {
          low++;
          warn(
            "low-clock",
            `${c.key}: measured below ${
              LOW_CLOCK_FRACTION * 100
            }% of the adapter's working speed (the clock reference ran at ${
              (fraction * 100).toFixed(0)
            }%); its latency is not comparable`,
            c.key,
          );
        } else if (smFraction !== null && smFraction < LOW_CLOCK_FRACTION) smiLow++;
      }
    }
  }
  if (smiLow > 0) {
    warn(
      "smi-low-clock",
      `nvidia-smi read the SM clock below ${
        LOW_CLOCK_FRACTION * 100
      }% of the working clock during ${smiLow} case(s) whose clock reference ran at speed beside their samples; its readings include the host's gaps between rounds, so the reference decides and those cases are not flagged`,
      null,
    );
  }
  const spins = guard.spinUps;
  if (workingSm !== null && maxSm !== null && workingSm < 0.75 * maxSm) {
    warn(
      "throttled",
      `the highest SM clock read while measuring was ${workingSm} MHz, ${
        (workingSm / maxSm * 100).toFixed(0)
      }% of the maximum ${maxSm} MHz (nvidia-smi)`,
      null,
    );
  }
  return {
    reference: {
      kernel: REFERENCE_KERNEL,
      workgroups: guard.size.workgroups,
      iterations: guard.size.iterations,
      repetitions: guard.size.repetitions,
    },
    workingNs: working,
    workingSource: source,
    lowClockFraction: LOW_CLOCK_FRACTION,
    spinUps: spins.length,
    stableSpinUps: spins.filter((x) => x.stable).length,
    spinUpMs: spins.reduce((a, x) => a + x.ms, 0),
    leadNs: guard.perRound ? guard.leadNs : 0,
    lowClockCases: low,
    retriedSamples: [...(clocks.retried?.values() ?? [])].reduce((a, n) => a + n, 0),
    smi: smi ? { readings, workingSmMHz: workingSm, maxSmMHz: maxSm } : null,
  };
}

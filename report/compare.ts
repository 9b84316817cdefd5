/**
 * `compare BASE HEAD`: per case, the ratio of medians (head / base) with a bootstrap confidence
 * interval and a Mann-Whitney U test on the raw samples, judged against a threshold (asv style: a
 * change counts only when the ratio passes the threshold AND the test agrees). Deterministic
 * metrics (IO bytes, FLOPs) are compared exactly. A case measured below its adapter's working
 * clock on either side (`clock.lowClock`) gets the verdict `unreliable-clock` instead of a latency
 * verdict: it is neither a regression nor an improvement, and does not change the exit code. The
 * comparison is computed as data here ({@linkcode compareRuns}), then formatted apart
 * (`compare_markdown.ts`: Markdown for terminals and CI job summaries); the JSON output is the data
 * itself. Runtimes stay apart: a case's key names its runtime (Deno's keys carry none), so a
 * case is only ever compared with the same method on the same runtime, and a runtime whose version
 * changed between the runs is noted.
 *
 * @module
 */

import { caseProblem, type CaseRef, caseRefs, runLabel, seriesLabel } from "../results/document.ts";
import type { CaseResult, ResultsDocument } from "../results/schema.ts";
import { bootstrapRatioCi, mannWhitneyU, median } from "../results/stats.ts";

/** Format tag of the comparison JSON. */
export const COMPARE_FORMAT = "deft-bench/compare";
/** Version of the comparison JSON. */
export const COMPARE_VERSION = 1;

/** Options of {@linkcode compareRuns}. */
export interface CompareOptions {
  /**
   * Relative change of the median that counts (0.05 = 5 %): a regression needs ratio > 1 + t, an
   * improvement ratio < 1 / (1 + t) (symmetric on a log scale). Large values (0.5) suit noisy
   * software adapters.
   */
  threshold?: number;
  /** Significance level of the Mann-Whitney U test (default 0.01). */
  alpha?: number;
  /** Compare the cases both runs have and list the others instead of refusing (default false). */
  commonOnly?: boolean;
  /** Bootstrap resamples for the ratio's interval (default 1000). */
  resamples?: number;
}

/** Defaults of {@linkcode CompareOptions}. */
export const DEFAULT_COMPARE_OPTIONS = {
  threshold: 0.05,
  alpha: 0.01,
  commonOnly: false,
  resamples: 1000,
} as const;

/** The runs cannot be compared case by case; names what does not match. Exit code 2. */
export class MismatchError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "MismatchError";
  }
}

/**
 * Outcome of one case, or of the whole comparison. `unreliable-clock`: either side was measured
 * below its adapter's working clock, so its latency says nothing about the code (never a whole
 * comparison's verdict).
 */
export type Verdict = "regression" | "improvement" | "noise" | "unreliable-clock";

/** Latency comparison of a case whose two sides both have timings. */
export interface LatencyComparison {
  baseMedianNs: number;
  headMedianNs: number;
  /** headMedian / baseMedian: above 1 is slower. */
  ratio: number;
  /** 95 % percentile-bootstrap interval of the ratio of medians. */
  ratioCi95: [number, number];
  /** Mann-Whitney U test of head samples against base samples. */
  u: number;
  z: number;
  p: number;
  /** Both sides have enough samples for the test; otherwise the interval decides. */
  enough: boolean;
  baseSamples: number;
  headSamples: number;
  verdict: Verdict;
}

/** A deterministic metric that differs between the runs. */
export interface MetricChange {
  /** Field path inside the case, e.g. `counts.real.kvBytes`. */
  field: string;
  base: number;
  head: number;
}

/** Comparison of one case. */
export interface CaseComparison {
  key: string;
  workload: string;
  iteration: number;
  method: string;
  runtime: string;
  /** Kernel variants of the two sides (`fma`, `mma`, ...). */
  baseKernel: string;
  headKernel: string;
  verdict: Verdict;
  /** Why the verdict is what it is, in words (empty for plain noise). */
  reasons: string[];
  /** Null when either side has no usable timing (failed, errored, unverified). */
  latency: LatencyComparison | null;
  /** Why the base case is unusable, or null. */
  baseProblem: string | null;
  /** Why the head case is unusable, or null (a regression). */
  headProblem: string | null;
  /** The kernels' source hash differs: the numbers compare edited kernels. */
  sourceChanged: boolean;
  baseSourceHash: string;
  headSourceHash: string;
  /** Deterministic metrics that differ (must match exactly). */
  metricChanges: MetricChange[];
  /** Which side was measured below its working clock (`clock.lowClock`), if any. */
  lowClock: { base: boolean; head: boolean };
}

/** Geometric mean of the latency ratios of a group of cases. */
export interface GeomeanRow {
  /** `all`, or a method (`method (runtime)` off Deno's built-in runtime). */
  group: string;
  ratio: number;
  cases: number;
}

/** One run's identity in a comparison. */
export interface RunRef {
  label: string;
  commit: string | null;
  dirty: boolean | null;
  startedAt: string;
  adapter: string;
  timingMode: string;
  /** Versions of the run's runtimes (`deno 2.9.6`, `dawn (npm webgpu@0.6.2)`). */
  runtimes: string[];
}

/** The whole comparison: data only, formatted by `compare_markdown.ts`. */
export interface Comparison {
  format: typeof COMPARE_FORMAT;
  version: typeof COMPARE_VERSION;
  base: RunRef;
  head: RunRef;
  threshold: number;
  alpha: number;
  cases: CaseComparison[];
  /** Keys present in one run only (non-empty only with `commonOnly`). */
  onlyInBase: string[];
  onlyInHead: string[];
  /** Settings that differ between the runs (`field: base -> head`). */
  settingsDiffs: string[];
  /** Remarks on the whole comparison (few samples, different adapters, ...). */
  notes: string[];
  summary: {
    verdict: Verdict;
    regressions: number;
    improvements: number;
    noise: number;
    /** Cases left undecided because a side was measured below its working clock. */
    unreliableClock: number;
    failedInHead: number;
    sourceChanged: number;
    metricChanged: number;
    geomean: GeomeanRow[];
  };
}

const IDENTITY_FACTS = ["nodes", "depth", "treeTokens", "queries", "pathTokens", "leaves"] as const;

/** Deterministic metrics of a case as `[field, value]`, compared exactly. */
function deterministicMetrics(c: CaseResult): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, v] of Object.entries(c.counts.paper)) out.push([`counts.paper.${k}`, v]);
  for (const [k, v] of Object.entries(c.counts.real)) out.push([`counts.real.${k}`, v]);
  out.push(["counts.flops", c.counts.flops]);
  return out;
}

function runRef(doc: ResultsDocument): RunRef {
  const e = doc.environment;
  return {
    label: runLabel(doc),
    commit: e.gitCommit,
    dirty: e.gitDirty,
    startedAt: e.startedAt,
    adapter: adapterName(doc),
    timingMode: doc.settings.timing.mode,
    runtimes: doc.runtimes.map((r) => r.version),
  };
}

function adapterName(doc: ResultsDocument): string {
  const a = doc.environment.adapter;
  return a.description ||
    [a.vendor, a.architecture, a.device].filter((s) => s !== "").join(" ") || "unknown adapter";
}

/** A 32-bit FNV-1a hash, to seed each case's bootstrap from its key (deterministic output). */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Fewest samples per side for a decision from the bootstrap interval alone. */
const MIN_SAMPLES_FOR_CI = 3;

function compareLatency(
  key: string,
  base: number[],
  head: number[],
  threshold: number,
  alpha: number,
  resamples: number,
): LatencyComparison {
  const baseMedianNs = median(base);
  const headMedianNs = median(head);
  const ratio = headMedianNs / baseMedianNs;
  const ratioCi95 = bootstrapRatioCi(base, head, { resamples, seed: hash32(key) });
  const mw = mannWhitneyU(head, base);
  const up = 1 + threshold;
  // Evidence of a real difference: the U test when both sides are large enough, else the
  // bootstrap interval excluding 1 (and nothing at all below MIN_SAMPLES_FOR_CI samples).
  const fewest = Math.min(base.length, head.length);
  const slower = mw.enough
    ? mw.p < alpha && mw.z > 0
    : fewest >= MIN_SAMPLES_FOR_CI && ratioCi95[0] > 1;
  const faster = mw.enough
    ? mw.p < alpha && mw.z < 0
    : fewest >= MIN_SAMPLES_FOR_CI && ratioCi95[1] < 1;
  const verdict: Verdict = ratio > up && slower
    ? "regression"
    : ratio < 1 / up && faster
    ? "improvement"
    : "noise";
  return {
    baseMedianNs,
    headMedianNs,
    ratio,
    ratioCi95,
    u: mw.u,
    z: mw.z,
    p: mw.p,
    enough: mw.enough,
    baseSamples: base.length,
    headSamples: head.length,
    verdict,
  };
}

/** A p-value as the comparison prints it: `0.042`, or `3.1e-5` below 0.001. */
export function formatP(p: number): string {
  return p >= 0.001 ? p.toFixed(3) : p.toExponential(1);
}

/** A ratio as a signed percentage change: `+15.0 %`, `-3.2 %`. */
export function formatChange(ratio: number): string {
  const d = (ratio - 1) * 100;
  return `${d >= 0 ? "+" : ""}${d.toFixed(1)} %`;
}

function compareCase(
  b: CaseRef,
  h: CaseRef,
  threshold: number,
  alpha: number,
  resamples: number,
): CaseComparison {
  const bc = b.case;
  const hc = h.case;
  const baseProblem = caseProblem(bc);
  const headProblem = caseProblem(hc);
  const reasons: string[] = [];
  let regression = false;
  let improvement = false;

  const bm = new Map(deterministicMetrics(bc));
  const metricChanges: MetricChange[] = [];
  for (const [field, head] of deterministicMetrics(hc)) {
    const base = bm.get(field);
    if (base !== undefined && base !== head) metricChanges.push({ field, base, head });
  }
  const grew = metricChanges.filter((m) => m.head > m.base);
  if (grew.length > 0) {
    regression = true;
    reasons.push(
      `deterministic metrics grew: ${
        grew.map((m) => `${m.field} ${m.base} → ${m.head}`).join(", ")
      }`,
    );
  } else if (metricChanges.length > 0) {
    improvement = true;
    reasons.push(
      `deterministic metrics shrank: ${
        metricChanges.map((m) => `${m.field} ${m.base} → ${m.head}`).join(", ")
      }`,
    );
  }

  let latency: LatencyComparison | null = null;
  const lowClock = { base: bc.clock?.lowClock === true, head: hc.clock?.lowClock === true };
  let unreliable = false;
  if (headProblem !== null) {
    regression = true;
    reasons.push(`head ${headProblem}`);
  } else if (baseProblem !== null) {
    improvement = true;
    reasons.push(`fixed: base ${baseProblem}`);
  } else {
    const base = bc.timing!.samplesNs;
    const head = hc.timing!.samplesNs;
    latency = compareLatency(b.key, base, head, threshold, alpha, resamples);
    if (lowClock.base || lowClock.head) {
      // The ratio is kept for reading, but no latency verdict is drawn from it.
      const sides = [lowClock.base ? "base" : "", lowClock.head ? "head" : ""].filter((x) => x);
      const at = (c: CaseResult) => `${((c.clock?.fraction ?? 0) * 100).toFixed(0)} %`;
      reasons.push(
        `latency ${formatChange(latency.ratio)} not judged: ${
          sides.join(" and ")
        } measured below the working clock (${
          sides.map((x) => `${x} at ${at(x === "base" ? bc : hc)}`).join(", ")
        })`,
      );
      latency.verdict = "unreliable-clock";
      unreliable = true;
    } else if (latency.verdict === "regression") {
      regression = true;
      reasons.push(`latency ${formatChange(latency.ratio)} (p = ${formatP(latency.p)})`);
    } else if (latency.verdict === "improvement") {
      improvement = true;
      reasons.push(`latency ${formatChange(latency.ratio)} (p = ${formatP(latency.p)})`);
    }
    if (Math.min(base.length, head.length) < MIN_SAMPLES_FOR_CI) {
      reasons.push(`too few samples to decide (${base.length} base, ${head.length} head)`);
    }
  }
  const sourceChanged = bc.sourceHash !== hc.sourceHash;
  if (sourceChanged) reasons.push(`kernel source changed (${bc.sourceHash} → ${hc.sourceHash})`);
  if (bc.kernel !== hc.kernel) reasons.push(`kernel variant changed (${bc.kernel} → ${hc.kernel})`);
  return {
    key: b.key,
    workload: h.workload.name,
    iteration: h.snapshot.iteration,
    method: hc.method,
    runtime: hc.runtime,
    baseKernel: bc.kernel,
    headKernel: hc.kernel,
    verdict: regression
      ? "regression"
      : improvement
      ? "improvement"
      : unreliable
      ? "unreliable-clock"
      : "noise",
    reasons,
    latency,
    baseProblem,
    headProblem,
    sourceChanged,
    baseSourceHash: bc.sourceHash,
    headSourceHash: hc.sourceHash,
    metricChanges,
    lowClock,
  };
}

/** Names up to `max` items and counts the rest. */
export function nameSome(items: readonly string[], max = 8): string {
  const shown = items.slice(0, max).join(", ");
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

function settingsDiffs(base: ResultsDocument, head: ResultsDocument): string[] {
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, at: string) => {
    if (
      typeof a === "object" && a !== null && typeof b === "object" && b !== null &&
      !Array.isArray(a) && !Array.isArray(b)
    ) {
      const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
      for (const k of keys) {
        walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`);
      }
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(`${at}: ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
    }
  };
  walk(base.settings, head.settings, "settings");
  return out;
}

function geomean(rows: CaseComparison[], group: string): GeomeanRow | null {
  // Cases measured below the working clock say nothing about the code: left out.
  const ratios = rows.flatMap((r) =>
    r.latency && r.latency.verdict !== "unreliable-clock" && r.latency.ratio > 0 &&
      Number.isFinite(r.latency.ratio)
      ? [r.latency.ratio]
      : []
  );
  if (ratios.length === 0) return null;
  const logMean = ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length;
  return { group, ratio: Math.exp(logMean), cases: ratios.length };
}

/**
 * Compares HEAD against BASE case by case. Throws `RangeError` for a bad threshold or alpha and
 * {@linkcode MismatchError} when the runs hold different cases (named; unless `commonOnly`), when a
 * case's workload differs (its tree facts), or when the model shape or dtype differ.
 *
 * @example A run against itself, and against a copy with one case twice as slow
 * ```ts
 * import assert from "node:assert/strict";
 * import { compareExitCode, compareRuns } from "./compare.ts";
 * import { parseResults } from "../results/document.ts";
 *
 * // The committed CI baseline: three small workloads x seven methods on lavapipe.
 * const path = new URL("../results/data/ci-baseline/lavapipe.json", import.meta.url);
 * const base = parseResults(await Deno.readTextFile(path), path.pathname);
 * const same = compareRuns(base, base);
 * assert.ok(same.cases.every((c) => c.verdict === "noise"));
 * assert.equal(compareExitCode(same), 0);
 *
 * const head = structuredClone(base);
 * const slow = head.workloads[0]!.snapshots[0]!.cases[0]!;
 * slow.timing!.samplesNs = slow.timing!.samplesNs.map((ns) => 2 * ns);
 * const c = compareRuns(base, head);
 * const row = c.cases.find((x) => x.key === slow.key)!;
 * assert.equal(row.verdict, "regression");
 * assert.equal(row.latency!.ratio, 2);
 * assert.equal(c.summary.regressions, 1);
 * assert.equal(compareExitCode(c), 1);
 * ```
 */
export function compareRuns(
  base: ResultsDocument,
  head: ResultsDocument,
  options: CompareOptions = {},
): Comparison {
  const o = { ...DEFAULT_COMPARE_OPTIONS, ...options };
  if (!Number.isFinite(o.threshold) || o.threshold < 0) {
    throw new RangeError(`Threshold must be a non-negative number, got ${o.threshold}`);
  }
  if (!(o.alpha > 0 && o.alpha < 1)) {
    throw new RangeError(`Alpha must be in (0, 1), got ${o.alpha}`);
  }
  const bs = base.settings;
  const hs = head.settings;
  const shapeOf = (s: typeof bs) =>
    `${s.dtype} ${s.shape.qHeads}/${s.shape.kvHeads}/${s.shape.headDim}`;
  if (shapeOf(bs) !== shapeOf(hs)) {
    throw new MismatchError(
      `The runs used different model shapes or dtypes (base ${shapeOf(bs)}, head ${
        shapeOf(hs)
      }), so no case compares`,
    );
  }
  const baseRefs = caseRefs(base);
  const headRefs = caseRefs(head);
  const baseByKey = new Map(baseRefs.map((r) => [r.key, r]));
  const headByKey = new Map(headRefs.map((r) => [r.key, r]));
  const onlyInBase = baseRefs.filter((r) => !headByKey.has(r.key)).map((r) => r.key);
  const onlyInHead = headRefs.filter((r) => !baseByKey.has(r.key)).map((r) => r.key);
  if (!o.commonOnly && (onlyInBase.length > 0 || onlyInHead.length > 0)) {
    const parts = [];
    if (onlyInBase.length > 0) parts.push(`only in BASE: ${nameSome(onlyInBase)}`);
    if (onlyInHead.length > 0) parts.push(`only in HEAD: ${nameSome(onlyInHead)}`);
    const partial = [base.partial ? "BASE" : "", head.partial ? "HEAD" : ""].filter((w) => w);
    throw new MismatchError(
      `The runs hold different cases (${parts.join("; ")})${
        partial.length ? ` because ${partial.join(" and ")} is a partial (interrupted) run` : ""
      }; rerun with the same workloads and methods, or pass --common-only`,
    );
  }
  const pairs = baseRefs.flatMap((b) => {
    const h = headByKey.get(b.key);
    return h ? [[b, h] as const] : [];
  });
  if (pairs.length === 0) throw new MismatchError("The runs have no case in common");

  const differentWorkload: string[] = [];
  for (const [b, h] of pairs) {
    const diff: [string, number, number][] = IDENTITY_FACTS
      .filter((f) => b.snapshot.facts[f] !== h.snapshot.facts[f])
      .map((f) => [`facts.${f}`, b.snapshot.facts[f], h.snapshot.facts[f]]);
    const [bu, hu] = [b.case.counts.usefulFlops, h.case.counts.usefulFlops];
    if (bu !== hu) diff.push(["counts.usefulFlops", bu, hu]);
    if (diff.length > 0) {
      const [f, bv, hv] = diff[0]!;
      differentWorkload.push(`${b.key} (${f} ${bv} vs ${hv})`);
    }
  }
  if (differentWorkload.length > 0) {
    throw new MismatchError(
      `The same case keys hold different workloads (different --scale or --seed?): ${
        nameSome(differentWorkload, 5)
      }`,
    );
  }

  const cases = pairs.map(([b, h]) => compareCase(b, h, o.threshold, o.alpha, o.resamples));
  const notes: string[] = [];
  const baseRef = runRef(base);
  const headRef = runRef(head);
  if (baseRef.adapter !== headRef.adapter) {
    notes.push(
      `Different adapters (base ${baseRef.adapter}, head ${headRef.adapter}): latency ratios compare machines, not code.`,
    );
  }
  if (baseRef.timingMode !== headRef.timingMode) {
    notes.push(
      `Different timing modes (base ${baseRef.timingMode}, head ${headRef.timingMode}): latency ratios are not like for like.`,
    );
  }
  for (const b of base.runtimes) {
    const h = head.runtimes.find((r) => r.name === b.name);
    if (h && h.version !== b.version) {
      notes.push(
        `Runtime ${b.name} changed (base ${b.version}, head ${h.version}): its latency ratios include the runtime's own change.`,
      );
    }
  }
  for (const [doc, which] of [[base, "base"], [head, "head"]] as const) {
    if (doc.partial) {
      notes.push(
        `The ${which} run is partial (${doc.partial.reason}: ${doc.partial.completedCases} of ${doc.partial.plannedCases} planned cases); only the cases it finished are compared.`,
      );
    }
    if (doc.environment.adapter.isFallbackAdapter) {
      notes.push(
        `The ${which} run used a fallback (software) adapter: latencies say little about GPUs.`,
      );
    }
  }
  const unreliableClock = cases.filter((c) => c.lowClock.base || c.lowClock.head).length;
  if (unreliableClock > 0) {
    notes.push(
      `${unreliableClock} case(s) were measured below their adapter's working clock on a side (clock.lowClock): their latency is not judged (verdict unreliable-clock, no effect on the exit code) and they are left out of the geometric means; rerun them.`,
    );
  }
  for (const [doc, which] of [[base, "base"], [head, "head"]] as const) {
    if (doc.environment.clock === undefined || doc.environment.clock === null) {
      notes.push(
        `The ${which} run has no clock check (older document, or run without the clock guard): a case it measured at a low clock cannot be recognised.`,
      );
    }
  }
  const few = cases.filter((c) => c.latency && !c.latency.enough).length;
  if (few > 0) {
    notes.push(
      `${few} case(s) have fewer than 8 samples on a side: decided by the bootstrap interval instead of the Mann-Whitney test.`,
    );
  }

  const geo: GeomeanRow[] = [];
  const all = geomean(cases, "all");
  if (all) geo.push(all);
  // One row per method and runtime: runtimes are never pooled.
  const label = (c: CaseComparison) =>
    seriesLabel(c.method, c.runtime as CaseResult["runtime"], [c.runtime as CaseResult["runtime"]]);
  const series = [...new Set(cases.map(label))];
  if (series.length > 1) {
    for (const m of series) {
      const g = geomean(cases.filter((c) => label(c) === m), m);
      if (g) geo.push(g);
    }
  }
  const count = (v: Verdict) => cases.filter((c) => c.verdict === v).length;
  const regressions = count("regression");
  const improvements = count("improvement");
  return {
    format: COMPARE_FORMAT,
    version: COMPARE_VERSION,
    base: baseRef,
    head: headRef,
    threshold: o.threshold,
    alpha: o.alpha,
    cases,
    onlyInBase,
    onlyInHead,
    settingsDiffs: settingsDiffs(base, head),
    notes,
    summary: {
      verdict: regressions > 0 ? "regression" : improvements > 0 ? "improvement" : "noise",
      regressions,
      improvements,
      noise: count("noise"),
      unreliableClock: count("unreliable-clock"),
      failedInHead: cases.filter((c) => c.headProblem !== null).length,
      sourceChanged: cases.filter((c) => c.sourceChanged).length,
      metricChanged: cases.filter((c) => c.metricChanges.length > 0).length,
      geomean: geo,
    },
  };
}

/**
 * Exit code of a comparison: 1 when anything regressed, else 0. A case left `unreliable-clock`
 * counts as neither, so flagged cases alone give 0.
 */
export function compareExitCode(c: Comparison): number {
  return c.summary.regressions > 0 ? 1 : 0;
}

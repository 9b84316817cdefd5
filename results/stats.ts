/**
 * Pure statistics for timing samples: order statistics, robust spread (MAD), the one seeded
 * bootstrap (confidence intervals of a median, for `bench`, and of a ratio of medians, for
 * `compare`, both from one seeded generator), Tukey outlier labels (criterion style: label, never
 * drop), and the Mann-Whitney U test (normal approximation with tie and continuity correction, as
 * scipy's `mannwhitneyu(..., method="asymptotic")` computes it).
 *
 * Every function takes plain number arrays and leaves them unchanged. Empty input is a
 * `RangeError`, never a silent NaN.
 *
 * @module
 */

import type { TimingStats } from "./schema.ts";

function nonEmpty(xs: ArrayLike<number>, what: string): void {
  if (xs.length === 0) throw new RangeError(`Cannot take the ${what} of an empty sample`);
}

/** A sorted copy (ascending) as a Float64Array. */
export function sorted(xs: ArrayLike<number>): Float64Array {
  return Float64Array.from(xs).sort();
}

/**
 * Quantile `p` in [0, 1] of an already sorted sample, interpolating linearly between order
 * statistics (Hyndman-Fan type 7, numpy's and R's default).
 */
export function quantileSorted(s: ArrayLike<number>, p: number): number {
  nonEmpty(s, "quantile");
  if (!(p >= 0 && p <= 1)) throw new RangeError(`Quantile must be in [0, 1], got ${p}`);
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo]! + (h - lo) * (s[hi]! - s[lo]!);
}

/** Quantile `p` in [0, 1] (type 7, see {@linkcode quantileSorted}). */
export function quantile(xs: ArrayLike<number>, p: number): number {
  return quantileSorted(sorted(xs), p);
}

/**
 * Median (mean of the two middle values for an even count).
 *
 * @example Order statistics of a timing sample
 * ```ts
 * import assert from "node:assert/strict";
 * import { mad, median, quantile } from "./stats.ts";
 *
 * const ns = [120, 100, 110, 400, 105];
 * assert.equal(median(ns), 110); // one slow sample does not move the median
 * assert.equal(median([1, 2, 3, 4]), 2.5);
 * assert.equal(quantile(ns, 0.25), 105); // type 7, as numpy and R
 * assert.equal(mad(ns), 10); // median of |x - 110|: 10, 10, 0, 290, 5
 * assert.throws(() => median([]), RangeError); // never a silent NaN
 * ```
 */
export function median(xs: ArrayLike<number>): number {
  nonEmpty(xs, "median");
  return quantileSorted(sorted(xs), 0.5);
}

/** Arithmetic mean. */
export function mean(xs: ArrayLike<number>): number {
  nonEmpty(xs, "mean");
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}

/** Smallest value. */
export function min(xs: ArrayLike<number>): number {
  nonEmpty(xs, "minimum");
  let m = Infinity;
  for (let i = 0; i < xs.length; i++) m = Math.min(m, xs[i]!);
  return m;
}

/** Largest value. */
export function max(xs: ArrayLike<number>): number {
  nonEmpty(xs, "maximum");
  let m = -Infinity;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, xs[i]!);
  return m;
}

/** Median absolute deviation from the median, unscaled (multiply by 1.4826 for a normal σ). */
export function mad(xs: ArrayLike<number>): number {
  const m = median(xs);
  const dev = new Float64Array(xs.length);
  for (let i = 0; i < xs.length; i++) dev[i] = Math.abs(xs[i]! - m);
  return median(dev);
}

/**
 * The one random source of the statistics: sfc32 seeded through splitmix32 (twelve draws
 * discarded), as uniform floats in [0, 1). The same seed gives the same stream on every platform,
 * so every interval is a pure function of its sample and seed.
 */
function seededUniform(seed: number): () => number {
  let s = seed >>> 0;
  const spread = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = Math.imul(s ^ (s >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = spread(), b = spread(), c = spread(), d = spread();
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (((c << 21) | (c >>> 11)) + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  return () => u32() / 4294967296;
}

/**
 * A sample prepared for resampling: {@linkcode MedianResampler.draw} takes `n` values with
 * replacement (one uniform draw each, picking an input position) and returns their median, in O(n)
 * without sorting: it counts the draws per position and walks the positions in value order to the
 * middle one(s).
 */
class MedianResampler {
  readonly #values: ArrayLike<number>;
  /** Input positions in ascending order of value. */
  readonly #byValue: Uint32Array;
  readonly #counts: Uint32Array;

  constructor(values: ArrayLike<number>) {
    this.#values = values;
    this.#byValue = Uint32Array.from({ length: values.length }, (_, i) => i)
      .sort((i, j) => values[i]! - values[j]!);
    this.#counts = new Uint32Array(values.length);
  }

  /** The median of one resample drawn with `rand`. */
  draw(rand: () => number): number {
    const n = this.#values.length, counts = this.#counts;
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[Math.floor(rand() * n)]!++;
    const lo = (n - 1) >> 1, hi = n >> 1;
    let seen = 0, loValue = NaN;
    for (let r = 0; r < n; r++) {
      const i = this.#byValue[r]!;
      seen += counts[i]!;
      if (Number.isNaN(loValue) && seen > lo) loValue = this.#values[i]!;
      if (seen > hi) return (loValue + this.#values[i]!) / 2;
    }
    throw new Error("unreachable: the resample holds n values");
  }
}

/** Options of {@linkcode bootstrapMedianCi} and {@linkcode bootstrapRatioCi}. */
export interface BootstrapOptions {
  /** Coverage of the interval (default 0.95). */
  confidence?: number;
  /** Bootstrap resamples (default 1000). */
  resamples?: number;
  /** Seed of the resampler (default 0): the same seed and sample give the same interval. */
  seed?: number;
}

function checkBootstrap(confidence: number, resamples: number): void {
  if (!(confidence > 0 && confidence < 1)) {
    throw new RangeError(`Confidence must be in (0, 1), got ${confidence}`);
  }
  if (!Number.isSafeInteger(resamples) || resamples < 1) {
    throw new RangeError(`Resamples must be a positive integer, got ${resamples}`);
  }
}

/** The central `confidence` range of resampled statistics (sorted in place). */
function percentileInterval(stats: Float64Array, confidence: number): [number, number] {
  stats.sort();
  const alpha = (1 - confidence) / 2;
  return [quantileSorted(stats, alpha), quantileSorted(stats, 1 - alpha)];
}

/**
 * Percentile-bootstrap confidence interval of the median: the sample is resampled with replacement
 * `resamples` times with a seeded generator, and the interval is the central `confidence` range of
 * the resampled medians.
 *
 * @example A seeded interval around the median
 * ```ts
 * import assert from "node:assert/strict";
 * import { bootstrapMedianCi, median } from "./stats.ts";
 *
 * const ns = [101, 99, 100, 102, 98, 100, 103, 97, 100, 150];
 * const [lo, hi] = bootstrapMedianCi(ns, { confidence: 0.95, seed: 7 });
 * assert.ok(lo <= median(ns) && median(ns) <= hi);
 * assert.ok(lo >= 97 && hi <= 150); // resampled medians stay inside the sample
 * // The same seed and sample give the same interval, so results files are reproducible.
 * assert.deepEqual(bootstrapMedianCi(ns, { seed: 7 }), [lo, hi]);
 * ```
 */
export function bootstrapMedianCi(
  xs: ArrayLike<number>,
  { confidence = 0.95, resamples = 1000, seed = 0 }: BootstrapOptions = {},
): [number, number] {
  nonEmpty(xs, "bootstrap interval");
  checkBootstrap(confidence, resamples);
  if (xs.length === 1) return [xs[0]!, xs[0]!];
  const rand = seededUniform(seed);
  const sample = new MedianResampler(xs);
  const medians = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) medians[b] = sample.draw(rand);
  return percentileInterval(medians, confidence);
}

/**
 * Percentile-bootstrap confidence interval of median(head) / median(base): each resample draws
 * `base` and then `head` with replacement from one seeded generator, and the interval is the
 * central `confidence` range of the resampled ratios (`compare`'s latency interval).
 *
 * @example Twice as slow, with an interval around 2
 * ```ts
 * import assert from "node:assert/strict";
 * import { bootstrapRatioCi } from "./stats.ts";
 *
 * const base = [10, 11, 9, 10, 10.5, 9.5, 10.2, 9.8];
 * const [lo, hi] = bootstrapRatioCi(base, base.map((x) => 2 * x), { seed: 3 });
 * assert.ok(lo <= 2 && 2 <= hi && hi - lo < 0.3);
 * assert.deepEqual(bootstrapRatioCi([5], [10]), [2, 2]);
 * ```
 */
export function bootstrapRatioCi(
  base: ArrayLike<number>,
  head: ArrayLike<number>,
  { confidence = 0.95, resamples = 1000, seed = 0 }: BootstrapOptions = {},
): [number, number] {
  nonEmpty(base, "bootstrap interval");
  nonEmpty(head, "bootstrap interval");
  checkBootstrap(confidence, resamples);
  const rand = seededUniform(seed);
  const b = new MedianResampler(base);
  const h = new MedianResampler(head);
  const ratios = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    const mb = b.draw(rand);
    ratios[r] = h.draw(rand) / mb;
  }
  return percentileInterval(ratios, confidence);
}

/** Half the width of a confidence interval relative to a centre (e.g. the median). */
export function relativeCiHalfWidth(ci: readonly [number, number], centre: number): number {
  if (centre === 0) return ci[0] === ci[1] ? 0 : Infinity;
  return (ci[1] - ci[0]) / 2 / Math.abs(centre);
}

/** Full width of a confidence interval relative to a centre. */
export function relativeCiWidth(ci: readonly [number, number], centre: number): number {
  return 2 * relativeCiHalfWidth(ci, centre);
}

/** Tukey label of one value. */
export type OutlierLabel = "low-severe" | "low-mild" | "normal" | "high-mild" | "high-severe";

/** Tukey fences and labels of a sample. */
export interface TukeyOutliers {
  /** Fences: Q1 - 3·IQR, Q1 - 1.5·IQR, Q3 + 1.5·IQR, Q3 + 3·IQR (quartiles of type 7). */
  fences: { lowSevere: number; lowMild: number; highMild: number; highSevere: number };
  /** Label of every value, in input order. */
  labels: OutlierLabel[];
  /** How many values fall in each outlier class. */
  counts: { lowSevere: number; lowMild: number; highMild: number; highSevere: number };
}

/**
 * Tukey's fences: values beyond 1.5 IQR from the quartiles are mild outliers, beyond 3 IQR severe.
 * Values are labelled, never removed.
 *
 * @example One preempted sample among six
 * ```ts
 * import assert from "node:assert/strict";
 * import { tukeyOutliers } from "./stats.ts";
 *
 * const t = tukeyOutliers([10, 11, 12, 13, 14, 100]);
 * assert.deepEqual(t.labels, ["normal", "normal", "normal", "normal", "normal", "high-severe"]);
 * assert.equal(t.fences.highSevere, 13.75 + 3 * 2.5); // Q3 + 3 IQR
 * assert.deepEqual(t.counts, { lowSevere: 0, lowMild: 0, highMild: 0, highSevere: 1 });
 * ```
 */
export function tukeyOutliers(xs: ArrayLike<number>): TukeyOutliers {
  const s = sorted(xs);
  const q1 = quantileSorted(s, 0.25);
  const q3 = quantileSorted(s, 0.75);
  const iqr = q3 - q1;
  const fences = {
    lowSevere: q1 - 3 * iqr,
    lowMild: q1 - 1.5 * iqr,
    highMild: q3 + 1.5 * iqr,
    highSevere: q3 + 3 * iqr,
  };
  const counts = { lowSevere: 0, lowMild: 0, highMild: 0, highSevere: 0 };
  const labels: OutlierLabel[] = [];
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    let l: OutlierLabel = "normal";
    if (x < fences.lowSevere) l = "low-severe";
    else if (x < fences.lowMild) l = "low-mild";
    else if (x > fences.highSevere) l = "high-severe";
    else if (x > fences.highMild) l = "high-mild";
    if (l === "low-severe") counts.lowSevere++;
    else if (l === "low-mild") counts.lowMild++;
    else if (l === "high-mild") counts.highMild++;
    else if (l === "high-severe") counts.highSevere++;
    labels.push(l);
  }
  return { fences, labels, counts };
}

/**
 * Complementary error function (Numerical Recipes' Chebyshev fit, fractional error below 1.2e-7
 * everywhere), so p-values stay accurate relative to their size far into the tail.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t *
    Math.exp(
      -z * z - 1.26551223 +
        t * (1.00002368 +
            t * (0.37409196 +
                t * (0.09678418 +
                    t * (-0.18628806 +
                        t * (0.27886807 +
                            t *
                              (-1.13520398 +
                                t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** Upper tail of the standard normal distribution, P(Z > z). */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/** Fewest values per sample for which {@linkcode mannWhitneyU} reports `enough`. */
export const MANN_WHITNEY_MIN_SAMPLES = 8;

/**
 * Two-sided Mann-Whitney U test of `a` against `b` (normal approximation, tie-corrected variance,
 * continuity correction of 0.5; the p-value equals scipy's `mannwhitneyu(a, b,
 * method="asymptotic")`).
 *
 * - `u`: the U statistic of `a` (pairs where a > b, ties counting one half);
 * - `z`: signed standard score, positive when `a` tends to be larger than `b`;
 * - `p`: two-sided p-value (1 when either sample is empty or every value is tied);
 * - `enough`: both samples have at least {@linkcode MANN_WHITNEY_MIN_SAMPLES} values; below that
 *   the normal approximation is poor and the p-value should not gate decisions.
 *
 * @example A slower sample against a faster one, and two equal ones
 * ```ts
 * import assert from "node:assert/strict";
 * import { mannWhitneyU } from "./stats.ts";
 *
 * const base = [100, 101, 102, 103, 104, 105, 106, 107];
 * const head = [110, 111, 112, 113, 114, 115, 116, 117];
 * const slower = mannWhitneyU(head, base);
 * assert.equal(slower.u, 64); // every head value is above every base value
 * assert.ok(slower.z > 0 && slower.p < 0.01 && slower.enough);
 * const same = mannWhitneyU(base, [...base].reverse());
 * assert.equal(same.z, 0);
 * assert.equal(same.p, 1);
 * // Three values a side are too few for the normal approximation: the p-value is not a verdict.
 * assert.equal(mannWhitneyU([1, 2, 3], [4, 5, 6]).enough, false);
 * ```
 */
export function mannWhitneyU(
  a: number[],
  b: number[],
): { u: number; z: number; p: number; enough: boolean } {
  const n1 = a.length, n2 = b.length;
  const enough = n1 >= MANN_WHITNEY_MIN_SAMPLES && n2 >= MANN_WHITNEY_MIN_SAMPLES;
  if (n1 === 0 || n2 === 0) return { u: 0, z: 0, p: 1, enough: false };
  const all = [...a.map((v) => ({ v, a: true })), ...b.map((v) => ({ v, a: false }))];
  all.sort((x, y) => x.v - y.v);
  const n = all.length;
  let rankSumA = 0;
  let tieTerm = 0; // Σ (t³ - t) over tie groups
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && all[j + 1]!.v === all[i]!.v) j++;
    const t = j - i + 1;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (all[k]!.a) rankSumA += avgRank;
    tieTerm += t * t * t - t;
    i = j + 1;
  }
  const u = rankSumA - (n1 * (n1 + 1)) / 2;
  const mu = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  if (!(variance > 0)) return { u, z: 0, p: 1, enough };
  const d = u - mu;
  const z = (Math.sign(d) * Math.max(0, Math.abs(d) - 0.5)) / Math.sqrt(variance);
  const p = Math.min(1, 2 * normalSf(Math.abs(z)));
  return { u, z, p, enough };
}

/** Options of {@linkcode summarize}. */
export interface SummarizeOptions {
  /** Seed of the bootstrap resampler. */
  seed?: number;
  /** Bootstrap resamples (default 1000). */
  resamples?: number;
}

/** Every statistic of the results document for one sample set (ns), raw samples kept. */
export function summarize(samplesNs: number[], options: SummarizeOptions = {}): TimingStats {
  nonEmpty(samplesNs, "summary");
  const m = median(samplesNs);
  return {
    samplesNs: samplesNs.slice(),
    medianNs: m,
    meanNs: mean(samplesNs),
    minNs: min(samplesNs),
    maxNs: max(samplesNs),
    madNs: mad(samplesNs),
    ci95Ns: bootstrapMedianCi(samplesNs, {
      confidence: 0.95,
      resamples: options.resamples ?? 1000,
      seed: options.seed ?? 0,
    }),
    outliers: tukeyOutliers(samplesNs).counts,
  };
}

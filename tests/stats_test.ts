import {
  bootstrapMedianCi,
  erfc,
  mad,
  mannWhitneyU,
  max,
  mean,
  median,
  min,
  normalSf,
  quantile,
  relativeCiHalfWidth,
  relativeCiWidth,
  summarize,
  tukeyOutliers,
} from "../results/stats.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

const close = (a: number, b: number, rel = 1e-9, abs = 0) =>
  assert(Math.abs(a - b) <= abs + rel * Math.abs(b), `${a} is not close to ${b}`);

Deno.test("median() takes the middle value, or the mean of the two middle ones", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([7]), 7);
});

Deno.test("quantile() interpolates like numpy (type 7)", () => {
  // numpy.quantile([1,2,3,4,10], [0.25, 0.5, 0.75, 0.1]) = [2, 3, 4, 1.4]
  const xs = [10, 1, 4, 2, 3];
  assertEquals(quantile(xs, 0.25), 2);
  assertEquals(quantile(xs, 0.5), 3);
  assertEquals(quantile(xs, 0.75), 4);
  close(quantile(xs, 0.1), 1.4);
  assertEquals(quantile(xs, 0), 1);
  assertEquals(quantile(xs, 1), 10);
  assertThrows(() => quantile(xs, 1.5), RangeError);
});

Deno.test("mean(), min(), max() and mad() match hand-computed values", () => {
  assertEquals(mean([1, 2, 3, 4, 10]), 4);
  assertEquals(min([5, -1, 3]), -1);
  assertEquals(max([5, -1, 3]), 5);
  // |x - 3| = 2,1,0,1,7 -> median 1; |x - 2| = 1,1,0,0,2,4,7 -> 1 (scipy, scale=1)
  assertEquals(mad([1, 2, 3, 4, 10]), 1);
  assertEquals(mad([1, 1, 2, 2, 4, 6, 9]), 1);
  assertEquals(mad([5, 5, 5]), 0);
});

Deno.test("statistics of an empty sample throw RangeError", () => {
  for (const f of [median, mean, min, max, mad]) assertThrows(() => f([]), RangeError, /empty/);
  assertThrows(() => bootstrapMedianCi([]), RangeError);
  assertThrows(() => summarize([]), RangeError);
});

Deno.test("inputs are left unchanged", () => {
  const xs = [3, 1, 2];
  median(xs);
  mad(xs);
  tukeyOutliers(xs);
  bootstrapMedianCi(xs);
  assertEquals(xs, [3, 1, 2]);
});

Deno.test("bootstrapMedianCi() is seeded, contains the median and narrows with more data", () => {
  const xs = Array.from({ length: 200 }, (_, i) => 100 + ((i * 37) % 17));
  const a = bootstrapMedianCi(xs, { seed: 5 });
  const b = bootstrapMedianCi(xs, { seed: 5 });
  assertEquals(a, b);
  const m = median(xs);
  assert(a[0] <= m && m <= a[1]);
  const few = bootstrapMedianCi(xs.slice(0, 12), { seed: 5 });
  assert(few[1] - few[0] >= a[1] - a[0]);
  assertEquals(bootstrapMedianCi([4]), [4, 4]);
  assertEquals(bootstrapMedianCi([2, 2, 2, 2]), [2, 2]);
});

Deno.test("bootstrapMedianCi() covers the true median about 95% of the time", () => {
  // Uniform(0, 1) samples of 41: the CI should contain 0.5 in most of 200 trials.
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  let hits = 0;
  for (let t = 0; t < 200; t++) {
    const xs = Array.from({ length: 41 }, rand);
    const [lo, hi] = bootstrapMedianCi(xs, { seed: t, resamples: 400 });
    if (lo <= 0.5 && 0.5 <= hi) hits++;
  }
  assert(hits >= 170 && hits <= 200, `coverage ${hits}/200`);
});

Deno.test("relativeCiHalfWidth() and relativeCiWidth()", () => {
  close(relativeCiHalfWidth([95, 105], 100), 0.05);
  close(relativeCiWidth([95, 105], 100), 0.1);
  assertEquals(relativeCiHalfWidth([0, 0], 0), 0);
  assertEquals(relativeCiHalfWidth([0, 1], 0), Infinity);
});

Deno.test("tukeyOutliers() labels mild and severe outliers without dropping them", () => {
  // Sorted [-20, 1..8, 12, 40], n = 11: Q1 = s[2.5] = 2.5, Q3 = s[7.5] = 7.5, IQR = 5.
  // Fences: severe < -12.5, mild < -5, mild > 15, severe > 22.5.
  const xs = [-20, 1, 2, 3, 4, 5, 6, 7, 8, 12, 40];
  const t = tukeyOutliers(xs);
  assertEquals(t.fences, { lowSevere: -12.5, lowMild: -5, highMild: 15, highSevere: 22.5 });
  assertEquals(t.labels.length, xs.length);
  assertEquals(t.labels[0], "low-severe");
  assertEquals(t.labels[10], "high-severe");
  assertEquals(t.labels[9], "normal");
  assertEquals(t.counts, { lowSevere: 1, lowMild: 0, highMild: 0, highSevere: 1 });
  const mild = tukeyOutliers([1, 2, 3, 4, 5, 6, 7, 8, 16]);
  // Q1 = 3, Q3 = 7, IQR 4: 16 > 13 (mild) and <= 19 (severe fence)
  assertEquals(mild.counts, { lowSevere: 0, lowMild: 0, highMild: 1, highSevere: 0 });
});

Deno.test("erfc() and normalSf() match scipy to 1.2e-7 relative", () => {
  close(erfc(0.5), 0.4795001221869535, 1.2e-7);
  close(erfc(-1), 1.8427007929497148, 1.2e-7);
  close(erfc(3), 2.2090496998585445e-05, 1.2e-7);
  close(erfc(5), 1.5374597944280347e-12, 1.2e-7);
  close(normalSf(0), 0.5, 1.2e-7);
  close(normalSf(1.959963984540054), 0.025, 1.2e-7);
});

Deno.test("mannWhitneyU() matches scipy's asymptotic two-sided test", () => {
  // scipy.stats.mannwhitneyu(a, b, method="asymptotic") statistics and p-values.
  const sep = mannWhitneyU([1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]);
  assertEquals(sep.u, 0);
  // z = (0 - 32 + 0.5) / sqrt(64 * 17 / 12)
  close(sep.z, -31.5 / Math.sqrt((64 * 17) / 12), 1e-12);
  close(sep.p, 0.0009391056991171899, 1e-6);
  assert(sep.enough);

  const ties = mannWhitneyU([1, 2, 2, 3, 3, 3, 4, 5], [3, 4, 4, 5, 5, 6, 7, 7]);
  assertEquals(ties.u, 7.5);
  close(ties.p, 0.010515245935858907, 1e-6);
  assert(ties.z < 0);

  const few = mannWhitneyU([1.1, 2.2, 3.3, 4.4, 5.5], [1.5, 2.5, 3.5]);
  assertEquals(few.u, 9);
  close(few.p, 0.765594483995764, 1e-6);
  assertEquals(few.enough, false);

  const shifted = mannWhitneyU(
    [5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  assertEquals(shifted.u, 82);
  close(shifted.p, 0.017006577801423665, 1e-6);
  assert(shifted.z > 0);
});

Deno.test("mannWhitneyU() degenerate inputs give p = 1", () => {
  const allTied = mannWhitneyU(Array(8).fill(10), Array(8).fill(10));
  assertEquals(allTied, { u: 32, z: 0, p: 1, enough: true });
  assertEquals(mannWhitneyU([], [1, 2]), { u: 0, z: 0, p: 1, enough: false });
  // Symmetric: swapping the samples flips z and keeps p.
  const ab = mannWhitneyU([1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 100]);
  const ba = mannWhitneyU([2, 4, 6, 8, 10, 12, 14, 100], [1, 3, 5, 7, 9, 11, 13, 15]);
  close(ab.z, -ba.z, 1e-12);
  close(ab.p, ba.p, 1e-12);
  assertEquals(ab.u + ba.u, 64);
});

Deno.test("summarize() fills every TimingStats field and keeps the raw samples", () => {
  const xs = [10, 12, 11, 13, 11, 50];
  const s = summarize(xs, { seed: 1 });
  assertEquals(s.samplesNs, xs);
  assertEquals(s.medianNs, 11.5);
  close(s.meanNs, 107 / 6);
  assertEquals(s.minNs, 10);
  assertEquals(s.maxNs, 50);
  // |x - 11.5| = 1.5, 0.5, 0.5, 1.5, 0.5, 38.5 -> median 1
  assertEquals(s.madNs, 1);
  assert(s.ci95Ns[0] <= s.medianNs && s.medianNs <= s.ci95Ns[1]);
  // Q1 = 11, Q3 = 12.75, IQR 1.75: 50 > 12.75 + 5.25 = 18 is severe.
  assertEquals(s.outliers, { lowSevere: 0, lowMild: 0, highMild: 0, highSevere: 1 });
  assertEquals(summarize(xs, { seed: 1 }), s);
});

/**
 * The measurement loop (nvbench/asv style): warm up by time, then rounds that interleave the cases
 * of one snapshot round-robin (so clock drift spreads evenly over the methods) until every case's
 * 95% bootstrap CI half-width is below a target fraction of its median, or the time budget is
 * spent. Optional cold mode puts a cache-flush pass (writing 2x a large L2) before every sample.
 * An optional clock guard (`clock.ts`) spins the GPU up before the warm-up, opens every batch with
 * its lead and times its reference kernel between rounds, so every sample knows the clock it ran
 * at; a round with a sample at a low clock is dropped and taken again after a new spin-up (at most
 * {@linkcode MAX_LOW_CLOCK_RETRIES} per group, counted in `retriedSamples`).
 *
 * @module
 */

import type { Gpu } from "../kernels/gpu.ts";
import { bootstrapMedianCi, median, relativeCiHalfWidth } from "../results/stats.ts";
import type { BatchClock } from "./clock.ts";
import type { PassSpec, Timer } from "./timer.ts";

/** One thing to measure: a key and the work of one repetition. */
export interface MeasureCase {
  key: string;
  encode(pass: GPUComputePassEncoder): void;
}

/** Options of {@linkcode measureInterleaved}. */
export interface MeasureOptions {
  /** Warm-up time for the whole group, ms (at least one warm-up sample per case is taken). */
  warmupMs: number;
  /** Budget per case, ms (the group gets budget x cases), counted after warm-up. */
  budgetMs: number;
  /** Samples taken by the first round (always, budget or not). */
  minSamples: number;
  /** No case takes more samples than this. */
  maxSamples: number;
  /** A case is stable once its 95% CI half-width is below this fraction of its median. */
  targetRelativeCi: number;
  /** Repetitions per sample; default: 1, raised until a sample lasts `timer.minSampleNs`. */
  repetitions?: number;
  /** Flush pass recorded before every sample (cold-cache mode); none when absent. */
  flush?: PassSpec;
  /** Clock in ms (default `performance.now`; tests pass a fake clock). */
  now?: () => number;
  /** Seed of the bootstrap resampler. */
  seed?: number;
  /** Called after every measured round. */
  onRound?: (info: { round: number; elapsedMs: number; active: number }) => void;
  /** Clock guard: spin-up first, a lead opening every batch, references beside the samples. */
  clock?: BatchClock;
}

/** Why a case stopped. */
export type StopReason = "stable" | "max-samples" | "budget";

/** Samples of one case. */
export interface CaseMeasurement {
  key: string;
  /** ns per repetition, warm-up excluded, in the order taken. */
  samplesNs: number[];
  repetitions: number;
  stop: StopReason;
  /** CI half-width / median when it stopped (Infinity with fewer than 2 samples). */
  relativeCiHalfWidth: number;
  warmupSamples: number;
  rounds: number;
  /**
   * Aligned with `samplesNs`: the clock reference's time (per dispatch) bracketing each sample
   * (the faster of the reference points before and after it in its batch: a clock drop slows
   * both, a one-off stall of the host only one), or null without a clock guard.
   */
  referenceNs: (number | null)[];
  /**
   * Samples taken in rounds that ran at a low clock (a sample bracketed below the clock guard's
   * low fraction) and were dropped and taken again after a new spin-up; not in `samplesNs`.
   */
  retriedSamples: number;
}

/** Rounds of one group taken again after a low clock, at most (each after a new spin-up). */
export const MAX_LOW_CLOCK_RETRIES = 2;

/** Most repetitions the automatic rule puts in one pass. */
const MAX_AUTO_REPETITIONS = 1 << 16;

/** What a pass of a batch is for. */
type Role = "case" | "flush" | "probe" | "lead" | "reference";

interface Batch {
  passes: PassSpec[];
  roles: Role[];
  /** For reference passes, the reference point (a run of consecutive references) they belong to. */
  points: number[];
}

function batch(
  cases: readonly MeasureCase[],
  reps: Map<string, number>,
  perCase: number,
  flush?: PassSpec,
  clock?: BatchClock,
  sampleNs = 0,
  references = false,
): Batch {
  const out: Batch = { passes: [], roles: [], points: [] };
  let point = -1;
  const add = (p: PassSpec, role: Role) => {
    out.passes.push(p);
    out.roles.push(role);
    out.points.push(role === "reference" ? point : -1);
  };
  if (clock) { for (const p of clock.opening()) add(p, p.timed === false ? "lead" : "probe"); }
  const refs = references && clock ? clock.reference(sampleNs) : [];
  const addPoint = () => {
    point++;
    for (const p of refs) add(p, "reference");
  };
  for (let r = 0; r < perCase; r++) {
    if (refs.length > 0 && clock!.perRound) addPoint();
    for (const c of cases) {
      if (flush) add({ ...flush, timed: false }, "flush");
      add({ label: c.key, encode: c.encode, repetitions: reps.get(c.key)! }, "case");
    }
  }
  if (refs.length > 0) addPoint();
  return out;
}

function collect(
  b: Batch,
  values: readonly (number | null)[],
  into: Map<string, number[]>,
  refsInto?: Map<string, (number | null)[]>,
  clock?: BatchClock,
) {
  // Each reference point's time: the fastest of its passes (a one-off host stall hits one pass,
  // a lower clock all of them).
  const points: (number | null)[] = [];
  let probe: number | null = null;
  values.forEach((v, i) => {
    if (b.roles[i] === "probe" && v !== null) probe = v;
    const p = b.points[i]!;
    if (p < 0) return;
    while (points.length <= p) points.push(null);
    if (v !== null && v > 0) points[p] = points[p] === null ? v : Math.min(points[p]!, v);
  });
  // Samples before the first point take it; others the faster of the points around them.
  let last = -1;
  values.forEach((v, i) => {
    const role = b.roles[i]!;
    if (role === "reference") last = b.points[i]!;
    if (role !== "case" || v === null) return;
    const key = b.passes[i]!.label;
    into.get(key)!.push(v);
    if (!refsInto) return;
    const before = last >= 0 ? points[last] ?? null : null;
    const after = points[last + 1] ?? null;
    const bracket = before === null ? after : after === null ? before : Math.min(before, after);
    refsInto.get(key)!.push(bracket);
  });
  if (clock && points.length > 0) clock.observe(probe, points);
}

/**
 * Measures `cases` interleaved. Warm-up: batches of every case, growing 1, 2, 4, ... samples per
 * case, until `warmupMs` has passed; the repetitions of a case are then raised by probes until one
 * sample lasts at least `timer.minSampleNs`. Measurement: the first round takes `minSamples` of every case; each
 * later round takes more samples of the cases not yet stable (at most doubling their count, sized
 * to fit the remaining budget), until all are stable, at `maxSamples`, or the budget is spent.
 */
export async function measureInterleaved(
  timer: Timer,
  cases: readonly MeasureCase[],
  options: MeasureOptions,
): Promise<CaseMeasurement[]> {
  const now = options.now ?? (() => performance.now());
  const { minSamples, maxSamples, targetRelativeCi } = options;
  if (!Number.isSafeInteger(minSamples) || minSamples < 1) {
    throw new RangeError(`minSamples must be a positive integer, got ${minSamples}`);
  }
  if (!Number.isSafeInteger(maxSamples) || maxSamples < minSamples) {
    throw new RangeError(
      `maxSamples (${maxSamples}) must be an integer >= minSamples (${minSamples})`,
    );
  }
  if (new Set(cases.map((c) => c.key)).size !== cases.length) {
    throw new RangeError("Case keys must be unique");
  }
  if (cases.length === 0) return [];
  const reps = new Map(cases.map((c) => [c.key, options.repetitions ?? 1]));
  const clock = options.clock;
  if (clock) await clock.spinUp();

  // Warm-up by time.
  const warm = new Map(cases.map((c) => [c.key, [] as number[]]));
  const w0 = now();
  for (let per = 1;; per = Math.min(per * 2, 64)) {
    const b = batch(cases, reps, per, options.flush, clock);
    collect(b, await timer.time(b.passes), warm);
    if (now() - w0 >= options.warmupMs) break;
  }
  if (options.repetitions === undefined && timer.minSampleNs > 0) {
    // Raise repetitions (at most 16x per probe) until one sample lasts minSampleNs.
    for (const c of cases) {
      const s = warm.get(c.key)!;
      let t = s.length > 0 ? median(s.slice(-Math.max(1, Math.floor(s.length / 2)))) : 0;
      let r = 1;
      while (r < MAX_AUTO_REPETITIONS && r * t < timer.minSampleNs) {
        const want = t > 0 ? Math.ceil(timer.minSampleNs / t) : r * 16;
        r = Math.min(MAX_AUTO_REPETITIONS, Math.max(r * 2, Math.min(r * 16, want)));
        const [v] = await timer.time([{ label: c.key, encode: c.encode, repetitions: r }]);
        t = v ?? 0;
      }
      reps.set(c.key, r);
    }
    // Timestamps: one count for the whole group, so every method pays the same pass overhead share.
    // (Wall-clock samples subtract the floor instead, and a shared count would make slow cases slow.)
    if (timer.mode === "timestamp") {
      const most = Math.max(...reps.values());
      for (const c of cases) reps.set(c.key, most);
    }
  }

  // A typical sample of the group (sizes the clock reference).
  const typicalNs = clock
    ? median(cases.map((c) => {
      const s = warm.get(c.key)!;
      return (s.length > 0 ? median(s) : 0) * reps.get(c.key)!;
    }))
    : 0;

  // Measurement rounds.
  const samples = new Map(cases.map((c) => [c.key, [] as number[]]));
  const refs = new Map(cases.map((c) => [c.key, [] as (number | null)[]]));
  const state = new Map<string, { stop: StopReason | null; rel: number; rounds: number }>(
    cases.map((c) => [c.key, { stop: null, rel: Infinity, rounds: 0 }]),
  );
  const retried = new Map(cases.map((c) => [c.key, 0]));
  let retries = 0;
  const budgetMs = options.budgetMs * cases.length;
  const m0 = now();
  let per = minSamples;
  for (let round = 0;; round++) {
    const active = cases.filter((c) => state.get(c.key)!.stop === null);
    const b = batch(active, reps, per, options.flush, clock, typicalNs, true);
    const r0 = now();
    const got = new Map(active.map((c) => [c.key, [] as number[]]));
    const gotRefs = new Map(active.map((c) => [c.key, [] as (number | null)[]]));
    collect(b, await timer.time(b.passes), got, gotRefs, clock);
    // A round that ran (in part) at a low clock is taken again after a new spin-up: its samples
    // would only be flagged, and an interleaved round slows every case alike.
    if (
      clock && retries < MAX_LOW_CLOCK_RETRIES &&
      [...gotRefs.values()].some((rs) => rs.some((r) => r !== null && clock.isLow(r)))
    ) {
      retries++;
      for (const [k, v] of got) retried.set(k, retried.get(k)! + v.length);
      await clock.spinUp();
      round--;
      continue;
    }
    for (const [k, v] of got) samples.get(k)!.push(...v);
    for (const [k, v] of gotRefs) refs.get(k)!.push(...v);
    const roundMs = now() - r0;
    for (const c of active) {
      const s = samples.get(c.key)!;
      const st = state.get(c.key)!;
      st.rounds++;
      if (s.length >= 2) {
        const m = median(s);
        st.rel = relativeCiHalfWidth(
          bootstrapMedianCi(s, { seed: options.seed ?? 0, resamples: 500 }),
          m,
        );
      }
      if (s.length >= minSamples && st.rel < targetRelativeCi) st.stop = "stable";
      else if (s.length >= maxSamples) st.stop = "max-samples";
    }
    const elapsed = now() - m0;
    const still = cases.filter((c) => state.get(c.key)!.stop === null);
    options.onRound?.({ round, elapsedMs: elapsed, active: still.length });
    if (still.length === 0) break;
    if (elapsed >= budgetMs) {
      for (const c of still) state.get(c.key)!.stop = "budget";
      break;
    }
    // Size the next round to the remaining budget, growing at most geometrically (the clock's
    // passes are charged to the cases).
    const msPerPass = roundMs / Math.max(1, b.roles.filter((x) => x === "case").length);
    const fit = Math.floor((budgetMs - elapsed) / (Math.max(msPerPass, 1e-6) * still.length));
    const have = Math.min(...still.map((c) => samples.get(c.key)!.length));
    const room = Math.min(...still.map((c) => maxSamples - samples.get(c.key)!.length));
    per = Math.max(1, Math.min(fit, Math.max(have, 1), room));
  }
  return cases.map((c) => {
    const st = state.get(c.key)!;
    return {
      key: c.key,
      samplesNs: samples.get(c.key)!,
      repetitions: reps.get(c.key)!,
      stop: st.stop!,
      relativeCiHalfWidth: st.rel,
      warmupSamples: warm.get(c.key)!.length,
      rounds: st.rounds,
      referenceNs: clock ? refs.get(c.key)! : samples.get(c.key)!.map(() => null),
      retriedSamples: retried.get(c.key)!,
    };
  });
}

/** Default size of the cold-cache flush buffer: 2x a large L2 (H100: 50 MB). */
export const FLUSH_BYTES = 128 * 1024 * 1024;

const FLUSH_WGSL = `
@group(0) @binding(0) var<storage, read_write> buf: array<vec4<u32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let stride = n.x * 256u;
  for (var i = g.x; i < arrayLength(&buf); i += stride) { buf[i] = vec4<u32>(i); }
}`;

/**
 * The cold-cache flush: a pass that writes a buffer of `bytes` (default 128 MiB, limited by the
 * device's binding and buffer sizes), evicting caches between samples (triton's L2 flush).
 */
export async function createFlushPass(
  gpu: Gpu,
  { bytes = FLUSH_BYTES } = {},
): Promise<PassSpec & { bytes: number; destroy(): void }> {
  const size = Math.floor(
    Math.min(bytes, gpu.limit("maxStorageBufferBindingSize"), gpu.limit("maxBufferSize")) / 16,
  ) * 16;
  const pipeline = await gpu.pipeline("cache flush", FLUSH_WGSL);
  const buf = gpu.device.createBuffer({
    label: "cache flush",
    size,
    usage: GPUBufferUsage.STORAGE,
  });
  const bindGroup = gpu.device.createBindGroup({
    label: "cache flush",
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: buf } }],
  });
  const workgroups = Math.min(4096, Math.ceil(size / 16 / 256));
  return {
    label: "cache flush",
    bytes: size,
    timed: false,
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups);
    },
    destroy: () => buf.destroy(),
  };
}

/**
 * The measurement loop (nvbench/asv style): warm up by time, then rounds that interleave the cases
 * of one snapshot round-robin (so clock drift spreads evenly over the methods) until every case's
 * 95% bootstrap CI half-width is below a target fraction of its median, or the time budget is
 * spent. Optional cold mode puts a cache-flush pass (writing 2x a large L2) before every sample.
 *
 * @module
 */

import type { Gpu } from "../kernels/gpu.ts";
import { bootstrapMedianCi, median, relativeCiHalfWidth } from "../results/stats.ts";
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
}

/** Most repetitions the automatic rule puts in one pass. */
const MAX_AUTO_REPETITIONS = 1 << 16;

function batch(
  cases: readonly MeasureCase[],
  reps: Map<string, number>,
  perCase: number,
  flush?: PassSpec,
): PassSpec[] {
  const passes: PassSpec[] = [];
  for (let r = 0; r < perCase; r++) {
    for (const c of cases) {
      if (flush) passes.push({ ...flush, timed: false });
      passes.push({ label: c.key, encode: c.encode, repetitions: reps.get(c.key)! });
    }
  }
  return passes;
}

function collect(
  passes: readonly PassSpec[],
  values: readonly (number | null)[],
  into: Map<string, number[]>,
) {
  values.forEach((v, i) => {
    const p = passes[i]!;
    if (v !== null && p.timed !== false) into.get(p.label)!.push(v);
  });
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

  // Warm-up by time.
  const warm = new Map(cases.map((c) => [c.key, [] as number[]]));
  const w0 = now();
  for (let per = 1;; per = Math.min(per * 2, 64)) {
    const passes = batch(cases, reps, per, options.flush);
    collect(passes, await timer.time(passes), warm);
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

  // Measurement rounds.
  const samples = new Map(cases.map((c) => [c.key, [] as number[]]));
  const state = new Map<string, { stop: StopReason | null; rel: number; rounds: number }>(
    cases.map((c) => [c.key, { stop: null, rel: Infinity, rounds: 0 }]),
  );
  const budgetMs = options.budgetMs * cases.length;
  const m0 = now();
  let per = minSamples;
  for (let round = 0;; round++) {
    const active = cases.filter((c) => state.get(c.key)!.stop === null);
    const passes = batch(active, reps, per, options.flush);
    const r0 = now();
    collect(passes, await timer.time(passes), samples);
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
    // Size the next round to the remaining budget, growing at most geometrically.
    const msPerPass = roundMs / Math.max(1, passes.filter((p) => p.timed !== false).length);
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

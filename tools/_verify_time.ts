/**
 * Verify-and-time, shared by the kernel tools (`perf_group.ts`, `perf_runtimes.ts`,
 * `perf_sequence.ts`): every variant (a method with options) of one problem is planned, prepared,
 * run once on a poisoned output and checked against the float64 reference on sampled rows with
 * the one `verify` of `kernels/verify.ts`; a wrong variant is reported and never timed. The others
 * are timed interleaved with the timer (round-robin, `warmup` untimed rounds first), optionally
 * after a spin-up that brings the GPU to its working clock and with a cache flush before every
 * sample.
 *
 * @module
 */

import { busyPass, type PassSpec, type Timer } from "../bench/timer.ts";
import type { AttentionMethod, MethodOptions, Plan, PreparedMethod } from "../kernels/method.ts";
import { type Problem, runPrepared } from "../kernels/problem.ts";
import {
  type Reference,
  referenceOf,
  sampleRows,
  type Verdict,
  verdictProblems,
  verify,
} from "../kernels/verify.ts";
import { median } from "../results/stats.ts";

/** One variant to check and time. */
export interface ToolVariant {
  label: string;
  method: AttentionMethod;
  options?: Partial<MethodOptions>;
  /**
   * Timed even when its check fails (a knocked-out kernel of `profile_mma.ts`, wrong by design):
   * the verdict is kept, the status stays `ok` and the message says so.
   */
  timeOnly?: boolean;
  /**
   * Time only this part of the method's dispatches (`PreparedMethod.parts`, e.g. `stage-1`); the
   * check still runs the whole method.
   */
  part?: string;
}

/** A variant's outcome. */
export interface ToolResult {
  label: string;
  /** `wrong`: failed the check (never timed); `error`: threw while planning, preparing or timing. */
  status: "ok" | "wrong" | "error";
  message: string | null;
  plan: Plan | null;
  verdict: Verdict | null;
  /** Timed samples, µs. */
  samplesUs: number[];
  medianUs: number | null;
  minUs: number | null;
  /** Useful FLOPs (`plan.counts.usefulFlops`) over the median time, TFLOP/s. */
  usefulTflops: number | null;
}

/** Options of {@linkcode verifyAndTime}. */
export interface VerifyTimeOptions {
  /** Timed rounds. */
  samples: number;
  /** Untimed rounds first. */
  warmup: number;
  /** Rows checked against the reference (default 32). */
  rows?: number;
  /** A pass recorded (untimed) before every sample, e.g. a cache flush. */
  flush?: { label: string; encode(pass: GPUComputePassEncoder): void };
  /** Repeat the first variant this long before timing, to reach the working clock (default 0). */
  spinMs?: number;
  /**
   * Before every round, this many microseconds (about) of busy work, untimed, then one timed pass
   * of a one-wave reference kernel: the GPU does not idle between rounds, and the reference's
   * times ({@linkcode VerifyTimeResult.witnessUs}) show whether the clock held (default 0: none).
   */
  leadUs?: number;
  /** Progress and failures, one line each. */
  log?: (line: string) => void;
}

/** The sampled-rows reference of a problem (seeded, the same rows for every variant). */
export function toolReference(problem: Problem, rows = 32): Reference {
  const shape = problem.data.shape;
  return referenceOf(problem, sampleRows(problem.ix.queryCount, shape.qHeads, rows, 1));
}

/** The clock witness of a {@linkcode verifyAndTime} call (see `VerifyTimeOptions.leadUs`). */
export interface ClockWitness {
  /** The reference pass's time before each round, µs. */
  witnessUs: number[];
}

/**
 * The clock witness's verdict: the median reference time over the fastest, as a clock fraction
 * (1: every round at the best clock seen; 0.5: half speed). Null without samples.
 */
export function witnessFraction(w: ClockWitness): number | null {
  if (w.witnessUs.length === 0) return null;
  return Math.min(...w.witnessUs) / median(w.witnessUs);
}

/** The witness in words for a tool's tree heading: its median time and the best round's speed. */
export function describeWitness(w: ClockWitness): string {
  const clock = witnessFraction(w);
  return clock === null
    ? "-"
    : `${median(w.witnessUs).toFixed(1)} us (best round at ${
      (100 / clock).toFixed(0)
    }% of that speed)`;
}

/**
 * Checks every variant, then times those that passed; one result per variant, in order. With
 * `o.leadUs`, `witness` (when given) gets the reference times of the rounds.
 */
export async function verifyAndTime(
  problem: Problem,
  timer: Timer,
  variants: readonly ToolVariant[],
  o: VerifyTimeOptions,
  witness?: ClockWitness,
): Promise<ToolResult[]> {
  const gpu = problem.gpu;
  const ref = toolReference(problem, o.rows);
  const results: ToolResult[] = [];
  const live: {
    result: ToolResult;
    prepared: PreparedMethod;
    encode: (pass: GPUComputePassEncoder) => void;
    times: number[];
  }[] = [];
  const cleanups: (() => void)[] = [];
  try {
    for (const v of variants) {
      const result: ToolResult = {
        label: v.label,
        status: "ok",
        message: null,
        plan: null,
        verdict: null,
        samplesUs: [],
        medianUs: null,
        minUs: null,
        usefulTflops: null,
      };
      results.push(result);
      let prepared: PreparedMethod | null = null;
      try {
        const plan = problem.plan(v.method, v.options ?? {});
        result.plan = plan;
        prepared = await gpu.scoped(
          `Preparing ${v.label}`,
          () => v.method.prepare(gpu, plan, problem.buffers),
        );
        const output = await runPrepared(problem, prepared, v.label);
        const verdict = verify(output, ref, problem.data.shape, problem.data.dtype);
        result.verdict = verdict;
        if (!verdict.passed && v.timeOnly) {
          result.message = "timed only (wrong by design)";
        } else if (!verdict.passed) {
          result.status = "wrong";
          result.message = verdictProblems(verdict).join(", ");
          o.log?.(`  ${v.label}: WRONG ${result.message}`);
          prepared.destroy();
          continue;
        }
        let encode = prepared.encode;
        if (v.part !== undefined) {
          const part = prepared.parts?.find((p) => p.name === v.part);
          if (!part) {
            throw new Error(
              `${v.label}: the method has no part ${JSON.stringify(v.part)} (parts: ${
                prepared.parts?.map((p) => p.name).join(", ") || "none"
              })`,
            );
          }
          encode = part.encode;
        }
        live.push({ result, prepared, encode, times: [] });
      } catch (e) {
        result.status = "error";
        result.message = (e as Error).message;
        prepared?.destroy();
        o.log?.(`  ${v.label}: ${result.message}`);
      }
    }
    if (live.length === 0) return results;
    if ((o.spinMs ?? 0) > 0) {
      const spin: PassSpec[] = Array.from({ length: 200 }, () => ({
        label: "spin",
        encode: live[0]!.prepared.encode,
        timed: false,
      }));
      const t = performance.now();
      while (performance.now() - t < o.spinMs!) await timer.time(spin);
    }
    const passes: PassSpec[] = [];
    const owner: number[] = [];
    // The lead: ~40 us passes of 1024 busy workgroups; the witness: one wave of 32.
    const lead = (o.leadUs ?? 0) > 0
      ? await busyPass(gpu, { workgroups: 1024, iterations: 10000 })
      : null;
    const probe = lead ? await busyPass(gpu, { workgroups: 32, iterations: 4000 }) : null;
    cleanups.push(() => lead?.destroy(), () => probe?.destroy());
    for (let round = 0; round < o.warmup + o.samples; round++) {
      if (lead && probe) {
        for (let k = 0; k < Math.ceil(o.leadUs! / 40); k++) {
          passes.push({ label: "lead", encode: lead.encode, timed: false });
          owner.push(-1);
        }
        passes.push({ label: "witness", encode: probe.encode, timed: round >= o.warmup });
        owner.push(-2);
      }
      live.forEach((l, i) => {
        if (o.flush) {
          passes.push({ label: o.flush.label, encode: o.flush.encode, timed: false });
          owner.push(-1);
        }
        passes.push({
          label: l.result.label,
          encode: l.encode,
          timed: round >= o.warmup,
        });
        owner.push(i);
      });
    }
    try {
      const ns = await timer.time(passes);
      ns.forEach((x, k) => {
        if (x !== null && owner[k]! >= 0) live[owner[k]!]!.times.push(x / 1e3);
        if (x !== null && owner[k] === -2) witness?.witnessUs.push(x / 1e3);
      });
    } catch (e) {
      for (const l of live) {
        l.result.status = "error";
        l.result.message = `timing: ${(e as Error).message}`;
      }
      return results;
    }
    for (const l of live) {
      const r = l.result;
      r.samplesUs = l.times;
      if (l.times.length === 0) continue;
      r.medianUs = median(l.times);
      r.minUs = Math.min(...l.times);
      r.usefulTflops = r.plan!.counts.usefulFlops / (r.medianUs * 1e-6) / 1e12;
    }
    return results;
  } finally {
    for (const l of live) l.prepared.destroy();
    for (const c of cleanups) c();
  }
}

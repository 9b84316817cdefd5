/**
 * Measuring at working clocks. A GPU lowers its clocks when idle, and a benchmark of short batches
 * with host gaps between them can keep it idle enough to run at a third of its speed without any
 * sign in the samples themselves. Four defences, all driven through the {@linkcode Timer}:
 *
 * - **Spin-up** ({@linkcode ClockGuard.spinUp}): before each group of cases, batches of a busy
 *   reference kernel, long enough to keep the GPU loaded, until its per-pass time has stabilised
 *   (and, when the working speed is known, reached it), timed by the same timer as the cases.
 *   A spin-up that runs out of time before the working speed makes the later ones aim at the best
 *   speed the run has measured, never at a merely flat reference: an idle clock is flat too (an
 *   H200 idles at 345 of its 1980 MHz).
 * - **Lead**: every batch opens with one timed reference pass (the probe: was the GPU at speed?)
 *   and then the reference repeated, untimed, for `leadNs` of GPU time, so the GPU is at its clock
 *   when the cases start; the lead doubles when the first reference after it is still slow and
 *   halves when the probe was already at speed.
 * - **Reference beside the cases**: a reference point (consecutive reference passes, as many as
 *   make a quarter of a typical sample of the group, the fastest of them counting) before every
 *   round of a batch and after the last; each sample takes the faster of the points around it (a
 *   clock drop shows in both, a one-off stall of the host in one). Every reference pass has the
 *   same shape (`size.repetitions` dispatches), since the time per dispatch depends on how many
 *   share a pass. Compared with the working speed (the calibrated speed of the same pass, or the
 *   best this run saw), the median over a case's samples gives its clock fraction, and a case below
 *   {@linkcode LOW_CLOCK_FRACTION} is flagged `lowClock`.
 * - **Retry**: a round of the measurement loop with a sample bracketed below that fraction is
 *   dropped, the GPU spun up again and the round taken again, at most
 *   `MAX_LOW_CLOCK_RETRIES` times per group (`measure.ts`); the samples dropped are counted.
 *
 * Where `nvidia-smi` exists, {@linkcode SmiSampler} reads the SM clock every 250 ms during the run.
 *
 * @module
 */

import type { Gpu } from "../kernels/gpu.ts";
import { median } from "../results/stats.ts";
import type { ClockReferenceCalibration } from "../results/schema.ts";
import { BUSY_WGSL, busyPass, type PassSpec, type Timer } from "./timer.ts";

/** A reference point lasts about this share of a typical sample of its group. */
const REFERENCE_SHARE = 0.25;
/** Most passes in one reference point. */
const MAX_POINT_PASSES = 16;

/** Most batches of one spin-up, whatever the clock says. */
const MAX_SPIN_UP_BATCHES = 64;

/** A case measured below this fraction of the adapter's working speed is flagged. */
export const LOW_CLOCK_FRACTION = 0.9;

/** Identifies the reference kernel's source, so a calibration of another kernel is not used. */
export const REFERENCE_KERNEL = `busy-${fnv32(BUSY_WGSL).toString(16).padStart(8, "0")}`;

/** Workgroups of the reference kernel (one wave on any GPU; timing then follows the clock). */
export const REFERENCE_WORKGROUPS = 32;

function fnv32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** What a measurement loop needs of a clock guard (see `measureInterleaved`). */
export interface BatchClock {
  /**
   * The passes of one reference point, for samples of about `sampleNs` each: timed between the
   * rounds of a batch and after its last round; the point's time is the fastest of them.
   */
  reference(sampleNs: number): PassSpec[];
  /** Reference points between rounds too (timestamps), or only after the batch (wall clock). */
  readonly perRound: boolean;
  /** Brings the GPU to its working clock before a group of cases. */
  spinUp(): Promise<SpinUp>;
  /** Passes that open every batch: a timed probe of the reference, then the untimed lead. */
  opening(): PassSpec[];
  /** Told the probe's time and each reference point's time of a batch (in batch order). */
  observe(probeNs: number | null, pointsNs: readonly (number | null)[]): void;
  /**
   * Is a reference time of `ns` per dispatch below {@linkcode LOW_CLOCK_FRACTION} of the working
   * speed? (False while no working speed is known.) The measurement loop takes such a round again.
   */
  isLow(ns: number): boolean;
}

/** Outcome of one spin-up. */
export interface SpinUp {
  /** Wall time it took, ms. */
  ms: number;
  batches: number;
  /** The reference's per-pass time stopped changing (and reached the working speed if known). */
  stable: boolean;
  /** Median per-pass time of the last half of the last batch, ns. */
  ns: number;
}

/** Options of {@linkcode ClockGuard}. */
export interface ClockGuardOptions {
  /**
   * Calibrated time of one dispatch of this very reference (same kernel, size and timing mode),
   * ns: the adapter's working speed.
   */
  calibratedNs?: number | null;
  /** Expected time of one dispatch before anything is measured, ns (sizes the spin-up). */
  expectedNs?: number;
  /** Clock in ms (default `performance.now`). */
  now?: () => number;
  /** Longest spin-up, ms (default 1500 with timestamps, 600 with the wall clock). */
  spinUpMaxMs?: number;
  /** GPU time of one spin-up batch, ns (default 30 ms). */
  spinUpBatchNs?: number;
  /** Relative change of the reference that still counts as stable (default 0.02). */
  stableTolerance?: number;
  /** First lead, and its bounds, ns (defaults 2 ms, 0.5 ms, 50 ms). */
  leadNs?: number;
  minLeadNs?: number;
  maxLeadNs?: number;
}

/** Settings of a reference pass: the busy kernel's size and repetitions per timed pass. */
export interface ReferenceSize {
  workgroups: number;
  iterations: number;
  repetitions: number;
  /** Time of one dispatch when sized, ns (0: unknown). */
  expectedNs: number;
}

/**
 * The clock guard of a run: owns the reference pass, spins the GPU up, sizes the lead, and knows
 * the working speed (the calibrated per-pass time, lowered to the best this run measured).
 */
export class ClockGuard implements BatchClock {
  /** One reference pass as calibrated (`size.repetitions` dispatches): every timed one. */
  readonly base: PassSpec;
  readonly size: ReferenceSize;
  readonly perRound: boolean;
  readonly calibratedNs: number | null;
  readonly spinUps: SpinUp[] = [];
  /** Lead length now, ns (timestamps only). */
  leadNs: number;
  readonly #timer: Timer;
  readonly #now: () => number;
  readonly #o: Required<Omit<ClockGuardOptions, "calibratedNs" | "now" | "leadNs">>;
  #bestNs: number | null = null;
  /**
   * A spin-up ran out of time before the working speed: later spin-ups aim at the best speed this
   * run measured instead (never at a merely flat one, which an idle clock also is).
   */
  #unreachable = false;
  #destroy: () => void;

  /** Wraps `pass` (the reference kernel, one dispatch per repetition) for `timer`. */
  constructor(
    timer: Timer,
    pass: PassSpec,
    size: ReferenceSize,
    options: ClockGuardOptions = {},
    destroy: () => void = () => {},
  ) {
    this.#timer = timer;
    this.#now = options.now ?? (() => performance.now());
    this.perRound = timer.mode === "timestamp";
    this.size = size;
    this.base = {
      label: "clock reference",
      encode: pass.encode,
      repetitions: size.repetitions,
    };
    this.calibratedNs = options.calibratedNs && options.calibratedNs > 0
      ? options.calibratedNs
      : null;
    this.#o = {
      expectedNs: options.expectedNs ?? 0,
      spinUpMaxMs: options.spinUpMaxMs ?? (this.perRound ? 1500 : 600),
      spinUpBatchNs: options.spinUpBatchNs ?? 30e6,
      stableTolerance: options.stableTolerance ?? 0.02,
      minLeadNs: options.minLeadNs ?? 0.5e6,
      maxLeadNs: options.maxLeadNs ?? 50e6,
    };
    this.leadNs = Math.min(this.#o.maxLeadNs, Math.max(this.#o.minLeadNs, options.leadNs ?? 2e6));
    this.#destroy = destroy;
  }

  /**
   * Time of one dispatch of the reference at the adapter's working speed, ns (timers return time
   * per repetition, and a reference pass repeats the dispatch `size.repetitions` times): the
   * calibrated time, or a faster one this run measured (a batch median); null before anything was
   * measured.
   */
  get workingNs(): number | null {
    const c = this.calibratedNs, b = this.#bestNs;
    return c === null ? b : b === null ? c : Math.min(c, b);
  }

  /** Where the working speed comes from. */
  get workingSource(): "calibration" | "run" | null {
    const w = this.workingNs;
    return w === null ? null : w === this.calibratedNs ? "calibration" : "run";
  }

  /** Speed of a reference dispatch that took `ns` over the working speed (1: at working speed). */
  fraction(ns: number): number | null {
    const w = this.workingNs;
    return w === null || !(ns > 0) ? null : w / ns;
  }

  #learn(values: readonly number[]): void {
    if (values.length === 0) return;
    const m = median(values);
    if (m > 0 && (this.#bestNs === null || m < this.#bestNs)) this.#bestNs = m;
  }

  async spinUp(): Promise<SpinUp> {
    const t0 = this.#now();
    const passNs = (this.workingNs ?? this.#o.expectedNs) * this.size.repetitions;
    const n = this.perRound
      ? Math.max(4, Math.min(512, passNs > 0 ? Math.ceil(this.#o.spinUpBatchNs / passNs) : 16))
      : 2;
    const tol = this.#o.stableTolerance;
    // Without a known working speed, flat means two batches in a row at the same speed.
    const known = this.workingNs !== null;
    let previous: number | null = null;
    let batches = 0;
    let stable = false;
    let ns = 0;
    for (;;) {
      const values = (await this.#timer.time(Array.from({ length: n }, () => this.base)))
        .filter((v): v is number => v !== null && v > 0);
      batches++;
      if (values.length > 0) {
        const half = Math.max(1, Math.floor(values.length / 2));
        const head = median(values.slice(0, values.length - half));
        ns = median(values.slice(values.length - half));
        // Flat within the batch (when it has two halves) and against the batch before.
        const flat = (values.length < 2 || Math.abs(ns / head - 1) <= tol) &&
          (previous === null ? known : Math.abs(ns / previous - 1) <= tol);
        // The target: the working speed, or the best this run reached once that proved out of
        // reach (a flat reference alone would accept a clock that idles at a fifth of its speed).
        const w = this.#unreachable ? this.#bestNs : this.workingNs;
        const reached = w === null || ns <= w / (1 - 2 * tol);
        this.#learn(values.slice(values.length - half));
        if (flat && reached) {
          stable = true;
          break;
        }
        previous = ns;
      }
      // A clock that does not move (or a timer that returns nothing) still ends the spin-up.
      if (!(this.#now() - t0 < this.#o.spinUpMaxMs) || batches >= MAX_SPIN_UP_BATCHES) {
        // The working speed was out of reach: later spin-ups settle for the best this run saw.
        if (!stable) this.#unreachable = true;
        break;
      }
    }
    const s: SpinUp = { ms: this.#now() - t0, batches, stable, ns };
    this.spinUps.push(s);
    return s;
  }

  reference(sampleNs: number): PassSpec[] {
    const per = (this.workingNs ?? this.#o.expectedNs) * this.size.repetitions;
    const n = this.perRound && per > 0 && sampleNs > 0
      ? Math.max(1, Math.min(MAX_POINT_PASSES, Math.ceil((REFERENCE_SHARE * sampleNs) / per)))
      : 1;
    return Array.from({ length: n }, () => this.base);
  }

  opening(): PassSpec[] {
    if (!this.perRound) return [];
    const per = this.workingNs ?? this.#o.expectedNs;
    const repetitions = per > 0 ? Math.max(1, Math.min(1 << 16, Math.ceil(this.leadNs / per))) : 1;
    return [
      { ...this.base, label: "clock probe" },
      { label: "clock lead", encode: this.base.encode, repetitions, timed: false },
    ];
  }

  observe(probeNs: number | null, pointsNs: readonly (number | null)[]): void {
    const points = pointsNs.filter((v): v is number => v !== null && v > 0);
    this.#learn(points);
    if (!this.perRound || points.length === 0) return;
    const first = pointsNs[0];
    const f0 = first ? this.fraction(first) : null;
    const fp = probeNs !== null && probeNs > 0 ? this.fraction(probeNs) : null;
    if (f0 !== null && f0 < 1 - 2.5 * this.#o.stableTolerance) {
      this.leadNs = Math.min(this.#o.maxLeadNs, this.leadNs * 2);
    } else if (fp !== null && fp >= 1 - 1.5 * this.#o.stableTolerance) {
      // Already at speed before the lead: a shorter one does.
      this.leadNs = Math.max(this.#o.minLeadNs, this.leadNs / 2);
    }
  }

  isLow(ns: number): boolean {
    const f = this.fraction(ns);
    return f !== null && f < LOW_CLOCK_FRACTION;
  }

  /** Frees the reference kernel's buffer. */
  destroy(): void {
    this.#destroy();
  }
}

/** Options of {@linkcode createClockGuard}. */
export interface CreateClockGuardOptions extends ClockGuardOptions {
  /** A calibrated reference; used when its kernel and timing mode match. */
  calibrated?: ClockReferenceCalibration | null;
  /** GPU time one reference pass aims for, ns (default 100 µs; wall clock: 1 ms per dispatch). */
  targetNs?: number;
}

/**
 * Builds the run's clock guard on `gpu`: the reference kernel sized for `timer` (or as calibrated,
 * when the calibration used the same kernel and timing mode, whose per-pass time then sets the
 * working speed).
 */
export async function createClockGuard(
  gpu: Gpu,
  timer: Timer,
  options: CreateClockGuardOptions = {},
): Promise<ClockGuard> {
  const cal = options.calibrated;
  const usable = cal && cal.kernel === REFERENCE_KERNEL && cal.timingMode === timer.mode &&
      cal.nsPerDispatch > 0
    ? cal
    : null;
  const size: ReferenceSize = usable
    ? {
      workgroups: usable.workgroups,
      iterations: usable.iterations,
      repetitions: usable.repetitions,
      expectedNs: usable.nsPerDispatch,
    }
    : await sizeReference(gpu, timer, options.targetNs);
  const pass = await busyPass(gpu, { workgroups: size.workgroups, iterations: size.iterations });
  return new ClockGuard(
    timer,
    pass,
    size,
    {
      ...options,
      calibratedNs: usable?.nsPerDispatch ?? null,
      expectedNs: options.expectedNs ?? size.expectedNs,
    },
    () => pass.destroy(),
  );
}

/**
 * Sizes the reference: iterations of the busy kernel for `targetNs` per dispatch (timestamps:
 * 100 µs; wall clock: 1 ms, repeated to the timer's shortest sample).
 */
export async function sizeReference(
  gpu: Gpu,
  timer: Timer,
  targetNs?: number,
): Promise<ReferenceSize> {
  const target = targetNs ?? (timer.mode === "timestamp" ? 1e5 : 1e6);
  const probeIterations = 4096;
  const probe = await busyPass(gpu, {
    workgroups: REFERENCE_WORKGROUPS,
    iterations: probeIterations,
  });
  try {
    const reps = timer.minSampleNs > 0 && timer.mode !== "timestamp" ? 8 : 1;
    const spec = { ...probe, repetitions: reps };
    // Time the probe a few times (the first pays any warm-up) and keep the fastest.
    const t = (await timer.time([spec, spec, spec, spec])).slice(1)
      .filter((v): v is number => v !== null && v > 0);
    const ns = t.length > 0 ? Math.min(...t) : 0;
    const iterations = ns > 0
      ? Math.max(16, Math.min(1 << 24, Math.round((probeIterations * target) / ns)))
      : probeIterations;
    const perDispatch = ns > 0 ? (ns * iterations) / probeIterations : target;
    const repetitions = timer.minSampleNs > 0 && timer.mode !== "timestamp"
      ? Math.max(1, Math.min(1 << 12, Math.ceil(timer.minSampleNs / perDispatch)))
      : 1;
    return {
      workgroups: REFERENCE_WORKGROUPS,
      iterations,
      repetitions,
      expectedNs: ns > 0 ? perDispatch : 0,
    };
  } finally {
    probe.destroy();
  }
}

/** Measures a calibrated reference (after a spin-up): one dispatch's time at the working clock. */
export async function calibrateReference(
  gpu: Gpu,
  timer: Timer,
  { samples = 20, now }: { samples?: number; now?: () => number } = {},
): Promise<ClockReferenceCalibration> {
  const guard = await createClockGuard(gpu, timer, { now });
  try {
    await guard.spinUp();
    const spec = guard.base;
    const values = (await timer.time(Array.from({ length: samples }, () => spec)))
      .filter((v): v is number => v !== null && v > 0);
    // The calibrated speed is the best sustained one: the median of the spin-up's stable tail
    // or of these samples, whichever is faster.
    const ns = Math.min(
      values.length > 0 ? median(values) : Infinity,
      guard.workingNs ?? Infinity,
    );
    const { workgroups, iterations, repetitions } = guard.size;
    return {
      kernel: REFERENCE_KERNEL,
      timingMode: timer.mode,
      workgroups,
      iterations,
      repetitions,
      nsPerDispatch: Number.isFinite(ns) ? ns : 0,
    };
  } finally {
    guard.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// nvidia-smi

/** One reading of the SM clock. */
export interface SmReading {
  /** When it arrived, ms on the run's clock. */
  atMs: number;
  smMHz: number;
  maxSmMHz: number | null;
  /** `clocks_event_reasons.active` as printed (a hex mask), or null. */
  reasons: string | null;
}

/** Fields the sampler asks `nvidia-smi` for, in this order. */
export const SMI_LOOP_FIELDS = "clocks.sm,clocks.max.sm,clocks_event_reasons.active";

/** Parses one line of `--format=csv,noheader,nounits` output of {@linkcode SMI_LOOP_FIELDS}. */
export function parseSmiLoopLine(line: string, atMs: number): SmReading | null {
  const parts = line.split(",").map((s) => s.trim());
  const sm = parseFloat(parts[0] ?? "");
  if (!(sm > 0)) return null;
  const max = parseFloat(parts[1] ?? "");
  const reasons = parts[2] && parts[2] !== "[N/A]" ? parts[2] : null;
  return { atMs, smMHz: sm, maxSmMHz: max > 0 ? max : null, reasons };
}

/**
 * Reads the first GPU's SM clock periodically from a long-running `nvidia-smi --loop-ms` (one
 * process for the whole run, so sampling costs no GPU time and little CPU).
 */
export class SmiSampler {
  readonly readings: SmReading[] = [];
  readonly #done: Promise<void>;
  readonly #stop: () => void;

  /** Collects readings from `lines` (each stamped with `now()` on arrival) until `stop`. */
  constructor(lines: AsyncIterable<string>, now: () => number, stop: () => void = () => {}) {
    this.#stop = stop;
    this.#done = (async () => {
      try {
        for await (const line of lines) {
          const r = parseSmiLoopLine(line, now());
          if (r) this.readings.push(r);
        }
      } catch { /* the process ended or was killed */ }
    })();
  }

  /** Starts `nvidia-smi` (null when it is not installed or cannot run). */
  static start(
    { intervalMs = 250, now = () => performance.now() } = {},
  ): SmiSampler | null {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("nvidia-smi", {
        args: [
          "--id=0",
          `--query-gpu=${SMI_LOOP_FIELDS}`,
          "--format=csv,noheader,nounits",
          `--loop-ms=${intervalMs}`,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
    } catch {
      return null;
    }
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter());
    return new SmiSampler(lines, now, () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      child.status.catch(() => {});
    });
  }

  /** Readings that arrived within [t0, t1] ms. */
  window(t0: number, t1: number): SmReading[] {
    return this.readings.filter((r) => r.atMs >= t0 && r.atMs <= t1);
  }

  /** Stops sampling and waits for the last reading. */
  async stop(): Promise<void> {
    this.#stop();
    await this.#done;
  }
}

function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, ctl) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const p of parts) if (p.trim() !== "") ctl.enqueue(p);
    },
    flush(ctl) {
      if (rest.trim() !== "") ctl.enqueue(rest);
    },
  });
}

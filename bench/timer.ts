/**
 * GPU timers. A timer runs a batch of compute passes in order and returns the GPU time of each
 * timed pass, divided by the repetitions recorded inside it.
 *
 * - {@linkcode TimestampTimer}: begin/end `timestampWrites` on every timed pass, all passes of a
 *   batch in one command buffer, one `resolveQuerySet` and one `mapAsync` per batch (Deno pays a
 *   ~11 ms poll floor per await, so it is paid once per batch, never per sample).
 * - {@linkcode WallClockTimer}: the fallback without `timestamp-query`: every sample is one submit
 *   of many repetitions inside one pass, timed from submit to `onSubmittedWorkDone`, minus the
 *   measured floor of an empty submit. Coarse; results say so (`settings.timing.mode`).
 * - {@linkcode FakeTimer}: deterministic samples and a fake clock, for tests.
 *
 * @module
 */

import { type Gpu, GpuError } from "../kernels/gpu.ts";
import { median } from "../results/stats.ts";
import type { TimingSettings } from "../results/schema.ts";

/** How samples are taken. */
export type TimingMode = TimingSettings["mode"];

/** One compute pass of a batch. */
export interface PassSpec {
  /** Names the pass in GPU labels (and selects the fake timer's distribution). */
  label: string;
  /** Records the work into the pass. */
  encode(pass: GPUComputePassEncoder): void;
  /** Times `encode` is recorded inside the pass (default 1); the sample is divided by it. */
  repetitions?: number;
  /** False for passes that are not measured, such as the cold-cache flush (default true). */
  timed?: boolean;
}

/** A timer: runs passes in order and returns ns per repetition of each timed pass. */
export interface Timer {
  readonly mode: TimingMode;
  /**
   * Shortest sample (ns) worth taking with this timer; the measurement loop raises the repetitions
   * until one sample lasts this long (0: any).
   */
  readonly minSampleNs: number;
  /** Samples discarded so far (non-positive timestamp deltas). */
  readonly discarded: number;
  /**
   * Runs `passes` in order; returns, aligned with `passes`, the GPU ns per repetition of every
   * timed pass, or null for untimed passes and discarded samples.
   */
  time(passes: readonly PassSpec[]): Promise<(number | null)[]>;
  /** Frees the timer's GPU objects. */
  destroy(): void;
}

function reps(p: PassSpec): number {
  const r = p.repetitions ?? 1;
  if (!Number.isSafeInteger(r) || r < 1) {
    throw new RangeError(`Pass ${p.label}: repetitions must be a positive integer, got ${r}`);
  }
  return r;
}

function record(
  enc: GPUCommandEncoder,
  p: PassSpec,
  timestampWrites?: GPUComputePassTimestampWrites,
) {
  const pass = enc.beginComputePass({ label: p.label, timestampWrites });
  const n = reps(p);
  for (let i = 0; i < n; i++) p.encode(pass);
  pass.end();
}

/** Largest query set WebGPU allows (and Deno's wgpu accepts). */
export const MAX_QUERIES = 4096;

/**
 * Timestamp-query timer. Owns a query set of up to 4096 queries; a batch of N timed passes uses 2N
 * queries in one command buffer (larger batches are split into several submits of at most 2048
 * timed passes). Deltas are u64 ticks subtracted as BigInt; non-positive ones (a counter reset,
 * a write that did not happen) are discarded. Ticks are taken as ns times `nsPerTick`.
 */
export class TimestampTimer implements Timer {
  readonly mode = "timestamp" as const;
  readonly minSampleNs: number;
  readonly #gpu: Gpu;
  readonly #capacity: number;
  readonly #querySet: GPUQuerySet;
  readonly #resolve: GPUBuffer;
  readonly #readback: GPUBuffer;
  /** Scale of one tick in ns (1 on every backend Deno ships; see the tick check). */
  nsPerTick = 1;
  #discarded = 0;

  /** Creates the query set and its resolve/readback buffers; needs `timestamp-query`. */
  constructor(gpu: Gpu, { queries = MAX_QUERIES, minSampleNs = 0 } = {}) {
    if (!gpu.hasTimestamps) {
      throw new GpuError(
        `The adapter (${gpu.info.description}) has no timestamp-query; use the wall-clock timer`,
      );
    }
    if (!Number.isSafeInteger(queries) || queries < 2 || queries > MAX_QUERIES) {
      throw new RangeError(`Query count must be in [2, ${MAX_QUERIES}], got ${queries}`);
    }
    this.#gpu = gpu;
    this.#capacity = Math.floor(queries / 2);
    this.minSampleNs = minSampleNs;
    const d = gpu.device;
    this.#querySet = d.createQuerySet({ label: "timer", type: "timestamp", count: queries });
    this.#resolve = d.createBuffer({
      label: "timer resolve",
      size: queries * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.#readback = d.createBuffer({
      label: "timer readback",
      size: queries * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  get discarded(): number {
    return this.#discarded;
  }

  /** Timed passes one submit can hold. */
  get passesPerSubmit(): number {
    return this.#capacity;
  }

  async time(passes: readonly PassSpec[]): Promise<(number | null)[]> {
    const out: (number | null)[] = new Array(passes.length).fill(null);
    let start = 0;
    while (start < passes.length) {
      // Take passes until the query set is full; untimed passes ride along with their neighbours.
      let end = start, timed = 0;
      while (end < passes.length && (passes[end]!.timed === false || timed < this.#capacity)) {
        if (passes[end]!.timed !== false) timed++;
        end++;
      }
      await this.#chunk(passes, start, end, timed, out);
      start = end;
    }
    return out;
  }

  async #chunk(
    passes: readonly PassSpec[],
    start: number,
    end: number,
    timed: number,
    out: (number | null)[],
  ): Promise<void> {
    const gpu = this.#gpu;
    const slots: number[] = [];
    await gpu.scoped("Recording timed passes", () => {
      const enc = gpu.device.createCommandEncoder({ label: "timed batch" });
      let q = 0;
      for (let i = start; i < end; i++) {
        const p = passes[i]!;
        if (p.timed === false) {
          record(enc, p);
          continue;
        }
        record(enc, p, {
          querySet: this.#querySet,
          beginningOfPassWriteIndex: 2 * q,
          endOfPassWriteIndex: 2 * q + 1,
        });
        slots.push(i);
        q++;
      }
      if (timed > 0) {
        enc.resolveQuerySet(this.#querySet, 0, 2 * timed, this.#resolve, 0);
        enc.copyBufferToBuffer(this.#resolve, 0, this.#readback, 0, 16 * timed);
      }
      gpu.device.queue.submit([enc.finish()]);
    });
    if (timed === 0) {
      await gpu.idle();
      return;
    }
    await gpu.guard(this.#readback.mapAsync(GPUMapMode.READ, 0, 16 * timed), "reading timestamps");
    try {
      const ticks = new BigUint64Array(this.#readback.getMappedRange(0, 16 * timed));
      slots.forEach((i, k) => {
        const delta = ticks[2 * k + 1]! - ticks[2 * k]!;
        if (delta <= 0n) {
          this.#discarded++;
          return;
        }
        out[i] = (Number(delta) * this.nsPerTick) / reps(passes[i]!);
      });
    } finally {
      this.#readback.unmap();
    }
  }

  destroy(): void {
    this.#querySet.destroy();
    this.#resolve.destroy();
    this.#readback.destroy();
  }
}

/** Wall time (ms) of an empty submit plus `onSubmittedWorkDone`: Deno's poll floor. */
export async function submitFloorMs(
  gpu: Gpu,
  { trials = 5, now = () => performance.now() } = {},
): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < trials; i++) {
    const t0 = now();
    gpu.device.queue.submit([gpu.device.createCommandEncoder({ label: "empty" }).finish()]);
    await gpu.idle();
    times.push(now() - t0);
  }
  return median(times);
}

/**
 * Wall-clock fallback: every timed pass is its own submit, timed from submit to
 * `onSubmittedWorkDone` minus the empty-submit floor, divided by its repetitions. Untimed passes
 * run (and finish) before the next timed one. Asks for samples of at least 10x the floor, so the
 * measurement loop packs many repetitions into one submit.
 */
export class WallClockTimer implements Timer {
  readonly mode = "wallclock-batched" as const;
  readonly #gpu: Gpu;
  readonly #now: () => number;
  #floorMs: number | null = null;

  /** Creates the timer; the floor is measured on first use. */
  constructor(gpu: Gpu, { now = () => performance.now() } = {}) {
    this.#gpu = gpu;
    this.#now = now;
  }

  get discarded(): number {
    return 0;
  }

  get minSampleNs(): number {
    return 10 * (this.#floorMs ?? 11) * 1e6;
  }

  /** The measured submit floor in ms (null before first use). */
  get floorMs(): number | null {
    return this.#floorMs;
  }

  async time(passes: readonly PassSpec[]): Promise<(number | null)[]> {
    const gpu = this.#gpu;
    this.#floorMs ??= await submitFloorMs(gpu, { now: this.#now });
    const out: (number | null)[] = [];
    for (const p of passes) {
      const enc = gpu.device.createCommandEncoder({ label: p.label });
      await gpu.scoped(`Recording ${p.label}`, () => record(enc, p));
      const t0 = this.#now();
      gpu.device.queue.submit([enc.finish()]);
      await gpu.idle();
      const ms = this.#now() - t0;
      out.push(p.timed === false ? null : (Math.max(0, ms - this.#floorMs) * 1e6) / reps(p));
    }
    return out;
  }

  destroy(): void {}
}

/** A clock that only moves when told to (ms, like `performance.now`). */
export class FakeClock {
  /** Current time in ms. */
  ms = 0;
  /** Reads the clock. */
  readonly now = (): number => this.ms;
  /** Moves the clock forward. */
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** Options of {@linkcode FakeTimer}. */
export interface FakeTimerOptions {
  /** ns per repetition of the i-th timed sample of a pass label. */
  sample: (label: string, i: number) => number;
  /** Clock advanced by the work of each batch (plus `overheadMs` per batch). */
  clock?: FakeClock;
  overheadMs?: number;
  mode?: TimingMode;
  minSampleNs?: number;
}

/** A timer without a GPU: samples come from a function, time passes on a fake clock. */
export class FakeTimer implements Timer {
  readonly mode: TimingMode;
  readonly minSampleNs: number;
  readonly discarded = 0;
  /** Every batch as received (labels), for assertions on ordering. */
  readonly batches: string[][] = [];
  readonly #opts: FakeTimerOptions;
  readonly #counts = new Map<string, number>();

  /** Creates the fake. */
  constructor(opts: FakeTimerOptions) {
    this.#opts = opts;
    this.mode = opts.mode ?? "timestamp";
    this.minSampleNs = opts.minSampleNs ?? 0;
  }

  time(passes: readonly PassSpec[]): Promise<(number | null)[]> {
    this.batches.push(passes.map((p) => p.label));
    let ns = 0;
    const out = passes.map((p) => {
      if (p.timed === false) return null;
      const i = this.#counts.get(p.label) ?? 0;
      this.#counts.set(p.label, i + 1);
      const v = this.#opts.sample(p.label, i);
      ns += v * reps(p);
      return v;
    });
    this.#opts.clock?.advance(ns / 1e6 + (this.#opts.overheadMs ?? 0));
    return Promise.resolve(out);
  }

  destroy(): void {}
}

/**
 * Creates the timestamp timer when the device has timestamps (asking for samples of at least
 * `minSampleNs`), else the wall-clock fallback.
 */
export function createTimer(gpu: Gpu, { minSampleNs = 0 } = {}): Timer {
  return gpu.hasTimestamps ? new TimestampTimer(gpu, { minSampleNs }) : new WallClockTimer(gpu);
}

/** WGSL of a busy loop: `iterations` dependent multiply-adds per invocation. */
export const BUSY_WGSL = `
override ITERATIONS: u32 = 1000u;
@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  var x = f32(g.x) * 1e-3;
  for (var i = 0u; i < ITERATIONS; i++) { x = fma(x, 0.999, 0.5); }
  sink[g.x] = x;
}`;

/** A pass of busy work (for tick checks and timer tests); destroy frees its buffer. */
export async function busyPass(
  gpu: Gpu,
  { workgroups = 16, iterations = 1000 } = {},
): Promise<PassSpec & { destroy(): void }> {
  const pipeline = await gpu.pipeline("busy", BUSY_WGSL, { ITERATIONS: iterations });
  const sink = gpu.buffer("busy sink", workgroups * 64 * 4);
  const bindGroup = gpu.device.createBindGroup({
    label: "busy",
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: sink } }],
  });
  return {
    label: "busy",
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups);
    },
    destroy: () => sink.destroy(),
  };
}

/** Result of {@linkcode checkTicks}. */
export interface TickCheck {
  /** Timestamp delta / (wall time - submit floor): near 1 when ticks are nanoseconds. */
  ratio: number;
  timestampNs: number;
  wallNs: number;
  floorMs: number;
  repetitions: number;
  /** Timings taken; the result is the one whose wall time was least inflated (highest ratio). */
  trials: number;
}

/**
 * The tick check: one long pass (repetitions of `work` raised until it lasts `targetMs` of wall
 * time beyond the submit floor) is timed by its timestamps and by the wall clock around the same
 * submit. A ratio far from 1 means timestamp ticks are not nanoseconds.
 *
 * The wall clock can only overstate a pass: the host's submit of many dispatches (Dawn translates
 * a command buffer into Vulkan at submit) and late completion callbacks add to it, never take
 * away. So the pass, once long enough, is timed `trials` times and the highest ratio is kept. On an
 * H200 under Dawn one 60 ms pass read 0.25 and the next 0.84 (run 68); keep `work` heavy per
 * dispatch, so that few dispatches make the pass.
 */
export async function checkTicks(
  gpu: Gpu,
  work: PassSpec,
  { targetMs = 100, maxRepetitions = 1 << 16, trials = 3, now = () => performance.now() } = {},
): Promise<TickCheck> {
  if (!gpu.hasTimestamps) throw new GpuError("The tick check needs timestamp-query");
  const d = gpu.device;
  const querySet = d.createQuerySet({ label: "tick check", type: "timestamp", count: 2 });
  const resolve = d.createBuffer({
    label: "tick resolve",
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const readback = d.createBuffer({
    label: "tick readback",
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const floorMs = await submitFloorMs(gpu, { now });
    /** One pass of `repetitions`, timed both ways: [timestamp ns, wall ms beyond the floor]. */
    const time = async (repetitions: number): Promise<[number, number]> => {
      const enc = d.createCommandEncoder({ label: "tick check" });
      record(enc, { ...work, repetitions }, {
        querySet,
        beginningOfPassWriteIndex: 0,
        endOfPassWriteIndex: 1,
      });
      enc.resolveQuerySet(querySet, 0, 2, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, readback, 0, 16);
      const cmd = enc.finish();
      const t0 = now();
      d.queue.submit([cmd]);
      await gpu.idle();
      const wallMs = now() - t0;
      await gpu.guard(readback.mapAsync(GPUMapMode.READ), "reading timestamps");
      const t = new BigUint64Array(readback.getMappedRange());
      const timestampNs = Number(t[1]! - t[0]!);
      readback.unmap();
      return [timestampNs, wallMs - floorMs];
    };
    let repetitions = 1;
    for (;;) {
      const [timestampNs, netMs] = await time(repetitions);
      if (netMs >= targetMs || repetitions >= maxRepetitions) {
        const ratio = (ns: number, ms: number) => ns / (Math.max(ms, 1e-6) * 1e6);
        let best = { timestampNs, netMs };
        for (let i = 1; i < trials; i++) {
          const [ns, ms] = await time(repetitions);
          if (ratio(ns, ms) > ratio(best.timestampNs, best.netMs)) {
            best = { timestampNs: ns, netMs: ms };
          }
        }
        return {
          ratio: ratio(best.timestampNs, best.netMs),
          timestampNs: best.timestampNs,
          wallNs: best.netMs * 1e6,
          floorMs,
          repetitions,
          trials: Math.max(1, trials),
        };
      }
      const grow = netMs > 0 ? Math.ceil((targetMs * 1.2) / netMs) : 64;
      repetitions = Math.min(maxRepetitions, repetitions * Math.min(64, Math.max(2, grow)));
    }
  } finally {
    querySet.destroy();
    resolve.destroy();
    readback.destroy();
  }
}

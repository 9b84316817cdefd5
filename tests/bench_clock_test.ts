import {
  ClockGuard,
  LOW_CLOCK_FRACTION,
  parseSmiLoopLine,
  type ReferenceSize,
  SmiSampler,
} from "../bench/clock.ts";
import { MAX_LOW_CLOCK_RETRIES, measureInterleaved } from "../bench/measure.ts";
import type { ProgressReporter } from "../bench/progress.ts";
import { type BenchConfig, runBench } from "../bench/run.ts";
import { FakeClock, FakeTimer, type PassSpec, type Timer } from "../bench/timer.ts";
import { testGpu } from "./_gpu.ts";
import { DEFAULT_METHOD_OPTIONS } from "../kernels/method.ts";
import { compareExitCode, compareRuns } from "../report/compare.ts";
import { formatMarkdown } from "../report/compare_markdown.ts";
import { parseResults } from "../results/document.ts";
import { renderReport } from "../report/report.ts";
import type { ResultsDocument } from "../results/schema.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { fakeRegistry, TINY_SHAPE } from "./_bench_fake.ts";
import { assert, assertAlmostEquals, assertEquals } from "./_assert.ts";

const nop = () => {};
const SIZE: ReferenceSize = { workgroups: 32, iterations: 1000, repetitions: 1, expectedNs: 1e5 };
/** The reference kernel's time at the working clock in these tests, ns per dispatch. */
const REF_NS = 1e5;

/**
 * A fake GPU whose clock speed (1 = working clock) is a function of the fake time: every pass of a
 * batch, the reference and the cases alike, takes its working time divided by the speed at the
 * batch's start. `work` gives a pass's working time by label.
 */
function fakeGpu(speed: (ms: number) => number, work: (label: string) => number) {
  const clock = new FakeClock();
  const timer = new FakeTimer({
    clock,
    overheadMs: 11, // Deno's poll floor per batch
    sample: (label) => work(label) / speed(clock.ms),
  });
  return { clock, timer };
}

const refWork = (label: string) => (label.startsWith("clock") ? REF_NS : 1e6);

Deno.test("spinUp() runs the reference until its time is stable at the working speed", async () => {
  // The clock ramps from 30 % to 100 % over the first 300 ms, in steps every 25 ms.
  const ramp = (ms: number) => Math.min(1, 0.3 + 0.7 * Math.floor(ms / 25) * 25 / 300);
  const { clock, timer } = fakeGpu(ramp, refWork);
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, {
    calibratedNs: REF_NS,
    now: clock.now,
  });
  const s = await guard.spinUp();
  assert(s.stable, "stable");
  assert(clock.ms >= 300, `stopped at ${clock.ms} ms, before the clock was up`);
  assertAlmostEquals(s.ns, REF_NS, 1);
  assert(s.batches >= 3 && s.batches < 20, `${s.batches} batches`);
  // Each spin-up batch keeps the GPU busy for about 30 ms: longer than the poll floor.
  assert(timer.batches[0]!.length >= 30 * 1e6 / 1e5 / 2, `${timer.batches[0]!.length} passes`);

  // Already at speed: one batch is enough.
  const again = await guard.spinUp();
  assertEquals(again.batches, 1);
  assert(again.stable);
});

Deno.test("spinUp() without a known speed waits for two flat batches; a dead clock still ends", async () => {
  const ramp = (ms: number) => Math.min(1, 0.5 + ms / 400);
  const { clock, timer } = fakeGpu(ramp, refWork);
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, { now: clock.now });
  const s = await guard.spinUp();
  assert(s.stable && clock.ms >= 200, `stopped at ${clock.ms} ms`);
  assertAlmostEquals(guard.workingNs!, REF_NS, 1);
  assertEquals(guard.workingSource, "run");

  // A timer that returns nothing and a clock that never moves: bounded, not stable.
  const stuck = new FakeTimer({ sample: () => NaN });
  const g2 = new ClockGuard(stuck, { label: "ref", encode: nop }, SIZE, { now: () => 0 });
  const s2 = await g2.spinUp();
  assertEquals(s2.stable, false);
  assert(s2.batches <= 64);
});

Deno.test("after a spin-up that missed the working speed, the next one still waits for the best speed seen, not for a flat idle clock", async () => {
  // The calibrated speed is never reached (the GPU peaks at 95 % of it); later the GPU idles at
  // 20 % (flat) for 600 ms before its clock comes back to that 95 %.
  const speed = (ms: number) => (ms >= 5000 && ms < 5600 ? 0.2 : 0.95);
  const { clock, timer } = fakeGpu(speed, refWork);
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, {
    calibratedNs: REF_NS,
    now: clock.now,
  });
  const first = await guard.spinUp();
  assertEquals(first.stable, false);
  assertAlmostEquals(first.ns, REF_NS / 0.95, 1);
  clock.ms = 5000;
  const second = await guard.spinUp();
  assert(second.stable, "stable");
  assert(clock.ms >= 5600, `stopped at ${clock.ms} ms, at the idle clock`);
  assertAlmostEquals(second.ns, REF_NS / 0.95, 1);
  // Once back at that speed, a spin-up ends at once.
  const third = await guard.spinUp();
  assertEquals([third.stable, third.batches], [true, 1]);
});

/**
 * A fake timer whose GPU runs at `speed(k)` during the k-th measurement round it sees (a batch with
 * reference points and case `a`; 0-based) and at its clock otherwise.
 */
function roundSpeedTimer(clock: FakeClock, speed: (round: number) => number): Timer {
  let s = 1;
  let rounds = 0;
  const inner = new FakeTimer({ clock, sample: (label) => refWork(label) / s });
  return {
    mode: inner.mode,
    minSampleNs: inner.minSampleNs,
    discarded: 0,
    time(passes: readonly PassSpec[]) {
      const round = passes.some((p) => p.label === "clock reference") &&
        passes.some((p) => p.label === "a");
      s = round ? speed(rounds++) : 1;
      return inner.time(passes);
    },
    destroy() {},
  };
}

/**
 * Cases `a` and `b`, four samples each, measured with a clock guard on a fake GPU that runs at
 * `speed(k)` of its clock in the k-th measurement round (`roundSpeedTimer`).
 */
async function measureAtRoundSpeeds(speed: (round: number) => number) {
  const clock = new FakeClock();
  const timer = roundSpeedTimer(clock, speed);
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, {
    calibratedNs: REF_NS,
    now: clock.now,
  });
  const cases = [{ key: "a", encode: nop }, { key: "b", encode: nop }];
  const ms = await measureInterleaved(timer, cases, {
    warmupMs: 5,
    budgetMs: 50,
    minSamples: 4,
    maxSamples: 4,
    targetRelativeCi: 0.01,
    now: clock.now,
    clock: guard,
  });
  return { ms, guard };
}

Deno.test("a measurement round at a low clock is dropped and taken again after a new spin-up", async () => {
  // The first round runs at a fifth of the clock, the rest at speed.
  const { ms, guard } = await measureAtRoundSpeeds((k) => (k === 0 ? 0.2 : 1));
  for (const m of ms) {
    assertEquals(m.samplesNs, [1e6, 1e6, 1e6, 1e6]);
    assert(m.referenceNs.every((r) => r === REF_NS), JSON.stringify(m.referenceNs));
    assertEquals(m.retriedSamples, 4);
  }
  assertEquals(guard.spinUps.length, 2); // the group's, and the retry's

  // A clock that stays low: the round is taken again MAX_LOW_CLOCK_RETRIES times, then kept (and
  // flagged by the run), so a slow GPU still ends.
  const slow = await measureAtRoundSpeeds(() => 0.5);
  for (const m of slow.ms) {
    assertEquals(m.samplesNs, [2e6, 2e6, 2e6, 2e6]);
    assertEquals(m.retriedSamples, 4 * MAX_LOW_CLOCK_RETRIES);
  }
  assertEquals(slow.guard.spinUps.length, 1 + MAX_LOW_CLOCK_RETRIES);
});

Deno.test("the lead doubles while the GPU is still slow after it, and shrinks once it is not", () => {
  const timer = new FakeTimer({ sample: () => REF_NS });
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, {
    calibratedNs: REF_NS,
    leadNs: 2e6,
  });
  // A timed probe of one reference pass, then 20 untimed dispatches of 100 us: 2 ms.
  const [probe, lead] = guard.opening();
  assertEquals([probe!.label, probe!.repetitions, probe!.timed], ["clock probe", 1, undefined]);
  assertEquals([lead!.label, lead!.repetitions, lead!.timed], ["clock lead", 20, false]);
  guard.observe(1.5 * REF_NS, [1.4 * REF_NS, REF_NS]);
  assertEquals(guard.leadNs, 4e6);
  guard.observe(1.5 * REF_NS, [1.4 * REF_NS]);
  assertEquals(guard.leadNs, 8e6);
  // Slow before the lead, at speed after it: the lead is as long as it needs to be.
  guard.observe(1.5 * REF_NS, [REF_NS, REF_NS]);
  assertEquals(guard.leadNs, 8e6);
  // At speed already at the probe: the GPU was at its clock, so a shorter lead does.
  guard.observe(REF_NS, [REF_NS, REF_NS]);
  assertEquals(guard.leadNs, 4e6);
  for (let i = 0; i < 20; i++) guard.observe(REF_NS, [REF_NS]);
  assertEquals(guard.leadNs, 0.5e6);
  for (let i = 0; i < 20; i++) guard.observe(2 * REF_NS, [2 * REF_NS]);
  assertEquals(guard.leadNs, 50e6);
  // A reference faster than the calibration lowers the working time.
  guard.observe(null, [0.9 * REF_NS, 0.9 * REF_NS]);
  assertEquals(guard.workingNs, 0.9 * REF_NS);
  assertEquals(guard.workingSource, "run");
});

Deno.test("measureInterleaved() brackets every sample with the reference, and leads each batch", async () => {
  // Full speed for 2 s of fake time, then half speed.
  const { clock, timer } = fakeGpu((ms) => (ms < 2000 ? 1 : 0.5), refWork);
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, {
    calibratedNs: REF_NS,
    now: clock.now,
  });
  const opts = {
    warmupMs: 5,
    budgetMs: 50,
    minSamples: 4,
    maxSamples: 8,
    targetRelativeCi: 0.01,
    now: clock.now,
    clock: guard,
  };
  const cases = [{ key: "a", encode: nop }, { key: "b", encode: nop }];
  const before = await measureInterleaved(timer, cases, opts);
  for (const m of before) {
    assertEquals(m.referenceNs.length, m.samplesNs.length);
    assert(m.referenceNs.every((r) => r === REF_NS), JSON.stringify(m.referenceNs));
  }
  // Every measured batch: the probe and the lead, then a reference point before each round and
  // one after the last, each as long as a quarter of a typical sample (1 ms): 3 passes of 100 us.
  const round = timer.batches.find((b) => b.includes("clock reference") && b.includes("a"))!;
  const ref = "clock reference";
  assertEquals(round.slice(0, 7), ["clock probe", "clock lead", ref, ref, ref, "a", "b"]);
  assertEquals(round.slice(-3), [ref, ref, ref]);
  assertEquals(
    round.filter((l) => l === ref).length,
    3 * (round.filter((l) => l === "a").length + 1),
  );
  // Every reference pass has the calibrated shape: per-dispatch times depend on it.
  assert(guard.reference(1e6).every((p) => p.repetitions === SIZE.repetitions));
  const refs = timer.batches.length;
  clock.ms = 2000; // the clock drops
  const after = await measureInterleaved(timer, cases, opts);
  for (const m of after) {
    assert(m.referenceNs.every((r) => r === 2 * REF_NS), JSON.stringify(m.referenceNs));
    assertEquals(m.samplesNs[0], 2e6); // the cases are slow too: this is what gets flagged
  }
  assert(timer.batches.length > refs);
});

Deno.test("a one-off stall of a reference pass is not a clock drop", async () => {
  const clock = new FakeClock();
  // Every 7th reference pass stalls 30x (the host was busy); cases and other references do not.
  const timer = new FakeTimer({
    clock,
    sample: (label, i) =>
      label === "clock reference" ? (i % 7 === 3 ? 30 * REF_NS : REF_NS) : refWork(label),
  });
  const guard = new ClockGuard(timer, { label: "ref", encode: nop }, SIZE, {
    calibratedNs: REF_NS,
    now: clock.now,
  });
  const ms = await measureInterleaved(
    timer,
    [{ key: "a", encode: nop }, { key: "b", encode: nop }],
    {
      warmupMs: 5,
      budgetMs: 50,
      minSamples: 6,
      maxSamples: 12,
      targetRelativeCi: 0.01,
      now: clock.now,
      clock: guard,
    },
  );
  for (const m of ms) {
    assert(m.referenceNs.every((r) => r === REF_NS), JSON.stringify(m.referenceNs));
  }
});

/** A progress reporter that calls `onSnapshot(i)` as the i-th snapshot begins. */
function snapshotHook(onSnapshot: (i: number) => void): ProgressReporter {
  let i = -1;
  return {
    start() {},
    current() {
      onSnapshot(++i);
    },
    caseDone() {},
    note() {},
    finish() {},
  };
}

const gpu = testGpu;

function benchConfig(): BenchConfig {
  const reg = fakeRegistry();
  return {
    workloads: [{ run: new FewShotRun({ prompt: 40, branches: 3, generated: 6 }) }],
    methods: [reg.get("sequence")!, reg.get("deft-flatten")!],
    shape: TINY_SHAPE,
    dtype: "f32",
    methodOptions: { ...DEFAULT_METHOD_OPTIONS },
    samplesPerRun: 2,
    seed: 7,
    scale: 1,
    scaleReason: null,
    verify: false,
    verifyRows: 8,
    timing: {
      warmupMs: 5,
      budgetMs: 20,
      minSamples: 3,
      maxSamples: 20,
      targetRelativeCi: 0.05,
      cold: false,
      interleaved: true,
    },
    calibration: null,
    command: ["bench", "test"],
    tickCheck: false,
  };
}

/** A run on a fake GPU whose clock is at `speeds[i]` during the i-th snapshot. */
async function fakeRun(speeds: number[], smi?: SmiSampler): Promise<ResultsDocument> {
  let speed = 1;
  const clock = new FakeClock();
  const ns: Record<string, number> = { sequence: 3000, "deft-flatten": 1000 };
  const timer = new FakeTimer({
    clock,
    sample: (label) => (ns[label.split("/")[1]!] ?? REF_NS) / speed,
  });
  const doc = await runBench(await gpu(), benchConfig(), {
    timer,
    now: clock.now,
    probeHost: false,
    progress: snapshotHook((i) => (speed = speeds[i] ?? 1)),
    ...(smi ? { smi } : {}),
  });
  return parseResults(JSON.stringify(doc), "fake.json");
}

Deno.test("a low nvidia-smi reading beside a reference at speed is recorded, not flagged", async () => {
  // nvidia-smi reads 1980 MHz once and 345 MHz otherwise in every case's window (host gaps), while
  // the reference kernel beside the samples runs at the working clock.
  const smi = new SmiSampler((async function* () {})(), () => 0);
  const readings = [1980, 345, 345].map((smMHz) => ({
    atMs: 0,
    smMHz,
    maxSmMHz: 1980,
    reasons: "0x1",
  }));
  smi.window = () => readings;
  const doc = await fakeRun([1, 1], smi);
  for (const s of doc.workloads[0]!.snapshots) {
    for (const c of s.cases) {
      assertAlmostEquals(c.clock!.fraction, 1, 1e-9);
      assertEquals(c.clock!.smMHz, 345);
      assert(c.clock!.smFraction! < LOW_CLOCK_FRACTION);
      assertEquals(c.clock!.lowClock, false);
    }
  }
  assertEquals(doc.warnings.filter((w) => w.code === "low-clock"), []);
  const note = doc.warnings.filter((w) => w.code === "smi-low-clock");
  assertEquals(note.length, 1);
  assert(note[0]!.message.includes("4 case(s)"), note[0]!.message);
  assertEquals(doc.environment.clock!.lowClockCases, 0);
});

Deno.test("runBench() flags exactly the cases measured during a clock drop", async () => {
  // The GPU runs at its clock for the first snapshot and at 60 % for the second.
  const doc = await fakeRun([1, 0.6]);
  const [s0, s1] = doc.workloads[0]!.snapshots;
  for (const c of s0!.cases) {
    assertAlmostEquals(c.clock!.fraction, 1, 1e-9);
    assertEquals(c.clock!.lowClock, false);
    assertEquals(c.clock!.lowSamples, 0);
  }
  for (const c of s1!.cases) {
    assertAlmostEquals(c.clock!.fraction, 0.6, 1e-9);
    assert(c.clock!.fraction < LOW_CLOCK_FRACTION);
    assertEquals(c.clock!.lowClock, true);
    assertEquals(c.clock!.lowSamples, c.timing!.samplesNs.length);
    assertEquals(c.clock!.smMHz, null);
  }
  const low = doc.warnings.filter((w) => w.code === "low-clock");
  assertEquals(low.map((w) => w.key).sort(), s1!.cases.map((c) => c.key).sort());
  const k = doc.environment.clock!;
  assertEquals(k.lowClockCases, 2);
  assertEquals(k.workingSource, "run");
  assertEquals(k.workingNs, REF_NS);
  // Each snapshot's group spun up once; the slow one's round was taken again twice first.
  assertEquals(k.spinUps, 2 + MAX_LOW_CLOCK_RETRIES);
  for (const c of s0!.cases) assertEquals(c.clock!.retriedSamples, 0);
  for (const c of s1!.cases) assertEquals(c.clock!.retriedSamples, 3 * MAX_LOW_CLOCK_RETRIES);
  assertEquals(k.retriedSamples, 2 * 3 * MAX_LOW_CLOCK_RETRIES);
  assertEquals(k.smi, null);

  // The report shows the flag: a notice, a badge per case, and the warnings.
  const html = renderReport([doc]);
  assert(
    html.includes("2 case(s) were measured below 90 % of the adapter's working clock"),
    "notice",
  );
  assertEquals(html.match(/badge bad">low clock</g)?.length, 2);
  assert(html.includes("low-clock"));
});

Deno.test("compare calls no change on a flagged case, and the exit code stays 0", async () => {
  const base = await fakeRun([1, 1]);
  const head = await fakeRun([1, 0.5]); // the second snapshot ran 2x slower, at half the clock
  const c = compareRuns(base, head);
  const slowKeys = head.workloads[0]!.snapshots[1]!.cases.map((x) => x.key);
  for (const k of c.cases) {
    if (slowKeys.includes(k.key)) {
      assertEquals(k.verdict, "unreliable-clock");
      assertEquals(k.latency!.verdict, "unreliable-clock");
      assertAlmostEquals(k.latency!.ratio, 2, 1e-9);
      assertEquals(k.lowClock, { base: false, head: true });
    } else {
      assertEquals(k.verdict, "noise");
    }
  }
  assertEquals(c.summary.unreliableClock, 2);
  assertEquals(c.summary.regressions, 0);
  assertEquals(c.summary.verdict, "noise");
  assertEquals(compareExitCode(c), 0);
  // Flagged cases stay out of the geometric means.
  assertEquals(c.summary.geomean[0]!.cases, 2);
  assertAlmostEquals(c.summary.geomean[0]!.ratio, 1, 1e-9);
  const md = formatMarkdown(c);
  assert(md.includes("2 not judged (low clock)"), md.split("\n")[0]);
  assert(
    md.includes("unreliable clock ⚠") && md.includes("§ measured below the working clock"),
    "notice",
  );

  // Without the flags the same numbers are two regressions: the flag is what holds them back.
  const unflagged: ResultsDocument = structuredClone(head);
  for (const s of unflagged.workloads[0]!.snapshots) {
    for (const x of s.cases) x.clock!.lowClock = false;
  }
  const raw = compareRuns(base, unflagged);
  assertEquals(raw.summary.regressions, 2);
  assertEquals(compareExitCode(raw), 1);

  // A real regression in an unflagged case still fails the comparison beside a flagged one.
  const both: ResultsDocument = structuredClone(head);
  const c0 = both.workloads[0]!.snapshots[0]!.cases[0]!;
  c0.timing!.samplesNs = c0.timing!.samplesNs.map((v) => 2 * v);
  c0.timing!.medianNs *= 2;
  const mixed = compareRuns(base, both);
  assertEquals(mixed.summary.regressions, 1);
  assertEquals(mixed.summary.unreliableClock, 2);
  assertEquals(compareExitCode(mixed), 1);

  // A flagged base is not judged either (base flagged, head clean).
  const back = compareRuns(head, base);
  assertEquals(back.summary.unreliableClock, 2);
  assertEquals(back.summary.improvements, 0);
});

Deno.test("nvidia-smi loop lines parse, and the sampler keeps readings with their time", async () => {
  assertEquals(parseSmiLoopLine("1980, 1980, 0x0000000000000001", 5), {
    atMs: 5,
    smMHz: 1980,
    maxSmMHz: 1980,
    reasons: "0x0000000000000001",
  });
  assertEquals(parseSmiLoopLine("645, [N/A], [N/A]", 1)!.maxSmMHz, null);
  assertEquals(parseSmiLoopLine("No devices were found", 1), null);
  assertEquals(parseSmiLoopLine("", 1), null);

  let t = 0;
  async function* lines() {
    for (const sm of [645, 1200, 1980, 1980, 1755]) {
      t += 250;
      yield `${sm}, 1980, 0x0`;
    }
    yield "garbage";
  }
  const s = new SmiSampler(lines(), () => t);
  await s.stop();
  assertEquals(s.readings.map((r) => r.smMHz), [645, 1200, 1980, 1980, 1755]);
  assertEquals(s.window(600, 1000).map((r) => r.smMHz), [1980, 1980]);
});

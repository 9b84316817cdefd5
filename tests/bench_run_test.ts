import {
  type BenchConfig,
  methodTotals,
  parseSmiCsv,
  registryOrder,
  roofline,
  runBench,
  smClockFraction,
  sourceHash,
  throttledAfterRun,
} from "../bench/run.ts";
import { FakeClock, FakeTimer, TimestampTimer, WallClockTimer } from "../bench/timer.ts";
import { MAX_LOW_CLOCK_RETRIES } from "../bench/measure.ts";
import { DEFAULT_METHOD_OPTIONS, type MethodName, zeroPlanCounts } from "../kernels/method.ts";
import { parseResults } from "../results/document.ts";
import {
  type Calibration,
  caseKey,
  type CaseResult,
  type SnapshotResult,
} from "../results/schema.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { fakeRegistry, TINY_SHAPE } from "./_bench_fake.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { testGpu } from "./_gpu.ts";

const gpu = testGpu;

const CALIBRATION: Calibration = {
  adapterKey: "test",
  measuredAt: "2025-01-01T00:00:00.000Z",
  readBandwidth: [{ bytes: 1 << 20, bytesPerS: 1e10 }],
  peakReadBytesPerS: 1e10,
  f32FlopsPerS: 1e11,
  f16FlopsPerS: 2e11,
  dispatchNs: 1000,
  extraDispatchNs: 100,
};

function config(over: Partial<BenchConfig> = {}): BenchConfig {
  return {
    workloads: [{ run: new FewShotRun({ prompt: 40, branches: 3, generated: 6 }) }],
    methods: [...fakeRegistry().values()],
    shape: TINY_SHAPE,
    dtype: "f32",
    methodOptions: { ...DEFAULT_METHOD_OPTIONS },
    samplesPerRun: 2,
    seed: 7,
    scale: 1,
    scaleReason: null,
    verify: true,
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
    calibration: CALIBRATION,
    command: ["bench", "test"],
    tickCheck: false,
    ...over,
  };
}

const byMethod = (s: SnapshotResult, m: MethodName): CaseResult =>
  s.cases.find((c) => c.method === m)!;

Deno.test("runBench() on the real adapter: ok, failed and error cases, a valid document", async () => {
  const g = await gpu();
  const timer = g.hasTimestamps ? new TimestampTimer(g) : new WallClockTimer(g);
  try {
    const doc = await runBench(
      g,
      config({ tickCheck: true, timing: { ...config().timing, cold: true } }),
      {
        timer,
        probeHost: true,
      },
    );
    // The document passes the reader's schema checks, after a JSON round trip.
    const parsed = parseResults(JSON.stringify(doc), "results.json");
    assertEquals(parsed.workloads.length, 1);
    const w = doc.workloads[0]!;
    assertEquals(w.snapshots.length, 2);
    assertEquals(w.iterations, 6);
    assertEquals(w.snapshots.map((s) => s.weight), [3, 3]);
    for (const s of w.snapshots) {
      assertEquals(s.cases.map((c) => c.method), [
        "sequence",
        "radix",
        "tree-mask",
        "deft-flatten",
      ]);
      assert(s.tree !== null && s.tree.nodes.length === 4);
      const seq = byMethod(s, "sequence");
      assertEquals(seq.status, "ok");
      assert(seq.verification.checked && seq.verification.passed);
      assertEquals(seq.verification.rows, 8);
      assert(seq.verification.maxRelError < 1e-6);
      assert(seq.timing !== null && seq.timing.samplesNs.length >= 3);
      assert(seq.roofline !== null && seq.roofline.fraction > 0);
      assertEquals(seq.dispatches, 2);
      assertEquals(seq.stats, { copies: 2 });
      assertEquals(seq.key, caseKey(w.name, s.iteration, "sequence", g.runtime.name));
      assertEquals(seq.runtime, g.runtime.name);
      assert(/^[0-9a-f]{16}$/.test(seq.sourceHash));
      const radix = byMethod(s, "radix");
      assertEquals(radix.status, "failed");
      assertEquals(radix.timing, null); // a wrong method is never timed
      assert(!radix.verification.passed && radix.verification.maxRelError > 0.3);
      assert(/relative error/.test(radix.message!));
      const tm = byMethod(s, "tree-mask");
      assertEquals(tm.status, "error");
      assert(/broken on purpose/.test(tm.message!));
      assertEquals(byMethod(s, "deft-flatten").status, "ok");
      // Same kernel, same constants -> same hash; different constants -> different hash.
      assert(byMethod(s, "deft-flatten").sourceHash !== radix.sourceHash);
    }
    const seqHash = byMethod(w.snapshots[0]!, "sequence").sourceHash;
    assertEquals(byMethod(w.snapshots[1]!, "sequence").sourceHash, seqHash);
    const totals = new Map(w.totals.map((t) => [t.method, t]));
    assertEquals(totals.get("sequence")!.speedupVsSequence, 1);
    assert(totals.get("deft-flatten")!.speedupVsSequence! > 0);
    assertEquals(totals.get("radix")!.complete, false);
    assertEquals(totals.get("radix")!.speedupVsSequence, null);
    assertEquals(totals.get("tree-mask")!.runNs, 0);
    const codes = new Set(doc.warnings.map((x) => x.code));
    assert(codes.has("verification-failed") && codes.has("case-error"));
    if (g.info.isFallbackAdapter) assert(codes.has("fallback-adapter"));
    assertEquals(doc.settings.timing.cold, true);
    assertEquals(doc.settings.timing.mode, timer.mode);
    assertEquals(doc.environment.command, ["bench", "test"]);
    assert(doc.environment.deno.length > 0);
    if (g.hasTimestamps) assert(doc.environment.tickRatio! > 0.5 && doc.environment.tickRatio! < 2);
    // The clock guard ran beside the cases: a working speed, a spin-up per snapshot (and one per
    // round taken again after a low clock, which a shared CPU adapter can show), and a clock for
    // every timed case.
    const k = doc.environment.clock!;
    assert(
      k.workingNs > 0 && k.spinUps >= 2 && k.spinUps <= 2 * (1 + MAX_LOW_CLOCK_RETRIES),
      JSON.stringify(k),
    );
    assertEquals(k.retriedSamples! > 0, k.spinUps > 2);
    for (const s of w.snapshots) {
      for (const c of s.cases) {
        if (c.timing) assert(c.clock!.fraction > 0 && c.clock!.minFraction <= c.clock!.fraction);
        else assertEquals(c.clock, undefined);
      }
    }
  } finally {
    timer.destroy();
  }
});

Deno.test("runBench() with a fake timer: totals are Σ weight x median, speedups exact", async () => {
  const g = await gpu();
  const clock = new FakeClock();
  const ns: Record<string, number> = { sequence: 3000, "deft-flatten": 1000 };
  // Keys are `workload@iteration/method[@runtime]`; other labels are the clock reference.
  const timer = new FakeTimer({
    sample: (label) => ns[label.split("/")[1]?.split("@")[0] ?? ""] ?? 500,
    clock,
  });
  const reg = fakeRegistry();
  const doc = await runBench(
    g,
    config({ methods: [reg.get("sequence")!, reg.get("deft-flatten")!], verify: false }),
    { timer, now: clock.now, probeHost: false },
  );
  const w = doc.workloads[0]!;
  const t = new Map(w.totals.map((x) => [x.method, x]));
  assertEquals(t.get("sequence")!.runNs, 6 * 3000);
  assertEquals(t.get("deft-flatten")!.runNs, 6 * 1000);
  assertEquals(t.get("deft-flatten")!.modelRunNs, 6 * 1000 * TINY_SHAPE.layers);
  assertEquals(t.get("deft-flatten")!.meanIterationNs, 1000);
  assertEquals(t.get("deft-flatten")!.speedupVsSequence, 3);
  assertEquals(t.get("deft-flatten")!.paperIo.kvBytes, 6 * 100 * TINY_SHAPE.layers);
  for (const s of w.snapshots) {
    const c = byMethod(s, "deft-flatten");
    assertEquals(c.verification.checked, false);
    assertEquals(c.timing!.medianNs, 1000);
    assertEquals(c.timing!.samplesNs.length, 3); // no noise: stable after the first round
    // 1e10 B/s DRAM peak, no L2 roof: the bytes that must cross DRAM / peak vs flops / 1e11.
    assertEquals(c.roofline!.dramTimeNs, (c.counts.dramBytes / 1e10) * 1e9);
    assertEquals(c.roofline!.l2TimeNs, null);
    assertEquals(c.roofline!.ioTimeNs, c.roofline!.dramTimeNs);
    // The fake reference kernel ran at one speed throughout: every case at its working clock.
    assertEquals(c.clock!.fraction, 1);
    assertEquals(c.clock!.lowClock, false);
  }
  assertEquals(doc.environment.gitCommit, null);
  assertEquals(doc.environment.nvidiaSmi, null);
  assert(doc.warnings.every((x) => x.code !== "high-noise"));
});

Deno.test("runBench() with the wall-clock fallback says so and records repetitions", async () => {
  const g = await gpu();
  const reg = fakeRegistry();
  const timer = new WallClockTimer(g);
  const doc = await runBench(
    g,
    config({
      methods: [reg.get("sequence")!, reg.get("deft-flatten")!],
      samplesPerRun: 1,
      timing: { ...config().timing, minSamples: 2, maxSamples: 3, budgetMs: 1 },
    }),
    { timer, probeHost: false },
  );
  assertEquals(doc.settings.timing.mode, "wallclock-batched");
  assertEquals(doc.settings.timing.repetitionsPerSample, 0);
  assert(doc.warnings.some((w) => w.code === "no-timestamps"));
  for (const c of doc.workloads[0]!.snapshots[0]!.cases) {
    assertEquals(c.status, "ok");
    assert(c.timing!.repetitions! > 1, `repetitions ${c.timing!.repetitions}`);
    assert(c.clock!.fraction > 0);
  }
  assertEquals(doc.environment.clock!.leadNs, 0); // no lead without timestamps
  parseResults(JSON.stringify(doc), "x.json");
});

Deno.test("a problem too large for the device makes every case an error, and the run goes on", async () => {
  const g = await gpu();
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: () => 1000, clock });
  const huge = { name: "huge", qHeads: 256, kvHeads: 256, headDim: 256, layers: 1 };
  const doc = await runBench(
    g,
    config({
      shape: huge,
      verify: false,
      workloads: [{ run: new FewShotRun({ prompt: 3000, branches: 2, generated: 2 }) }],
    }),
    {
      timer,
      now: clock.now,
      probeHost: false,
    },
  );
  for (const s of doc.workloads[0]!.snapshots) {
    for (const c of s.cases) {
      assertEquals(c.status, "error");
      assert(/maxStorageBufferBindingSize|maxBufferSize/.test(c.message!), c.message!);
    }
  }
  parseResults(JSON.stringify(doc), "x.json");
});

Deno.test("roofline() picks the largest of the DRAM, L2 and FLOP floors", () => {
  const counts = zeroPlanCounts({
    real: { totalBytes: 4e6 },
    dramBytes: 1e6,
    flops: 1e6,
    usefulFlops: 1e6,
  });
  const r = roofline(counts, 1e6, "f32", CALIBRATION)!; // 1 ms
  assertEquals(r.dramTimeNs, 1e5); // 1e6 B at 1e10 B/s
  assertEquals(r.l2TimeNs, null); // no L2 roof in this calibration
  assertEquals(r.ioTimeNs, 1e5);
  assertEquals(r.flopTimeNs, 1e4); // 1e6 FLOP at 1e11 FLOP/s
  assertEquals(r.bound, "dram");
  assertEquals(r.fraction, 0.1);
  assertEquals(r.achievedBytesPerS, 4e9); // all real bytes moved
  assertEquals(roofline(counts, 1e6, "f16", CALIBRATION)!.flopTimeNs, 5e3);
  assertEquals(roofline(counts, 1e6, "f32", null), null);
  assertEquals(roofline(counts, 0, "f32", CALIBRATION), null);
});

Deno.test("methodTotals() marks incomplete methods and leaves their speedup null", () => {
  const mk = (method: MethodName, median: number | null): CaseResult => ({
    key: method,
    method,
    runtime: "deno",
    kernel: "fma",
    options: {},
    sourceHash: "",
    status: median === null ? "error" : "ok",
    message: null,
    counts: zeroPlanCounts({ paper: { kvBytes: 1, totalBytes: 1 }, real: { totalBytes: 10 } }),
    stats: {},
    dispatches: 1,
    prepareMs: 0,
    planMs: 0,
    timing: median === null ? null : {
      samplesNs: [median],
      medianNs: median,
      meanNs: median,
      minNs: median,
      maxNs: median,
      madNs: 0,
      ci95Ns: [median, median],
      outliers: { lowSevere: 0, lowMild: 0, highMild: 0, highSevere: 0 },
    },
    roofline: null,
    verification: {
      checked: false,
      rows: 0,
      maxRelError: 0,
      tolerance: 0,
      unwritten: 0,
      nonFinite: 0,
      passed: true,
    },
  });
  const snap = (w: number, seq: number | null, flat: number | null): SnapshotResult => ({
    iteration: 0,
    weight: w,
    facts: {
      nodes: 1,
      depth: 1,
      treeTokens: 1,
      queries: 1,
      pathTokens: 1,
      sharingFactor: 1,
      leaves: 1,
    },
    tree: null,
    cases: [mk("sequence", seq), mk("deft-flatten", flat)],
  });
  const shape = { ...TINY_SHAPE, layers: 10 };
  const t = methodTotals(
    ["sequence", "deft-flatten"],
    [snap(2, 100, 50), snap(3, 200, 100)],
    5,
    shape,
  );
  assertEquals(t[0]!.runNs, 800);
  assertEquals(t[1]!.runNs, 400);
  assertEquals(t[1]!.speedupVsSequence, 2);
  assertEquals(t[1]!.realBytes, 5 * 10 * 10);
  assertEquals(t[1]!.meanIterationNs, 80);
  const broken = methodTotals(
    ["sequence", "deft-flatten"],
    [snap(2, 100, 50), snap(3, null, 100)],
    5,
    shape,
  );
  assertEquals(broken[0]!.complete, false);
  assertEquals(broken[1]!.speedupVsSequence, null);
});

Deno.test("sourceHash() ignores order and duplicates, and sees code and constants", async () => {
  const a = { label: "a", code: "x", constants: { A: 1, B: 2 }, entryPoint: "main" };
  const b = { label: "b", code: "y", constants: {}, entryPoint: "main" };
  const h = await sourceHash("m", [a, b]);
  assertEquals(await sourceHash("m", [b, a, a]), h);
  assertEquals(await sourceHash("m", [{ ...a, constants: { B: 2, A: 1 } }, b]), h);
  assert(await sourceHash("m", [{ ...a, code: "x2" }, b]) !== h);
  assert(await sourceHash("m", [{ ...a, constants: { A: 2, B: 2 } }, b]) !== h);
  assert(await sourceHash("n", [a, b]) !== h);
});

Deno.test("nvidia-smi CSV parsing and the throttle fraction", () => {
  const r = parseSmiCsv(
    "name, driver_version, clocks.current.sm [MHz], clocks.max.sm [MHz], temperature.gpu\nNVIDIA H100 80GB HBM3, 550.54, 1410 MHz, 1980 MHz, 45\n",
  )!;
  assertEquals(r["name"], "NVIDIA H100 80GB HBM3");
  assertEquals(r["clocks.current.sm [MHz]"], "1410 MHz");
  assertEquals(smClockFraction(r), 1410 / 1980);
  assertEquals(parseSmiCsv("only a header"), null);
  assertEquals(smClockFraction({ name: "x" }), null);
});

Deno.test("a low clock after the run is throttling only when a reason other than idle is active", () => {
  const at = (sm: number, reasons?: string) => ({
    "clocks.current.sm [MHz]": `${sm} MHz`,
    "clocks.max.sm [MHz]": "1980 MHz",
    ...(reasons === undefined ? {} : { "clocks_event_reasons.active": reasons }),
  });
  // An H200 read after its work is done: 345 MHz, reason GPU idle only.
  assertEquals(throttledAfterRun(at(345, "0x0000000000000001")), null);
  assertEquals(throttledAfterRun(at(1980, "0x0000000000000000")), null);
  // Power or thermal reasons (with or without idle), or none known: a warning naming them.
  assertMatch(throttledAfterRun(at(900, "0x0000000000000004"))!, /45% of its maximum.*0x0+4/);
  assertMatch(throttledAfterRun(at(345, "0x0000000000000041"))!, /17%/);
  assertMatch(throttledAfterRun(at(345, "[N/A]"))!, /17%/);
  assertMatch(throttledAfterRun(at(345))!, /17% of its maximum after the run \(nvidia-smi\)$/);
});

Deno.test("registryOrder() lists methods as the registry does, the order settings.methods records", () => {
  assertEquals(registryOrder(["cascade", "deft-flatten", "sequence"]), [
    "sequence",
    "deft-flatten",
    "cascade",
  ]);
  assertEquals(registryOrder(["tree-mask", "radix"]), ["radix", "tree-mask"]);
});

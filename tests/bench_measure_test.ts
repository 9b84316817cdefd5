import { createFlushPass, measureInterleaved, type MeasureOptions } from "../bench/measure.ts";
import { busyPass, FakeClock, FakeTimer, TimestampTimer } from "../bench/timer.ts";
import { openTestGpu } from "./_gpu.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";

const nop = () => {};
const base = (clock: FakeClock): MeasureOptions => ({
  warmupMs: 5,
  budgetMs: 1000,
  minSamples: 10,
  maxSamples: 500,
  targetRelativeCi: 0.01,
  now: clock.now,
});

/** Deterministic pseudo-noise in [-1, 1). */
const noise = (i: number) => (((i * 2654435761) >>> 0) / 2147483648) - 1;

Deno.test("a steady case stops as stable after the first round", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: (_l, i) => 1e6 * (1 + 0.001 * noise(i)), clock });
  const [m] = await measureInterleaved(timer, [{ key: "a", encode: nop }], base(clock));
  assertEquals(m!.stop, "stable");
  assertEquals(m!.samplesNs.length, 10);
  assertEquals(m!.rounds, 1);
  assert(m!.relativeCiHalfWidth < 0.01);
  assert(m!.warmupSamples >= 1);
});

Deno.test("a noisy case takes growing rounds until stable", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: (_l, i) => 1e5 * (1 + 0.05 * noise(i)), clock });
  const [m] = await measureInterleaved(timer, [{ key: "a", encode: nop }], base(clock));
  assertEquals(m!.stop, "stable");
  assert(m!.samplesNs.length > 10 && m!.samplesNs.length <= 500);
  assert(m!.rounds > 1);
  // Round sizes at most double: 10, 10, 20, 40, ... so the count is 10 * 2^(rounds-1) or less.
  assert(m!.samplesNs.length <= 10 * 2 ** (m!.rounds - 1));
});

Deno.test("a hopeless case stops at maxSamples or at the budget", async () => {
  const clock = new FakeClock();
  const wild = (_l: string, i: number) => 1e5 * (1 + 0.9 * noise(i));
  const [capped] = await measureInterleaved(
    new FakeTimer({ sample: wild, clock }),
    [{ key: "a", encode: nop }],
    { ...base(clock), maxSamples: 40 },
  );
  assertEquals(capped!.stop, "max-samples");
  assertEquals(capped!.samplesNs.length, 40);

  const slow = new FakeClock();
  // 50 ms per sample with a 1 s budget: the first round (10 samples, 0.5 s) fits, then the
  // budget runs out after about 20 samples.
  const [budget] = await measureInterleaved(
    new FakeTimer({ sample: (_l, i) => 5e7 * (1 + 0.9 * noise(i)), clock: slow }),
    [{ key: "a", encode: nop }],
    { ...base(slow), maxSamples: 10_000 },
  );
  assertEquals(budget!.stop, "budget");
  assert(budget!.samplesNs.length >= 10 && budget!.samplesNs.length <= 30);
  assert(slow.ms < 5 + 1000 * 1.6, `spent ${slow.ms} ms`);
});

Deno.test("cases are interleaved round-robin, with the flush before every sample", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: (l) => (l === "a" ? 1000 : 2000), clock });
  const out = await measureInterleaved(
    timer,
    [{ key: "a", encode: nop }, { key: "b", encode: nop }, { key: "c", encode: nop }],
    {
      ...base(clock),
      minSamples: 3,
      warmupMs: 0,
      flush: { label: "flush", encode: nop },
    },
  );
  assertEquals(out.map((m) => m.key), ["a", "b", "c"]);
  for (const m of out) assertEquals(m.stop, "stable");
  assertEquals(timer.batches[0], ["flush", "a", "flush", "b", "flush", "c"]); // warm-up
  assertEquals(timer.batches[1]!.filter((l) => l !== "flush"), [
    "a",
    "b",
    "c",
    "a",
    "b",
    "c",
    "a",
    "b",
    "c",
  ]);
  assertEquals(timer.batches[1]!.length, 18);
});

Deno.test("stable cases drop out of later rounds", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({
    sample: (l, i) => (l === "steady" ? 1e5 : 1e5 * (1 + 0.3 * noise(i))),
    clock,
  });
  const [steady, noisy] = await measureInterleaved(
    timer,
    [{ key: "steady", encode: nop }, { key: "noisy", encode: nop }],
    { ...base(clock), warmupMs: 0 },
  );
  assertEquals(steady!.samplesNs.length, 10);
  assert(noisy!.samplesNs.length > 10);
  assert(timer.batches.slice(2).every((b) => b.every((l) => l === "noisy")));
});

Deno.test("warm-up lasts warmupMs and its samples are not kept", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: (_l, i) => (i < 5 ? 9e6 : 1e6), clock });
  const [m] = await measureInterleaved(timer, [{ key: "a", encode: nop }], {
    ...base(clock),
    warmupMs: 30,
  });
  // Warm-up batches of 1, 2, 4 samples: 9 + 18 + (2 x 9 + 2 x 1) ms = 47 ms >= 30 ms.
  assertEquals(m!.warmupSamples, 7);
  assert(m!.samplesNs.every((s) => s === 1e6));
});

Deno.test("repetitions rise until one sample lasts timer.minSampleNs", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: () => 1000, clock, minSampleNs: 1e6 });
  const [m] = await measureInterleaved(timer, [{ key: "a", encode: nop }], base(clock));
  assertEquals(m!.repetitions, 1000);
  const [fixed] = await measureInterleaved(timer, [{ key: "a", encode: nop }], {
    ...base(clock),
    repetitions: 7,
  });
  assertEquals(fixed!.repetitions, 7);
});

Deno.test("automatic repetitions are shared by the group with timestamps, per case otherwise", async () => {
  const cases = [{ key: "fast", encode: nop }, { key: "slow", encode: nop }];
  const sample = (l: string) => (l === "fast" ? 1000 : 10_000);
  for (const mode of ["timestamp", "wallclock-batched"] as const) {
    const clock = new FakeClock();
    const timer = new FakeTimer({ sample, clock, minSampleNs: 1e6, mode });
    const [fast, slow] = await measureInterleaved(timer, cases, base(clock));
    assertEquals(fast!.repetitions, 1000);
    assertEquals(slow!.repetitions, mode === "timestamp" ? 1000 : 100);
  }
});

Deno.test("bad options are rejected", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({ sample: () => 1, clock });
  const c = [{ key: "a", encode: nop }];
  await assertRejects(
    () => measureInterleaved(timer, c, { ...base(clock), minSamples: 0 }),
    RangeError,
  );
  await assertRejects(
    () => measureInterleaved(timer, c, { ...base(clock), maxSamples: 3 }),
    RangeError,
  );
  await assertRejects(() => measureInterleaved(timer, [...c, ...c], base(clock)), RangeError);
  assertEquals(await measureInterleaved(timer, [], base(clock)), []);
});

Deno.test("measureInterleaved() with the timestamp timer and cold flush on the real adapter", async () => {
  const gpu = await openTestGpu();
  if (!gpu.hasTimestamps) return;
  const busy = await busyPass(gpu, { workgroups: 2, iterations: 500 });
  const flush = await createFlushPass(gpu, { bytes: 1 << 20 });
  const timer = new TimestampTimer(gpu);
  try {
    assertEquals(flush.bytes, 1 << 20);
    const [m] = await measureInterleaved(timer, [{ key: "busy", encode: busy.encode }], {
      warmupMs: 20,
      budgetMs: 200,
      minSamples: 5,
      maxSamples: 50,
      targetRelativeCi: 0.05,
      flush,
    });
    assert(m!.samplesNs.length >= 5 && m!.samplesNs.length <= 50);
    assert(m!.samplesNs.every((s) => s > 0));
  } finally {
    timer.destroy();
    flush.destroy();
    busy.destroy();
    gpu.destroy();
  }
});

import {
  busyPass,
  checkTicks,
  FakeClock,
  FakeTimer,
  type PassSpec,
  TimestampTimer,
  WallClockTimer,
} from "../bench/timer.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { testGpu } from "./_gpu.ts";

const gpu = testGpu;

Deno.test("FakeTimer returns its samples, skips untimed passes and advances its clock", async () => {
  const clock = new FakeClock();
  const timer = new FakeTimer({
    sample: (label, i) => (label === "a" ? 1000 + i : 2000),
    clock,
    overheadMs: 10,
  });
  const nop = () => {};
  const passes: PassSpec[] = [
    { label: "a", encode: nop },
    { label: "flush", encode: nop, timed: false },
    { label: "b", encode: nop, repetitions: 3 },
    { label: "a", encode: nop },
  ];
  assertEquals(await timer.time(passes), [1000, null, 2000, 1001]);
  // 1000 + 3 * 2000 + 1001 ns of work plus 10 ms overhead
  assertEquals(clock.ms, 10 + 8001 / 1e6);
  assertEquals(timer.batches, [["a", "flush", "b", "a"]]);
  assertThrows(() => timer.time([{ label: "a", encode: nop, repetitions: 0 }]), RangeError);
});

Deno.test("TimestampTimer times a trivial kernel on the real adapter", async () => {
  const g = await gpu();
  if (!g.hasTimestamps) return; // the wall-clock fallback is tested below
  const busy = await busyPass(g, { workgroups: 4, iterations: 2000 });
  const timer = new TimestampTimer(g, { queries: 8 }); // 4 timed passes per submit
  try {
    const passes: PassSpec[] = [];
    for (let i = 0; i < 6; i++) {
      passes.push({ ...busy, repetitions: i % 2 === 0 ? 1 : 4 });
      passes.push({ ...busy, label: "untimed", timed: false });
    }
    await timer.time([busy]); // the first dispatch pays lavapipe's shader JIT
    const t = await timer.time(passes); // split into 2 submits
    assertEquals(t.length, passes.length);
    for (let i = 0; i < passes.length; i++) {
      if (i % 2 === 1) assertEquals(t[i], null);
      else assert(t[i] === null || t[i]! > 0, `sample ${i} is ${t[i]}`);
    }
    const got = t.filter((x) => x !== null);
    assert(got.length + timer.discarded === 6);
    // Per-repetition times of 1 and 4 repetitions are of the same order (the fastest of each,
    // since other test files may load the CPU that runs the software adapter).
    const fastest = (k: number) =>
      Math.min(...t.filter((x, i) => x !== null && i % 4 === k) as number[]);
    const one = fastest(0), four = fastest(2);
    assert(four < one * 10 && one < four * 10, `1 rep ${one} ns, 4 reps ${four} ns per rep`);
  } finally {
    timer.destroy();
    busy.destroy();
  }
});

Deno.test("TimestampTimer rejects bad query counts and an adapter without timestamps", async () => {
  const g = await gpu();
  if (!g.hasTimestamps) {
    assertThrows(() => new TimestampTimer(g));
    return;
  }
  assertThrows(() => new TimestampTimer(g, { queries: 5000 }), RangeError);
  assertThrows(() => new TimestampTimer(g, { queries: 1 }), RangeError);
});

Deno.test("a validation error inside a timed pass becomes a GpuError", async () => {
  const g = await gpu();
  const timer = g.hasTimestamps ? new TimestampTimer(g, { queries: 4 }) : new WallClockTimer(g);
  try {
    await assertRejects(
      () =>
        timer.time([{
          label: "bad",
          encode(pass) {
            pass.dispatchWorkgroups(1); // no pipeline set
          },
        }]),
      Error,
    );
  } finally {
    timer.destroy();
  }
  // The device is still usable afterwards.
  const busy = await busyPass(g, { workgroups: 1, iterations: 10 });
  const again = g.hasTimestamps ? new TimestampTimer(g, { queries: 4 }) : new WallClockTimer(g);
  assertEquals((await again.time([busy])).length, 1);
  again.destroy();
  busy.destroy();
});

Deno.test("WallClockTimer subtracts the submit floor and asks for long samples", async () => {
  const g = await gpu();
  const busy = await busyPass(g, { workgroups: 4, iterations: 2000 });
  const timer = new WallClockTimer(g);
  try {
    const [t, u] = await timer.time([{ ...busy, repetitions: 8 }, { ...busy, timed: false }]);
    assert(timer.floorMs !== null && timer.floorMs > 0);
    assert(typeof t === "number" && t >= 0);
    assertEquals(u, null);
    assert(timer.minSampleNs >= 10 * timer.floorMs! * 1e6 - 1);
    assertEquals(timer.mode, "wallclock-batched");
  } finally {
    busy.destroy();
  }
});

Deno.test("checkTicks() finds nanosecond ticks on the real adapter", async () => {
  const g = await gpu();
  if (!g.hasTimestamps) return;
  const busy = await busyPass(g, { workgroups: 4, iterations: 4000 });
  try {
    const c = await checkTicks(g, busy, { targetMs: 40 });
    assert(c.repetitions >= 1);
    assert(c.ratio > 0.5 && c.ratio < 2, `tick ratio ${c.ratio}`);
  } finally {
    busy.destroy();
  }
});

Deno.test("checkTicks() keeps the timing whose wall clock was not inflated", async () => {
  const g = await gpu();
  if (!g.hasTimestamps) return;
  const busy = await busyPass(g, { workgroups: 4, iterations: 4000 });
  try {
    // One unit of work that lasts at least 40 ms on this adapter.
    const { repetitions } = await checkTicks(g, busy, { targetMs: 40, trials: 1 });
    const heavy: PassSpec = {
      label: "heavy busy",
      encode(pass) {
        for (let i = 0; i < repetitions; i++) busy.encode(pass);
      },
    };
    // A wall clock that adds a second to two of every three timed passes (as a late completion
    // callback would), after the submit floor's 10 readings: the first pass already looks long
    // enough, and of the three timings of it only the last is clean.
    let calls = 0;
    let offset = 0;
    const now = () => {
      const n = calls++ - 10;
      if (n >= 0 && n % 2 === 1 && Math.floor(n / 2) % 3 !== 2) offset += 1000;
      return performance.now() + offset;
    };
    const c = await checkTicks(g, heavy, { targetMs: 40, trials: 3, now });
    assertEquals(c.trials, 3);
    assertEquals(c.repetitions, 1);
    assert(c.ratio > 0.5 && c.ratio < 2, `tick ratio ${c.ratio} (inflated timings kept?)`);
  } finally {
    busy.destroy();
  }
});

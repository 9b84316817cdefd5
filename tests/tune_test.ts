import { FakeClock, FakeTimer } from "../bench/timer.ts";
import {
  delegatedOptions,
  delegatesFirst,
  describeOptions,
  kernelFamilies,
  mergeTuning,
  parseTuning,
  storedChoices,
  type Tunable,
  TUNABLES,
  tune,
  type TuneOptions,
  tuningCandidates,
  type TuningEntry,
  TuningError,
  tuningPath,
} from "../bench/tune.ts";
import { benchCommand } from "../cli/commands/bench.ts";
import { tuneCommand } from "../cli/commands/tune.ts";
import { ExitCode, UsageError } from "../cli/errors.ts";
import { captureIo } from "../cli/io.ts";
import { Command } from "../deps/commander.ts";
import type { AttentionMethod, KernelCaps, MethodName } from "../kernels/method.ts";
import { parseResults } from "../results/document.ts";
import { levelGridTree } from "../workloads/level_grid.ts";
import { fakeMethod, TINY_SHAPE } from "./_bench_fake.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { testGpu } from "./_gpu.ts";

const FMA_ONLY: KernelCaps = {
  runtime: "deno",
  matrix: null,
  subgroups: true,
  subgroupSize: 32,
  workgroupStorage: 32768,
};
const WITH_MATRIX: KernelCaps = {
  ...FMA_ONLY,
  runtime: "dawn",
  matrix: { componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 },
};

Deno.test("tuningCandidates() is the product of the tunables that matter for a method", () => {
  assertEquals(kernelFamilies(FMA_ONLY, "f16"), ["fma"]);
  assertEquals(kernelFamilies(WITH_MATRIX, "f16"), ["fma", "mma"]);
  assertEquals(kernelFamilies(WITH_MATRIX, "f32"), ["fma"]);
  // The default first, so a later candidate that changes nothing is the one marked the same: each
  // block size with the FMA kernel's tiles (changes 26 and 28).
  const t128 = { threads: 128, rows: 64, keys: 32, qResident: "none" };
  const t256 = { threads: 256, rows: 64, keys: 64, qResident: "f16" };
  const t64 = { threads: 64, rows: 32, keys: 32, qResident: "none" };
  const t128k64 = { threads: 128, rows: 64, keys: 64, qResident: "none", storage: 24576 };
  const t128s16 = { ...t128, storage: 16384 };
  const tiles = [t128, t256, t64, t128k64, t128s16];
  assertEquals(
    tuningCandidates("deft-flatten", FMA_ONLY, "f16"),
    [128, 64, 256, 512].flatMap((blockSize) =>
      tiles.map((fma) => ({ blockSize, kernel: "fma", fma }))
    ),
  );
  // The matrix tile is tried only with the mma family, the FMA tile only with fma: 4 x (5 + 6).
  const both = tuningCandidates("deft-flatten", WITH_MATRIX, "f16");
  assertEquals(both.length, 44);
  assertEquals(both.slice(4, 7), [
    { blockSize: 128, kernel: "fma", fma: t128s16 },
    { blockSize: 128, kernel: "mma", mma: { rows: 32, keys: 16 } },
    { blockSize: 128, kernel: "mma", mma: { rows: 16, keys: 16 } },
  ]);
  assertEquals(describeOptions(both[5]!), "blockSize=128 kernel=mma mma.rows=32 mma.keys=16");
  // A pinned option is not tried, and what depends on it follows it.
  assertEquals(
    tuningCandidates("deft-flatten", WITH_MATRIX, "f16", { fixed: { kernel: "fma", fma: {} } }),
    [{ blockSize: 128 }, { blockSize: 64 }, { blockSize: 256 }, { blockSize: 512 }],
  );
  assertEquals(
    tuningCandidates("deft-flatten", WITH_MATRIX, "f16", { fixed: { kernel: "fma" } }).length,
    20,
  );
  assertEquals(
    tuningCandidates("deft-node", WITH_MATRIX, "f16", { fixed: { kernel: "mma" } }).length,
    6,
  );
  // sequence has no matrix tile: its split counts under its one kernel family, and the matrix
  // family (which runs the same kernel; tune reports it as the same plan).
  assertEquals(tuningCandidates("sequence", WITH_MATRIX, "f16"), [
    ...[1024, 1536, 2048, 768].map((targetWorkgroups) => ({
      kernel: "fma",
      sequence: { targetWorkgroups },
    })),
    { kernel: "mma" },
  ]);
  assertEquals(tuningCandidates("deft-node-chunk", FMA_ONLY, "f32").length, 3 * 5);
  // Data-driven: a new tunable is one more entry.
  const extra: Tunable[] = [
    ...TUNABLES,
    { option: "targetWorkgroups", methods: ["tree-mask"], values: () => [0, 264] },
  ];
  assertEquals(tuningCandidates("tree-mask", FMA_ONLY, "f32", { tunables: extra }), [
    { kernel: "fma", targetWorkgroups: 0 },
    { kernel: "fma", targetWorkgroups: 264 },
  ]);
});

/** A correct fake whose plan (and so its identity) follows the block size. */
function blockAware(name: MethodName, wrongAt?: number): AttentionMethod {
  const right = fakeMethod(name) as AttentionMethod;
  const wrong = fakeMethod(name, { scale: 1.5 }) as AttentionMethod;
  return {
    name,
    description: "test-only, plan follows blockSize",
    plan(input) {
      const p = right.plan(input);
      return { ...p, stats: { ...p.stats, blockSize: input.options.blockSize } };
    },
    prepare(gpu, plan, problem) {
      const m = plan.stats.blockSize === wrongAt ? wrong : right;
      return m.prepare(gpu, plan, problem);
    },
  };
}

const TREES = [
  { name: "grid", tree: levelGridTree([{ nodes: 1, tokens: 40 }, { nodes: 6, tokens: 1 }]) },
  { name: "pair", tree: levelGridTree([{ nodes: 1, tokens: 20 }, { nodes: 2, tokens: 3 }]) },
];

async function runTune(
  method: AttentionMethod,
  medianNs: (blockSize: number, tree: string) => number,
  over: Partial<TuneOptions> = {},
  speedOn: (tree: string) => number = () => 1,
): Promise<TuningEntry> {
  const g = await testGpu();
  const clock = new FakeClock();
  // Candidates are keyed `tree/method#index`, in the order of the block sizes below. The GPU runs
  // at speedOn(tree) from the moment tune starts on that tree (its clock reference too).
  const sizes = [128, 64, 256, 512];
  let speed = 1;
  const timer = new FakeTimer({
    sample: (label) => {
      if (!label.includes("/")) return REFERENCE_NS / speed; // the clock reference (and its sizing)
      const [tree, rest] = label.split("/");
      return medianNs(sizes[Number(rest!.split("#")[1])]!, tree!) / speed;
    },
    clock,
  });
  over = {
    ...over,
    onStep: (m) => {
      const tree = / on (\w+):/.exec(m)?.[1];
      if (tree) speed = speedOn(tree);
    },
  };
  const [entry] = await tune(g, timer, {
    methods: [method],
    trees: TREES,
    shape: TINY_SHAPE,
    dtype: "f32",
    seed: 3,
    timing: {
      warmupMs: 1,
      budgetMs: 10,
      minSamples: 3,
      maxSamples: 10,
      targetRelativeCi: 0.05,
      cold: false,
      interleaved: true,
    },
    verifyRows: 8,
    fixed: { kernel: "fma", fma: {} }, // the block size alone (the fake methods ignore the tile)
    now: clock.now,
    ...over,
  });
  return entry!;
}

Deno.test("tune() verifies every candidate, scores by geometric mean and picks the fastest", async () => {
  const e = await runTune(
    blockAware("deft-flatten", 512),
    (b, tree) => (b === 256 ? 800 : 1000) * (tree === "grid" ? 2 : 1),
  );
  assertEquals(e.method, "deft-flatten");
  assertEquals(e.candidates.map((c) => c.options.blockSize), [128, 64, 256, 512]);
  assertEquals(e.candidates.map((c) => c.status), ["ok", "ok", "ok", "failed"]);
  assert(/relative error/.test(e.candidates[3]!.message!), e.candidates[3]!.message!);
  assertEquals(e.candidates[3]!.score, null); // a wrong candidate cannot win
  assertEquals(e.candidates[2]!.mediansNs, [1600, 800]);
  assertEquals(e.candidates[2]!.score, 1);
  assert(Math.abs(e.candidates[0]!.score! - 1.25) < 1e-12);
  assertEquals(e.winner, 2);
  assertEquals(e.choice, { blockSize: 256 });
  assertEquals(e.trees.map((t) => t.name), ["grid", "pair"]);
  assertEquals(e.cold, false); // warm caches, recorded
});

/** A correct fake only when its plan gets `sequence`'s split count `want` (else it computes wrong). */
function delegateAware(want: number): AttentionMethod {
  const right = fakeMethod("deft-flatten") as AttentionMethod;
  const wrong = fakeMethod("deft-flatten", { scale: 1.5 }) as AttentionMethod;
  return {
    name: "deft-flatten",
    description: "test-only, right only with the delegated split count",
    plan(input) {
      const p = right.plan(input);
      const got = input.options.sequence?.targetWorkgroups ?? 0;
      return { ...p, stats: { ...p.stats, blockSize: input.options.blockSize, seq: got } };
    },
    prepare(gpu, plan, problem) {
      return (plan.stats.seq === want ? right : wrong).prepare(gpu, plan, problem);
    },
  };
}

Deno.test("tune() runs a method's candidates with its delegates' choice, as bench runs it", async () => {
  // deft-flatten's Flash-Decoding parts take sequence's stored split count.
  const stored = { sequence: { sequence: { targetWorkgroups: 1536 } } };
  const e = await runTune(delegateAware(1536), () => 1000, { stored });
  assertEquals(e.delegated, { sequence: { targetWorkgroups: 1536 } });
  assert(e.candidates.every((c) => c.status !== "failed"), "every candidate ran with it");
  // Without a stored choice the candidates run with the default split count.
  await assertRejects(() => runTune(delegateAware(1536), () => 1000), Error, /No candidate/);
  // Pinned on the command line, the pin wins.
  assertEquals(
    delegatedOptions("deft-flatten", stored, { sequence: { targetWorkgroups: 768 } }),
    {},
  );
  assertEquals(delegatedOptions("deft-node", stored), {}); // no delegates
  // A delegate tuned in the same call goes first, so its new choice is the one applied.
  const order = (names: MethodName[]) => delegatesFirst(names.map((name) => ({ name })));
  assertEquals(order(["deft-flatten", "sequence"]).map((m) => m.name), [
    "sequence",
    "deft-flatten",
  ]);
  assertEquals(order(["deft-node", "deft-flatten"]).map((m) => m.name), [
    "deft-node",
    "deft-flatten",
  ]);
});

/** Time of one pass of the fake clock reference at full speed, ns. */
const REFERENCE_NS = 50_000;

Deno.test("tune() keeps the GPU at its clock like bench, and records and flags timings below it", async () => {
  // The GPU runs at full speed on the first tree and at 60 % on the second.
  const e = await runTune(
    blockAware("deft-flatten"),
    (b) => (b === 256 ? 800 : 1000),
    { clockGuard: true },
    (tree) => (tree === "pair" ? 0.6 : 1),
  );
  for (const c of e.candidates.filter((c) => c.status === "ok")) {
    const [grid, pair] = c.clockFractions!;
    assert(Math.abs(grid! - 1) < 1e-9, `${describeOptions(c.options)}: ${grid}`);
    assert(Math.abs(pair! - 0.6) < 1e-9, `${describeOptions(c.options)}: ${pair}`);
  }
  const ok = e.candidates.filter((c) => c.status === "ok" && c.sameAs === null);
  assertEquals(e.lowClock, ok.map((c) => `${describeOptions(c.options)} on pair`));
  // Without the guard nothing is recorded.
  const off = await runTune(blockAware("deft-flatten"), () => 1000);
  assertEquals(off.lowClock, undefined);
  assertEquals(off.candidates[0]!.clockFractions, undefined);
});

Deno.test("tune() keeps the default within the tie margin and marks candidates that change nothing", async () => {
  // 256 is 0.5 % faster than the default 128: a tie, so the default stays.
  const tie = await runTune(blockAware("deft-flatten"), (b) => (b === 256 ? 995 : 1000));
  assertEquals(tie.choice, { blockSize: 128 });
  assertEquals(tie.winner, 0);
  const strict = await runTune(blockAware("deft-flatten"), (b) => (b === 256 ? 995 : 1000), {
    tieMargin: 0,
  });
  assertEquals(strict.choice, { blockSize: 256 });
  // A plan that ignores the block size: every later candidate is the same as the first.
  const same = await runTune(fakeMethod("deft-flatten") as AttentionMethod, (b) => 1000 - b);
  assertEquals(same.candidates.map((c) => c.status), ["ok", "same", "same", "same"]);
  assertEquals(same.candidates[1]!.sameAs, 0);
  assertEquals(same.choice, {}); // nothing to choose
});

function doc(entries: unknown[] = [], over: Record<string, unknown> = {}) {
  return JSON.stringify({
    format: "deft-bench/tuning",
    version: 1,
    adapterKey: "nvidia-hopper-h200",
    adapter: "NVIDIA H200",
    runtime: { name: "dawn", version: "dawn (npm webgpu@0.6.2)" },
    entries,
    ...over,
  });
}

const ENTRY = {
  method: "deft-flatten",
  dtype: "f16",
  shape: "llama3-8b",
  choice: { blockSize: 256, kernel: "mma" },
  winner: 0,
  tunedAt: "2026-01-01T00:00:00.000Z",
  trees: [],
  candidates: [{}],
};

Deno.test("parseTuning() validates a tuning file and names the file and the field", () => {
  const expect = { adapterKey: "nvidia-hopper-h200", runtime: "dawn" as const };
  const ok = parseTuning(doc([ENTRY]), "t.json", expect);
  assertEquals(storedChoices(ok, "f16", ["deft-flatten", "sequence"])!.byMethod, {
    "deft-flatten": { blockSize: 256, kernel: "mma" },
  });
  assertEquals(storedChoices(ok, "f32", ["deft-flatten"]), null);
  // The matrix tile, an option group with no default, is a valid choice (tune writes it).
  const tiled = {
    ...ENTRY,
    choice: { blockSize: 512, kernel: "mma", mma: { rows: 32, keys: 16 } },
  };
  assertEquals(
    storedChoices(parseTuning(doc([tiled]), "t.json", expect), "f16", ["deft-flatten"])!.byMethod,
    { "deft-flatten": { blockSize: 512, kernel: "mma", mma: { rows: 32, keys: 16 } } },
  );
  const bad: [string, RegExp][] = [
    ["{", /^t\.json: not valid JSON/],
    [doc([], { format: "x" }), /^t\.json: format is "x"/],
    [doc([], { version: 9 }), /version 9 is unknown/],
    [doc([{ ...ENTRY, method: "flash" }]), /entries\[0\]\.method must be a method name/],
    [
      doc([{ ...ENTRY, choice: { blockSize: -1 } }]),
      /entries\[0\]\.choice\.blockSize must be an integer >= 1, got -1/,
    ],
    [doc([{ ...ENTRY, choice: { kernel: "tc" } }]), /choice\.kernel must be one of auto, fma, mma/],
    [doc([{ ...ENTRY, choice: { tile: 8 } }]), /choice\.tile must be an unknown method option/],
    [
      doc([{ ...ENTRY, choice: { mma: { rows: 0 } } }]),
      /choice\.mma must be an object of rows \(an integer >= 1\), keys/,
    ],
    [doc([{ ...ENTRY, winner: 3 }]), /entries\[0\]\.winner must be the index of a candidate/],
    [doc([ENTRY, ENTRY]), /entries\[1\] repeats deft-flatten f16/],
    [doc([{ ...ENTRY, cold: "yes" }]), /entries\[0\]\.cold must be a boolean/],
  ];
  for (const [text, re] of bad) {
    assertThrows(() => parseTuning(text, "t.json"), TuningError, re);
  }
  assertThrows(
    () => parseTuning(doc([]), "t.json", { ...expect, adapterKey: "amd" }),
    TuningError,
    /t\.json was tuned on nvidia-hopper-h200, not on this adapter \(amd\)/,
  );
  assertThrows(
    () => parseTuning(doc([]), "t.json", { ...expect, runtime: "deno" }),
    TuningError,
    /tuned on runtime dawn, not deno/,
  );
  // A newer entry of the same method and dtype replaces the old one; others stay.
  const f32 = { ...ENTRY, dtype: "f32", choice: { blockSize: 64 } };
  const merged = mergeTuning(
    parseTuning(doc([ENTRY, f32]), "t.json"),
    { adapterKey: "k", adapter: "a", runtime: { name: "dawn", version: "v" } },
    [{ ...ENTRY, choice: { blockSize: 512 } } as unknown as TuningEntry],
  );
  assertEquals(merged.entries.map((e) => [e.dtype, e.choice.blockSize]), [["f32", 64], [
    "f16",
    512,
  ]]);
  assertEquals(
    tuningPath(
      { vendor: "NVIDIA", architecture: "hopper", description: "H200", device: "" },
      "dawn",
    ),
    "out/tuning/nvidia-hopper-h200-dawn.json",
  );
});

const TINY = [
  "few-shot",
  "--prompt",
  "24",
  "--branches",
  "2",
  "--generated",
  "3",
  "--shape",
  "4/2/16/2",
  "--dtype",
  "f32",
  "--budget-ms",
  "10",
  "--warmup-ms",
  "2",
  "--min-samples",
  "3",
  "--max-samples",
  "6",
  "--verify-rows",
  "4",
];

async function cli(
  make: typeof benchCommand | typeof tuneCommand,
  args: string[],
  methods: Map<MethodName, AttentionMethod>,
) {
  const io = captureIo();
  const program = new Command().exitOverride().configureOutput({
    writeOut: io.out,
    writeErr: io.err,
  });
  program.addCommand(make(io, { methods }).exitOverride());
  await program.parseAsync(args, { from: "user" });
  return io;
}

/** `bench` of the tiny tree, one sample, no calibration, with the tuning `file` (and `extra`). */
function benchTuned(
  file: string,
  out: string,
  methods: Map<MethodName, AttentionMethod>,
  extra: string[] = [],
) {
  return cli(benchCommand, [
    "bench",
    ...TINY,
    "--samples",
    "1",
    "--no-calibrate",
    "--tuning",
    file,
    ...extra,
    "-o",
    out,
  ], methods);
}

Deno.test("tune stores the winner; bench applies it, says so, records it, and explicit flags win", async () => {
  const methods = new Map<MethodName, AttentionMethod>([
    ["sequence", fakeMethod("sequence") as AttentionMethod],
    ["deft-flatten", blockAware("deft-flatten")],
  ]);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/tuning.json`;
    const t = await cli(tuneCommand, ["tune", ...TINY, "--samples", "2", "-o", file], methods);
    assert(t.stdout.includes(`tuning: ${file}`), t.stdout);
    assert(/deft-flatten \(f32, custom\)/.test(t.stdout), t.stdout);
    const g = await testGpu();
    const stored = parseTuning(await Deno.readTextFile(file), file);
    assertEquals(stored.runtime.name, g.runtime.name);
    const entry = stored.entries[0]!;
    assertEquals(entry.trees.length, 2); // --samples 2 of one workload
    assertEquals(Object.keys(entry.choice), ["blockSize"]);
    const blockSize = entry.choice.blockSize as number;

    // Stored tuning, applied and said; explicit --block-size overrides it.
    const out = `${dir}/a.json`;
    const b = await benchTuned(file, out, methods);
    assert(b.stderr.includes(`tuning: ${file}`), b.stderr);
    assert(b.stderr.includes(`deft-flatten blockSize=${blockSize}`), b.stderr);
    // tune timed warm caches (its default) and says so; so is this run, so nothing more is said.
    assertEquals(entry.cold, false);
    assert(b.stderr.includes(", warm caches)"), b.stderr);
    assert(!b.stderr.includes("this run's are"), b.stderr);
    const a = parseResults(await Deno.readTextFile(out), out);
    assertEquals(a.runtimes[0]!.tuning!.applied, { "deft-flatten": { blockSize } });
    const flat = a.workloads[0]!.snapshots[0]!.cases.find((c) => c.method === "deft-flatten")!;
    assertEquals(flat.options.blockSize, blockSize);
    assertEquals(flat.stats.blockSize, blockSize);

    const out2 = `${dir}/b.json`;
    const c = await benchTuned(file, out2, methods, ["--block-size", "32", "--cold"]);
    assert(/overrides the stored blockSize/.test(c.stderr), c.stderr);
    // A cold run is told that the tuning it applies was timed warm.
    assert(c.stderr.includes("tuned with warm caches, this run's are cold"), c.stderr);
    const d = parseResults(await Deno.readTextFile(out2), out2);
    assertEquals(d.runtimes[0]!.tuning, null);
    assertEquals(
      d.workloads[0]!.snapshots[0]!.cases.find((x) => x.method === "deft-flatten")!.options
        .blockSize,
      32,
    );

    // --no-tuning ignores it; a missing or malformed file is bad input.
    const e = await cli(benchCommand, [
      "bench",
      ...TINY,
      "--samples",
      "1",
      "--no-calibrate",
      "--no-tuning",
      "-o",
      `${dir}/c.json`,
    ], methods);
    assert(!e.stderr.includes("tuning:"), e.stderr);
    await assertRejects(
      () =>
        cli(benchCommand, [
          "bench",
          ...TINY,
          "--no-calibrate",
          "--tuning",
          `${dir}/none.json`,
          "-o",
          `${dir}/d.json`,
        ], methods),
      UsageError,
      /none\.json does not exist/,
    );
    await Deno.writeTextFile(`${dir}/bad.json`, `{"format":"deft-bench/tuning","version":1}`);
    await assertRejects(
      () =>
        cli(benchCommand, [
          "bench",
          ...TINY,
          "--no-calibrate",
          "--tuning",
          `${dir}/bad.json`,
          "-o",
          `${dir}/e.json`,
        ], methods),
      TuningError,
      /bad\.json: adapterKey must be a string/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench gives deft-flatten's Flash-Decoding parts sequence's stored variant, unless told otherwise", async () => {
  const methods = new Map<MethodName, AttentionMethod>([
    ["deft-flatten", blockAware("deft-flatten")],
  ]);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/tuning.json`;
    await cli(tuneCommand, ["tune", ...TINY, "--samples", "1", "-o", file], methods);
    // The stored tuning gains a sequence entry (as `tune --methods sequence` would store it).
    const doc = JSON.parse(await Deno.readTextFile(file));
    const own = doc.entries[0];
    doc.entries.push({
      ...own,
      method: "sequence",
      choice: { sequence: { targetWorkgroups: 768 } },
      winner: 0,
    });
    await Deno.writeTextFile(file, JSON.stringify(doc));
    const blockSize = own.choice.blockSize;
    const run = async (extra: string[], out: string) => {
      const io = await benchTuned(file, out, methods, extra);
      const r = parseResults(await Deno.readTextFile(out), out);
      const flat = r.workloads[0]!.snapshots[0]!.cases.find((c) => c.method === "deft-flatten")!;
      return { io, r, flat };
    };
    const a = await run([], `${dir}/a.json`);
    assert(a.io.stderr.includes("sequence.targetWorkgroups=768"), a.io.stderr);
    assertEquals(a.r.runtimes[0]!.tuning!.applied["deft-flatten"], {
      ...(blockSize !== undefined ? { blockSize } : {}),
      sequence: { targetWorkgroups: 768 },
    });
    assertEquals(a.flat.options.sequence, { targetWorkgroups: 768 });
    // The command line's sequence group wins over the stored one.
    const b = await run(["--variant", "sequence.targetWorkgroups=1024"], `${dir}/b.json`);
    assertEquals(b.flat.options.sequence, { targetWorkgroups: 1024 });
    assert(!b.io.stderr.includes("sequence.targetWorkgroups=768"), b.io.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tune exits 1 when a candidate computes wrong results, after storing the others' winner", async () => {
  const methods = new Map<MethodName, AttentionMethod>([
    ["deft-flatten", blockAware("deft-flatten", 64)],
  ]);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/t.json`;
    const io = captureIo();
    const program = new Command().exitOverride().configureOutput({
      writeOut: io.out,
      writeErr: io.err,
    });
    program.addCommand(tuneCommand(io, { methods }).exitOverride());
    await assertRejects(
      () => program.parseAsync(["tune", ...TINY, "-o", file, "--quiet"], { from: "user" }),
      ExitCode,
    );
    // The five FMA tiles at block size 64.
    assert(/5 candidate\(s\) computed wrong results/.test(io.stderr), io.stderr);
    const stored = parseTuning(await Deno.readTextFile(file), file);
    assert(stored.entries[0]!.choice.blockSize !== 64);
    const at64 = stored.entries[0]!.candidates.filter((c) => c.options.blockSize === 64);
    assertEquals(at64.map((c) => c.status), Array(5).fill("failed"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Regression tests for the defects of the bad-input battery (issue 8, items 1-14): each test
 * names its item and failed before its fix.
 */

import { parseCalibrationDocument } from "../bench/calibrate.ts";
import { type BenchConfig, runBench } from "../bench/run.ts";
import { FakeClock, FakeTimer } from "../bench/timer.ts";
import { benchCommand } from "../cli/commands/bench.ts";
import { parseSizes } from "../cli/commands/calibrate.ts";
import { chooseDtype } from "../cli/dtype.ts";
import { ExitCode, UsageError } from "../cli/errors.ts";
import { captureIo } from "../cli/io.ts";
import { isUsage, main } from "../cli/main.ts";
import { Command, InvalidArgumentError } from "../deps/commander.ts";
import { testGpu } from "./_gpu.ts";
import {
  type AttentionMethod,
  DEFAULT_METHOD_OPTIONS,
  type MethodName,
} from "../kernels/method.ts";
import { compareRuns } from "../report/compare.ts";
import { buildDashboard } from "../report/dashboard.ts";
import { parseResults, ResultsError } from "../results/document.ts";
import { renderReport } from "../report/report.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { parseRun, stringifyRun, stringifyTree } from "../workloads/format.ts";
import { levelGridTree } from "../workloads/level_grid.ts";
import { ReasoningRun } from "../workloads/reasoning.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import { TreeError } from "../workloads/tree.ts";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { goodRegistry, TINY_SHAPE } from "./_bench_fake.ts";
import { makeRun } from "./_results_fixture.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

async function cli(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

/** The command line in a child process (signals, pipes, environment). */
function spawnCli(args: string[], o: { env?: Record<string, string>; cwd?: string } = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: o.env,
    cwd: o.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** `bench` with test-only methods (no global registry); returns the exit code and output. */
async function bench(args: string[], registry = goodRegistry()) {
  const io = captureIo();
  const program = new Command().exitOverride().configureOutput({
    writeOut: io.out,
    writeErr: io.err,
  });
  program.addCommand(benchCommand(io, { methods: registry }).exitOverride());
  let code = 0;
  try {
    await program.parseAsync(["bench", ...args], { from: "user" });
  } catch (e) {
    if (e instanceof ExitCode) code = e.code;
    else if (isUsage(e)) {
      code = 2;
      io.err(`error: ${(e as Error).message}\n`);
    } else throw e;
  }
  return { code, out: io.stdout, err: io.stderr };
}

/** Small settings for every bench test. */
const TINY = [
  "--shape",
  "4/2/16/2",
  "--dtype",
  "f32",
  "--samples",
  "2",
  "--budget-ms",
  "5",
  "--warmup-ms",
  "1",
  "--min-samples",
  "2",
  "--max-samples",
  "4",
  "--verify-rows",
  "2",
  "--no-calibrate",
  "--quiet",
];
const FEW = ["few-shot", "--prompt", "24", "--branches", "2", "--generated", "3"];

/** The good registry, counting plan() calls: zero calls proves no GPU work happened. */
function countingRegistry(onPlan: () => void = () => {}) {
  const calls = { plan: 0 };
  const reg = new Map<MethodName, AttentionMethod>();
  for (const [name, m] of goodRegistry()) {
    reg.set(name, {
      ...m,
      plan(input) {
        calls.plan++;
        onPlan();
        return m.plan(input);
      },
    } as AttentionMethod);
  }
  return { reg, calls };
}

/** Every reader accepts the results file: report, compare (with itself), dashboard. */
async function readersAccept(path: string, dir: string) {
  parseResults(await Deno.readTextFile(path), path);
  const report = await cli("report", path, "-o", `${dir}/readers.html`, "--force");
  assertEquals(report.code, 0, report.err);
  const compare = await cli("compare", path, path, "--quiet");
  assertEquals(compare.code, 0, compare.err);
  const site = await cli("dashboard", path, "-o", `${dir}/readers-site`, "--force");
  assertEquals(site.code, 0, site.err);
}

const keysOf = (path: string) =>
  parseResults(Deno.readTextFileSync(path), path).workloads.flatMap((w) =>
    w.snapshots.flatMap((s) => s.cases.map((c) => c.key))
  );

Deno.test("#1 bench gives repeated workloads distinct names, so its own readers accept the results", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The same generator twice, and two files with one base name.
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    const tree = stringifyTree({
      nodes: [{ id: 0, parent: null, tokens: 9 }, { id: 1, parent: 0, tokens: 2 }],
      queries: [{ node: 1 }],
    });
    await Deno.writeTextFile(`${dir}/a/x.json`, tree);
    await Deno.writeTextFile(`${dir}/b/x.json`, tree);
    const r = await bench([
      ...FEW,
      "few-shot",
      `${dir}/a/x.json`,
      `${dir}/b/x.json`,
      ...TINY,
      "-o",
      `${dir}/twice`,
    ]);
    assertEquals(r.code, 0, r.err);
    const path = `${dir}/twice/results.json`;
    const keys = keysOf(path);
    assertEquals(new Set(keys).size, keys.length);
    const names = parseResults(await Deno.readTextFile(path), path).workloads.map((w) => w.name);
    assertEquals(names, ["few-shot-p24-b2-g3", "few-shot-p24-b2-g3-2", "x", "x-2"]);
    await readersAccept(path, dir);

    // A documented sweep over a parameter the name leaves out (steps).
    const s = await bench([
      "speculative",
      "--prefix",
      "10",
      "--tree-tokens",
      "4",
      "--sweep",
      "steps=3,4",
      ...TINY,
      "-o",
      `${dir}/sweep`,
    ]);
    assertEquals(s.code, 0, s.err);
    const sweepPath = `${dir}/sweep/results.json`;
    const sweepNames = parseResults(await Deno.readTextFile(sweepPath), sweepPath).workloads
      .map((w) => w.name);
    assertEquals(sweepNames, ["speculative-p10-t4-steps3", "speculative-p10-t4-steps4"]);
    await readersAccept(sweepPath, dir);
    // A sweep over an option the generator does not read is refused, not run twice.
    const useless = await bench([...FEW, "--sweep", "width=2,3", ...TINY, "-o", `${dir}/u`]);
    assertEquals(useless.code, 2);
    assertMatch(useless.err, /--sweep width does not change a few-shot workload/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#1 a run file with two snapshots at one iteration is refused, naming the snapshot", async () => {
  const tree = {
    nodes: [{ id: 0, parent: null, tokens: 4 }, { id: 1, parent: 0, tokens: 1 }],
    queries: [{ node: 1 }],
  };
  const run = stringifyRun({
    workload: { kind: "file", name: "dup", params: {} },
    iterations: 4,
    snapshots: [
      { iteration: 1, weight: 2, tree },
      { iteration: 1, weight: 2, tree },
    ],
  });
  assertThrows(
    () => parseRun(run),
    TreeError,
    /snapshots\[1\]\.iteration 1 is a duplicate: snapshots\[0\] has it too/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/dup.json`, run);
    const { reg, calls } = countingRegistry();
    const r = await bench([`${dir}/dup.json`, ...TINY, "-o", `${dir}/out`], reg);
    assertEquals(r.code, 2);
    assertMatch(r.err, /snapshots\[1\]\.iteration/);
    assertEquals(calls.plan, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#2 the results reader refuses zero, negative and infinite timings, naming the field; compare exits 2", async () => {
  const good = makeRun();
  const at = "workloads[0].snapshots[0].cases[0].timing";
  for (
    const [mutate, re] of [
      [(t: Record<string, unknown>) => {
        t.samplesNs = (t.samplesNs as number[]).map(() => 0);
        t.medianNs = 0;
      }, /samplesNs\[0\] must be a positive number of ns, got 0/],
      [(t: Record<string, unknown>) => {
        (t.samplesNs as number[])[3] = -120;
      }, /samplesNs\[3\] must be a positive number of ns, got -120/],
      [(t: Record<string, unknown>) => {
        t.medianNs = -5;
      }, /medianNs must be a positive number, got -5/],
    ] as const
  ) {
    const doc = structuredClone(good);
    mutate(doc.workloads[0]!.snapshots[0]!.cases[0]!.timing as unknown as Record<string, unknown>);
    assertThrows(
      () => parseResults(JSON.stringify(doc), "base.json"),
      ResultsError,
      new RegExp(`base\\.json: ${at.replace(/[[\].]/g, "\\$&")}\\.${re.source}`),
    );
  }
  const huge = JSON.stringify(good).replace(/"medianNs":[0-9.e+]+/, '"medianNs":1e400');
  assertThrows(() => parseResults(huge, "h.json"), ResultsError, /medianNs must be .*too large/);

  // The case of the battery: an all-zero baseline passed as "noise" with exit 0.
  const dir = await Deno.makeTempDir();
  try {
    const base = structuredClone(good);
    for (const w of base.workloads) {
      for (const s of w.snapshots) {
        for (const c of s.cases) {
          c.timing!.samplesNs = c.timing!.samplesNs.map(() => 0);
          c.timing!.medianNs = 0;
        }
      }
    }
    await Deno.writeTextFile(`${dir}/base.json`, JSON.stringify(base));
    await Deno.writeTextFile(`${dir}/head.json`, JSON.stringify(good));
    const r = await cli("compare", `${dir}/base.json`, `${dir}/head.json`);
    assertEquals(r.code, 2, r.err);
    assertMatch(r.err, /base\.json: workloads\[0\].*samplesNs\[0\] must be a positive number/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#3 an output that is, holds or lies inside an input is refused, and --force deletes only what dashboard wrote", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const runA = `${dir}/runA`;
    await Deno.mkdir(runA);
    await Deno.writeTextFile(`${runA}/results.json`, JSON.stringify(makeRun()));
    await Deno.writeTextFile(`${runA}/notes.txt`, "mine");
    const refused = [
      [runA, "-o", runA, "--force"],
      [runA, "-o", dir, "--force"],
      [runA, "-o", `${runA}/site`],
      [`${runA}/results.json`, "-o", `${runA}/results.json`, "--force"],
    ];
    for (const args of refused) {
      const r = await cli("dashboard", ...args);
      assertEquals(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assertMatch(r.err, /the output .* (is the input|holds the input|lies inside the input)/);
    }
    // `-o . --force` from the folder that holds the input, as typed in the battery.
    const dot = await spawnCli(["dashboard", "runA", "-o", ".", "--force"], { cwd: dir }).output();
    assertEquals(dot.code, 2, text(dot.stderr));
    assertMatch(text(dot.stderr), /the output \. holds the input runA/);
    assert(!text(dot.stderr).includes("internal error"));
    assertEquals(await Deno.readTextFile(`${runA}/notes.txt`), "mine");
    parseResults(await Deno.readTextFile(`${runA}/results.json`), "r");

    // --force replaces a site dashboard wrote, but not a folder with files it did not write.
    const site = `${dir}/site`;
    assertEquals((await cli("dashboard", runA, "-o", site)).code, 0);
    await Deno.writeTextFile(`${site}/mine.txt`, "keep");
    const foreign = await cli("dashboard", runA, "-o", site, "--force");
    assertEquals(foreign.code, 2);
    assertMatch(foreign.err, /holds 1 file\(s\) deft-bench did not write \(mine\.txt\)/);
    assertEquals(await Deno.readTextFile(`${site}/mine.txt`), "keep");
    await Deno.remove(`${site}/mine.txt`);
    assertEquals((await cli("dashboard", runA, "-o", site, "--force")).code, 0);

    // A symbolic link as the output is written through, never replaced.
    await Deno.symlink(site, `${dir}/link`);
    assertEquals((await cli("dashboard", runA, "-o", `${dir}/link`, "--force")).code, 0);
    assert((await Deno.lstat(`${dir}/link`)).isSymlink);
    assert((await Deno.stat(`${site}/index.html`)).isFile);
    await Deno.writeTextFile(`${dir}/target.html`, "old");
    await Deno.symlink(`${dir}/target.html`, `${dir}/report.html`);
    const report = await cli(
      "report",
      `${runA}/results.json`,
      "-o",
      `${dir}/report.html`,
      "--force",
    );
    assertEquals(report.code, 0, report.err);
    assert((await Deno.lstat(`${dir}/report.html`)).isSymlink);
    assert((await Deno.readTextFile(`${dir}/target.html`)).startsWith("<!DOCTYPE html>"));

    // The other writers: report over its input, bench over its workload file.
    const over = await cli(
      "report",
      `${runA}/results.json`,
      "-o",
      `${runA}/results.json`,
      "--force",
    );
    assertEquals(over.code, 2);
    parseResults(await Deno.readTextFile(`${runA}/results.json`), "r");
    await Deno.writeTextFile(
      `${dir}/t.json`,
      stringifyTree({ nodes: [{ id: 0, parent: null, tokens: 5 }], queries: [{ node: 0 }] }),
    );
    const b = await bench([`${dir}/t.json`, ...TINY, "-o", `${dir}/t.json`, "--force"]);
    assertEquals(b.code, 2);
    assertMatch(await Deno.readTextFile(`${dir}/t.json`), /deft-bench\/tree/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#4 bench checks that its output can be written before any GPU work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "x");
    const { reg, calls } = countingRegistry();
    const r = await bench([...FEW, ...TINY, "-o", `${dir}/file/sub`], reg);
    assertEquals(r.code, 2, r.err);
    assertMatch(r.err, /cannot write .*file\/sub\/results\.json/);
    assertEquals(calls.plan, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#4 when the output cannot be written at the end, the results go to a named fallback file", async () => {
  const dir = await Deno.makeTempDir();
  let fallback: string | null = null;
  try {
    // The output folder turns into a file while the benchmark runs.
    const out = `${dir}/out`;
    const { reg } = countingRegistry(() => {
      try {
        Deno.removeSync(out, { recursive: true });
        Deno.writeTextFileSync(out, "in the way");
      } catch { /* already done */ }
    });
    const r = await bench([...FEW, ...TINY, "-o", out], reg);
    assertEquals(r.code, 1, r.err);
    const m = /cannot write .*out\/results\.json.*; the results were saved to (\S+) instead/.exec(
      r.err,
    );
    if (!m) throw new Error(`no fallback named: ${r.err}`);
    fallback = m[1]!;
    const doc = parseResults(await Deno.readTextFile(fallback), fallback);
    assertEquals(doc.workloads[0]!.snapshots.length, 2);
    assert(!r.err.includes("internal error"), r.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
    if (fallback) await Deno.remove(fallback).catch(() => {});
  }
});

const gpu = testGpu;

function benchConfig(): BenchConfig {
  const reg = goodRegistry();
  return {
    workloads: [
      { run: new FewShotRun({ prompt: 30, branches: 2, generated: 6 }, "a") },
      { run: new FewShotRun({ prompt: 20, branches: 3, generated: 6 }, "b") },
    ],
    methods: [reg.get("sequence")!, reg.get("deft-flatten")!],
    shape: TINY_SHAPE,
    dtype: "f32",
    methodOptions: { ...DEFAULT_METHOD_OPTIONS },
    samplesPerRun: 3,
    seed: 3,
    scale: 1,
    scaleReason: null,
    verify: false,
    verifyRows: 2,
    timing: {
      warmupMs: 1,
      budgetMs: 5,
      minSamples: 3,
      maxSamples: 5,
      targetRelativeCi: 0.05,
      cold: false,
      interleaved: true,
    },
    calibration: null,
    command: ["bench", "test"],
    tickCheck: false,
  };
}

Deno.test("#5 an interrupted run keeps its finished cases as a partial document every reader shows", async () => {
  const g = await gpu();
  const clock = new FakeClock();
  const stop = new AbortController();
  // Interrupt during the 4th snapshot's measurement: 3 snapshots x 2 methods are finished.
  let batches = 0;
  const timer = new FakeTimer({
    sample: () => 1000,
    clock,
    overheadMs: 0,
  });
  const time = timer.time.bind(timer);
  const snapshotsSeen = new Set<string>();
  timer.time = (passes) => {
    // Case passes only (keys `workload@iteration/method`): the clock guard's passes are others.
    for (const p of passes) if (p.label.includes("/")) snapshotsSeen.add(p.label.split("/")[0]!);
    if (snapshotsSeen.size === 4 && ++batches === 1) stop.abort("SIGINT");
    return time(passes);
  };
  const doc = await runBench(g, benchConfig(), {
    timer,
    now: clock.now,
    probeHost: false,
    signal: stop.signal,
  });
  assertEquals(doc.partial, {
    reason: "interrupted by SIGINT",
    completedCases: 6,
    plannedCases: 12,
  });
  assertEquals(doc.workloads.map((w) => [w.name, w.snapshots.length]), [["a", 3]]);
  assert(doc.workloads[0]!.totals.every((t) => t.complete)); // workload a finished
  assert(doc.warnings.some((w) => w.code === "partial"));
  const parsed = parseResults(JSON.stringify(doc), "partial.json");
  assertEquals(parsed.partial?.completedCases, 6);

  // Readers accept it and show it as partial.
  assertMatch(
    renderReport([doc]),
    /<b>Partial run<\/b>: interrupted by SIGINT; it holds 6 of the 12/,
  );
  const index = buildDashboard([{ doc }]).get("index.html")!;
  assertMatch(index, /partial: 6 of 12 cases/);
  const full = structuredClone(doc);
  delete full.partial;
  const c = compareRuns(full, doc);
  assert(c.notes.some((n) => /head run is partial \(interrupted by SIGINT: 6 of 12/.test(n)));
});

Deno.test("#5 an interruption inside a workload leaves its totals marked incomplete", async () => {
  const g = await gpu();
  const clock = new FakeClock();
  const stop = new AbortController();
  const timer = new FakeTimer({ sample: () => 1000, clock });
  const time = timer.time.bind(timer);
  const seen = new Set<string>();
  timer.time = (passes) => {
    for (const p of passes) if (p.label.includes("/")) seen.add(p.label.split("/")[0]!);
    if (seen.size === 2) stop.abort("SIGTERM");
    return time(passes);
  };
  const doc = await runBench(g, benchConfig(), {
    timer,
    now: clock.now,
    probeHost: false,
    signal: stop.signal,
  });
  assertEquals(doc.partial?.reason, "interrupted by SIGTERM");
  assertEquals(doc.workloads[0]!.snapshots.length, 1);
  for (const t of doc.workloads[0]!.totals) {
    assertEquals(t.complete, false);
    assertEquals(t.speedupVsSequence, null);
  }
  parseResults(JSON.stringify(doc), "p.json");
});

/** Starts a slow bench in a child process and waits until it has finished `cases` cases. */
async function slowBench(out: string, cases: number) {
  const child = spawnCli([
    "bench",
    "few-shot",
    "--prompt",
    "200",
    "--branches",
    "4",
    "--generated",
    "30",
    // A small head dim and radix, whose kernels compile in about a second on a CPU adapter through
    // OpenGL (the group-attention and Flash-Decoding kernels take a minute or more there, and this
    // child process cannot share the test process's compiled pipelines).
    "--shape",
    "8/2/32/2",
    "--dtype",
    "f32",
    "--samples",
    "20",
    "--budget-ms",
    "500",
    "--max-samples",
    "10000000",
    "--target-ci",
    "0.00001",
    "--no-calibrate",
    "--methods",
    "radix",
    "-o",
    out,
  ]).spawn();
  const reader = child.stderr.getReader();
  let err = "";
  while ((err.match(/^\[\d+\/\d+\]/gm) ?? []).length < cases) {
    const { value, done } = await reader.read();
    if (done) break;
    err += text(value);
  }
  const rest = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return err;
      err += text(value);
    }
  })();
  return { child, stderr: rest };
}

Deno.test("#5 Ctrl-C in bench writes the finished cases marked partial and says where", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/run`;
    const { child, stderr } = await slowBench(out, 2);
    child.kill("SIGINT");
    const status = await child.status;
    const err = await stderr;
    await child.stdout.cancel();
    assertEquals(status.code, 130, err);
    assertMatch(err, new RegExp(`cases written to ${out}/results\\.json`));
    const doc = parseResults(await Deno.readTextFile(`${out}/results.json`), "r");
    const partial = doc.partial;
    if (!partial) throw new Error("not marked partial");
    assert(partial.completedCases >= 2, JSON.stringify(partial));
    assertEquals(partial.plannedCases, 20);
    assert((await Deno.readTextFile(`${out}/results.html`)).includes("Partial run"));
    assertEquals([...Deno.readDirSync(out)].map((e) => e.name).sort(), [
      "results.html",
      "results.json",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#5 a second Ctrl-C quits at once and leaves nothing half-written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/run`;
    const { child, stderr } = await slowBench(out, 1);
    child.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    child.kill("SIGINT");
    const status = await child.status;
    const ms = performance.now() - t0;
    await stderr;
    await child.stdout.cancel();
    assertEquals(status.code, 130);
    assert(ms < 3000, `took ${ms} ms to quit`);
    const left = [...Deno.readDirSync(out)].map((e) => e.name);
    assert(left.every((n) => n === "results.json" || n === "results.html"), left.join(", "));
    if (left.includes("results.json")) {
      parseResults(Deno.readTextFileSync(`${out}/results.json`), "r");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#6 calibrate refuses sizes it cannot measure, and never stores what bench would refuse", async () => {
  assertThrows(
    () => parseSizes("1e-9"),
    InvalidArgumentError,
    /below the smallest read of 16 bytes/,
  );
  const dir = await Deno.makeTempDir();
  try {
    const r = await cli("calibrate", "--sizes", "1e-9", "--quick", "-o", `${dir}/c.json`);
    assertEquals(r.code, 2, r.err);
    await assertRejects(() => Deno.stat(`${dir}/c.json`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // What the battery's `--sizes 1e-9` stored: no read sizes, a peak of -Infinity (null in JSON).
  const bad = {
    format: "deft-bench/calibration",
    version: 1,
    adapter: {},
    timingMode: "timestamp",
    calibration: {
      adapterKey: "x",
      measuredAt: "2025-01-01T00:00:00Z",
      readBandwidth: [],
      peakReadBytesPerS: null,
      f32FlopsPerS: 1e12,
      f16FlopsPerS: null,
      dispatchNs: 1000,
      extraDispatchNs: 10,
    },
  };
  assertThrows(
    () => parseCalibrationDocument(JSON.stringify(bad), "c.json"),
    SyntaxError,
    /c\.json: calibration\.readBandwidth must be a non-empty array/,
  );
  bad.calibration.readBandwidth = [{ bytes: 16, bytesPerS: 1e9 }] as never;
  assertThrows(
    () => parseCalibrationDocument(JSON.stringify(bad), "c.json"),
    SyntaxError,
    /c\.json: calibration\.peakReadBytesPerS must be a finite number, got null/,
  );
});

Deno.test("#6 a corrupt --calibration file is bad input naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/cal.json`, '{"format": "deft-bench/calibration", "vers');
    const args = [...FEW, ...TINY.filter((a) => a !== "--no-calibrate"), "-o", `${dir}/out`];
    const r = await bench([...args, "--calibration", `${dir}/cal.json`]);
    assertEquals(r.code, 2, r.err);
    assertMatch(r.err, new RegExp(`${dir}/cal\\.json: not valid JSON`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#7 a tree with no queries is bad input, refused before any GPU work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/empty.json`;
    await Deno.writeTextFile(
      path,
      stringifyTree({ nodes: [{ id: 0, parent: null, tokens: 100 }], queries: [] }),
    );
    const { reg, calls } = countingRegistry();
    const r = await bench([path, ...TINY, "-o", `${dir}/out`], reg);
    assertEquals(r.code, 2, r.err);
    assertMatch(r.err, /empty\.json: the tree has no queries/);
    assertEquals(calls.plan, 0);
    await assertRejects(() => Deno.stat(`${dir}/out`), Deno.errors.NotFound);
    const run = await cli("run", "sequence", path);
    assertEquals(run.code, 2, run.err);
    assertMatch(run.err, /has no queries/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#8 a number too large for JSON is named as such, not as null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/big.json`;
    await Deno.writeTextFile(
      path,
      '{"format":"deft-bench/tree","version":1,"nodes":[{"id":0,"parent":null,"tokens":1e400}],"queries":[{"node":0}]}',
    );
    const r = await cli("inspect", path);
    assertEquals(r.code, 2);
    assertMatch(
      r.err,
      /nodes\[0\]\.tokens must be a positive integer, got Infinity \(a number too large/,
    );
    assert(!r.err.includes("null"), r.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#9 --dtype f16 without shader-f16 is bad input in run as in bench (one shared check)", async () => {
  const noF16 = { hasF16: false, info: { description: "llvmpipe", vendor: "mesa" } };
  assertThrows(() => chooseDtype(noF16, "f16"), UsageError, /--dtype f16 needs shader-f16/);
  assertEquals(chooseDtype(noF16, undefined), "f32");
  assertEquals(chooseDtype({ ...noF16, hasF16: true }, undefined), "f16");
  // Through the command line on Mesa's OpenGL llvmpipe, which has no shader-f16 (when present).
  const env = { DENO_WEBGPU_BACKEND: "gl" };
  const probe = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "const a = await navigator.gpu.requestAdapter(); console.log(a ? (a.features.has('shader-f16') ? 'f16' : 'nof16') : 'none')",
    ],
    env,
    stdout: "piped",
    stderr: "null",
  }).output();
  if (text(probe.stdout).trim() !== "nof16") return; // no f16-less adapter on this machine
  const r = await spawnCli(
    ["run", "sequence", "few-shot-b20", "--scale", "0.01", "--dtype", "f16"],
    {
      env,
    },
  ).output();
  assertEquals(r.code, 2, text(r.stderr));
  assertMatch(text(r.stderr), /--dtype f16 needs shader-f16/);
});

Deno.test("#10 a closed standard output is a normal end: exit 0, no message", async () => {
  const child = spawnCli(["gen", "few-shot-b50"]).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert(value && value.length > 0);
  await reader.cancel(); // like `| head -c 10`
  const status = await child.status;
  const err = text(new Uint8Array(await new Response(child.stderr).arrayBuffer()));
  assertEquals(err, "");
  assertEquals(status.code, 0);
});

Deno.test("#11 dashboard skips every unreadable or invalid results file by name, and lists them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const runs = `${dir}/runs`;
    await Deno.mkdir(runs);
    const good = JSON.stringify(makeRun());
    await Deno.writeTextFile(`${runs}/good.json`, good);
    await Deno.writeTextFile(`${runs}/truncated.json`, good.slice(0, good.length / 2));
    const bad = JSON.parse(good);
    bad.settings.dtype = "f8";
    await Deno.writeTextFile(`${runs}/badfield.json`, JSON.stringify(bad));
    const r = await cli("dashboard", runs, "-o", `${dir}/site`);
    assertEquals(r.code, 0, r.err);
    assertMatch(r.err, /skipped .*truncated\.json: not valid JSON/);
    assertMatch(r.err, /skipped .*badfield\.json: settings\.dtype must be one of/);
    assertMatch(r.err, /for 1 run\(s\).*skipped 2 file\(s\)/);
    const index = await Deno.readTextFile(`${dir}/site/index.html`);
    assertMatch(index, /2 input file\(s\) are not valid results documents/);
    assert(index.includes("truncated.json") && index.includes("badfield.json"));
    // Named files follow the same rule; with nothing valid left it is bad input.
    const none = await cli("dashboard", `${runs}/truncated.json`, "-o", `${dir}/s2`);
    assertEquals(none.code, 2);
    assertMatch(none.err, /skipped .*truncated\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("#12 the report draws the tree of a very large run without recursion", () => {
  // One node of 16M tokens, cut into blocks of 16.
  const tree = {
    nodes: [{ id: 0, parent: null, tokens: 16_000_000 }, { id: 1, parent: 0, tokens: 3 }],
    queries: [{ node: 1 }, { node: 0 }],
  };
  const doc = makeRun({ workloads: [{ trees: [tree], name: "huge" }], methods: ["sequence"] });
  doc.settings.blockSize = 16; // 1,000,001 blocks
  const html = renderReport([doc]);
  assert(!html.includes("cannot be drawn"), "the tree was not drawn");
  assert(!html.includes("Maximum call stack"));
  assertMatch(html, /1000001 blocks of 16 tokens, drawn in groups of 489 blocks/);
});

Deno.test("#13 impossible generator sizes are refused from the arithmetic, before building", async () => {
  const quick = (fn: () => unknown, re: RegExp) => {
    const t0 = performance.now();
    assertThrows(fn, RangeError, re);
    const ms = performance.now() - t0;
    assert(ms < 1500, `took ${ms} ms`);
  };
  quick(
    () => new FewShotRun({ prompt: 4_000_000, branches: 65_536, generated: 1_000_000 }),
    /reaches 65540000000 KV tokens in one tree, more than the limit of 64000000/,
  );
  quick(
    () =>
      new SpeculativeRun({
        prefix: 15_000_000,
        treeTokens: 4096,
        steps: 1_000_000,
        seed: 1,
        topology: "medusa",
      }),
    /tokens in one node, more than the limit of 16000000/,
  );
  quick(
    () =>
      new ReasoningRun({
        prompt: 100,
        depth: 1000,
        width: 10,
        thoughtMin: 1000,
        thoughtMax: 1_000_000,
        seed: 1,
      }),
    /KV tokens in one tree, more than the limit/,
  );
  quick(
    () =>
      levelGridTree([{ nodes: 1, tokens: 1 }, { nodes: 1_000_000, tokens: 1 }, {
        nodes: 1_000_000,
        tokens: 1,
      }]),
    /reaches 2000001 nodes in one tree, more than the limit of 1000000/,
  );
  const t0 = performance.now();
  const r = await cli(
    "inspect",
    "speculative",
    "--prefix",
    "15000000",
    "--tree-tokens",
    "4096",
    "--steps",
    "1000000",
  );
  assertEquals(r.code, 2);
  assertMatch(r.err, /more than the limit of 16000000/);
  assert(performance.now() - t0 < 3000);
});

Deno.test("#14 with DENO_WEBGPU_BACKEND set and no adapter, the message says the variable may hide one", async () => {
  const env = { DENO_WEBGPU_BACKEND: Deno.build.os === "windows" ? "metal" : "dx12" };
  const r = await spawnCli(["run", "sequence", "few-shot-b20", "--scale", "0.01"], { env })
    .output();
  const err = text(r.stderr);
  if (r.code === 0) return; // that backend exists here after all
  assertEquals(r.code, 1, err);
  assertMatch(err, /DENO_WEBGPU_BACKEND=(dx12|metal): the variable may be hiding an adapter/);
});

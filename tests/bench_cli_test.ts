import {
  BENCH_DEFAULTS,
  benchCommand,
  defaultOutput,
  htmlPath,
  isSoftwareAdapter,
  parseMethods,
  resolveBenchSettings,
  resultsPath,
  SMOKE_DEFAULTS,
} from "../cli/commands/bench.ts";
import { parseSizes } from "../cli/commands/calibrate.ts";
import { ExitCode, UsageError } from "../cli/errors.ts";
import { captureIo } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { Command } from "../deps/commander.ts";
import { parseResults } from "../results/document.ts";
import { fakeRegistry, goodRegistry } from "./_bench_fake.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";

/** Runs `bench` with test-only methods (no global registry), returning the io. */
async function bench(args: string[], registry = goodRegistry(), io = captureIo()) {
  const program = new Command().exitOverride().configureOutput({
    writeOut: io.out,
    writeErr: io.err,
  });
  program.addCommand(benchCommand(io, { methods: registry }).exitOverride());
  await program.parseAsync(["bench", ...args], { from: "user" });
  return io;
}

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
  "--samples",
  "2",
  "--budget-ms",
  "10",
  "--warmup-ms",
  "2",
  "--min-samples",
  "3",
  "--max-samples",
  "10",
  "--verify-rows",
  "4",
  "--no-calibrate",
];

Deno.test("bench writes a valid results document atomically and refuses to overwrite it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const io = await bench([...TINY, "--output", dir, "--quiet", "--cases"]);
    const path = `${dir}/results.json`;
    const doc = parseResults(await Deno.readTextFile(path), path);
    assertEquals(doc.settings.methods, ["sequence", "deft-flatten"]);
    assertEquals(doc.settings.shape.qHeads, 4);
    assertEquals(doc.settings.samplesPerRun, 2);
    assertEquals(doc.calibration, null);
    assertEquals(doc.environment.command.slice(0, 2), ["bench", "few-shot"]);
    assertEquals(doc.workloads[0]!.snapshots.length, 2);
    // On a software adapter the run is a smoke run, and the options given still win.
    assertEquals(doc.settings.smoke != null, isSoftwareAdapter(doc.environment.adapter));
    assertEquals(doc.settings.timing.budgetMs, 10);
    for (const s of doc.workloads[0]!.snapshots) {
      for (const c of s.cases) assertEquals(c.status, "ok");
    }
    assert(io.stdout.includes("few-shot"));
    assert(io.stdout.includes(`results: ${path}`));
    assert((await Deno.readTextFile(`${dir}/results.html`)).startsWith("<!DOCTYPE html>"));
    assert(io.stdout.includes("Cases (roofline")); // --cases
    assertEquals(io.stderr, ""); // --quiet
    // No temporary files are left behind.
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert(names.every((n) => !n.endsWith(".tmp")), names.join(", "));
    // A second run without --force is refused before any work.
    const before = await Deno.readTextFile(path);
    await assertRejects(() => bench([...TINY, "--output", dir, "--quiet"]), UsageError, /--force/);
    assertEquals(await Deno.readTextFile(path), before);
    await bench([...TINY, "--output", path, "--quiet", "--force"]);
    assert((await Deno.readTextFile(path)) !== before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench --json prints only the document; a failed method makes exit 1 after writing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/r.json`;
    const io = captureIo();
    await assertRejects(
      () => bench([...TINY, "--output", out, "--json"], fakeRegistry(), io),
      ExitCode,
    );
    const doc = parseResults(io.stdout.slice(0, io.stdout.lastIndexOf("}") + 1), "stdout");
    const statuses = doc.workloads[0]!.snapshots[0]!.cases.map((c) => `${c.method}:${c.status}`);
    assertEquals(statuses, ["sequence:ok", "radix:failed", "tree-mask:error", "deft-flatten:ok"]);
    assert(io.stderr.includes("failed or errored"));
    assert(!io.stderr.includes("[1/")); // no progress with --json
    parseResults(await Deno.readTextFile(out), out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench progress: plain lines per case when standard error is not a terminal", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const io = await bench([...TINY, "--output", dir]);
    const lines = io.stderr.split("\n").filter((l) => l.startsWith("["));
    assertEquals(lines.length, 4); // 2 snapshots x 2 methods
    assert(lines[0]!.startsWith("[1/4] few-shot-p24-b2-g3@"), lines[0]);
    assert(!io.stderr.includes("\r"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench rejects bad input with exit code 2", async () => {
  const cases: string[][] = [
    ["bench", "no-such-preset"],
    ["bench", "few-shot-b20", "--samples", "0"],
    ["bench", "few-shot-b20", "--methods", "bogus"],
    ["bench", "few-shot-b20", "--shape", "3/2/16"],
    ["bench", "few-shot-b20", "--target-ci", "2"],
    ["bench", "few-shot-b20", "--budget-ms", "-1"],
    ["bench", "few-shot"], // generator without its options
    ["bench", "missing-file.json"],
    ["calibrate", "--sizes", "16,x"],
  ];
  for (const args of cases) {
    const io = captureIo();
    assertEquals(await main(args, io), 2, `${args.join(" ")}: ${io.stderr}`);
    assert(io.stderr.length > 0);
  }
});

Deno.test("bench helpers: methods, output paths, software adapters", () => {
  const reg = fakeRegistry();
  assertEquals(parseMethods(undefined, reg).map((m) => m.name), [
    "sequence",
    "radix",
    "tree-mask",
    "deft-flatten",
  ]);
  assertEquals(parseMethods("deft-flatten, sequence,deft-flatten", reg).map((m) => m.name), [
    "deft-flatten",
    "sequence",
  ]);
  assertThrows(() => parseMethods("cascade", reg), UsageError, /not implemented yet/);
  assertThrows(() => parseMethods("x", new Map()), UsageError, /No attention methods/);
  const d = new Date("2025-01-02T03:04:05.678Z");
  assertEquals(defaultOutput(d), "out/20250102T030405Z/results.json");
  assertEquals(resultsPath("runs/a/", d), "runs/a/results.json");
  assertEquals(resultsPath("x.json", d), "x.json");
  assertEquals(htmlPath("runs/a/results.json"), "runs/a/results.html");
  const info = {
    isFallbackAdapter: false,
    vendor: "mesa",
    description: "llvmpipe (LLVM 15.0.6, 256 bits)",
  };
  assert(isSoftwareAdapter(info));
  assert(!isSoftwareAdapter({ ...info, description: "NVIDIA H100 80GB HBM3", vendor: "nvidia" }));
  assertEquals(parseSizes("16, 0.5"), [16 << 20, 1 << 19]);
});

const LLVMPIPE = "llvmpipe (LLVM 15.0.6, 256 bits)";

Deno.test("bench on a software adapter defaults to a smoke run that says what it is", () => {
  const s = resolveBenchSettings({}, LLVMPIPE);
  assertEquals(
    { ...s, smoke: null, scaleReason: null },
    { ...SMOKE_DEFAULTS, clockGuard: false, smoke: null, scaleReason: null },
  );
  assertEquals(s.scale, 0.02);
  assertEquals(s.shape, "8/2/128");
  assertEquals(s.samples, 1);
  assert(s.smoke !== null && s.scaleReason !== null);
  const smoke = s.smoke ?? "";
  for (
    const text of ["smoke run on a CPU adapter", LLVMPIPE, "verified", "say nothing about GPUs"]
  ) {
    assert(smoke.includes(text), `${text} in ${smoke}`);
  }
  assert(/run on a GPU.*--scale 1/.test(smoke), smoke);
  assert(smoke.includes("no clock guard"));
});

Deno.test("bench smoke defaults: every option given wins over its smoke default", () => {
  const given = {
    shape: "llama3-8b",
    samples: 3,
    budgetMs: 500,
    warmupMs: 50,
    minSamples: 20,
    targetCi: 0.01,
    verifyRows: 64,
    clockGuard: true,
  };
  const s = resolveBenchSettings(given, LLVMPIPE);
  assert(s.smoke !== null); // still a smoke run: no --scale
  assertEquals(s.scale, SMOKE_DEFAULTS.scale);
  const { shape, samples, budgetMs, warmupMs, minSamples, targetCi, verifyRows, clockGuard } = s;
  assertEquals(
    { shape, samples, budgetMs, warmupMs, minSamples, targetCi, verifyRows, clockGuard },
    given,
  );
  assertEquals(s.maxSamples, 20); // at least --min-samples
  const smoke = s.smoke ?? "";
  assert(smoke.includes("shape llama3-8b") && smoke.includes("3 iterations"), smoke);
  assertEquals(resolveBenchSettings({ maxSamples: 4 }, LLVMPIPE).maxSamples, 4);
  assertEquals(resolveBenchSettings({ clockGuard: true }, LLVMPIPE).clockGuard, true);
});

Deno.test("bench --scale on a software adapter is no smoke run; a GPU runs the paper's defaults", () => {
  for (const scale of [1, 0.5]) {
    const s = resolveBenchSettings({ scale }, LLVMPIPE);
    assertEquals(s.smoke, null);
    assertEquals(s.scaleReason, null);
    assertEquals(s.scale, scale);
    assertEquals(s.shape, "llama3-8b");
    assertEquals(s.samples, BENCH_DEFAULTS.samples);
    assertEquals(s.budgetMs, BENCH_DEFAULTS.budgetMs);
    assertEquals(s.clockGuard, false); // a CPU has no clock to guard
  }
  const gpu = resolveBenchSettings({}, null);
  assertEquals(gpu.smoke, null);
  assertEquals(gpu.scale, 1);
  assertEquals(gpu.shape, "llama3-8b");
  assertEquals(gpu.samples, BENCH_DEFAULTS.samples);
  assertEquals(gpu.maxSamples, BENCH_DEFAULTS.maxSamples);
  assertEquals(gpu.clockGuard, true);
  assertEquals(resolveBenchSettings({ clockGuard: false }, null).clockGuard, false);
  // --smoke asks for one on a GPU too, clock guard kept; --scale then sets only the scale.
  const forced = resolveBenchSettings({ smoke: true, scale: 0.1 }, null);
  assert(forced.smoke !== null && forced.smoke.startsWith("smoke run (--smoke)"), forced.smoke!);
  assert((forced.smoke ?? "").includes("without --smoke"));
  assertEquals([forced.scale, forced.shape, forced.samples], [0.1, "8/2/128", 1]);
  assertEquals(forced.scaleReason, null);
  assertEquals(forced.clockGuard, true);
});

Deno.test("bench --smoke records the smoke run in the results and the report, and says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const args = TINY.filter((_, i) =>
      !["--samples", "--budget-ms"].includes(TINY[i] ?? "") &&
      !["--samples", "--budget-ms"].includes(TINY[i - 1] ?? "")
    );
    const io = await bench([...args, "--smoke", "--output", dir]);
    assert(/^note: smoke run \(--smoke\): /m.test(io.stderr), io.stderr);
    const doc = parseResults(await Deno.readTextFile(`${dir}/results.json`), dir);
    assert(doc.settings.smoke?.startsWith("smoke run (--smoke)"));
    assertEquals(doc.settings.samplesPerRun, SMOKE_DEFAULTS.samples);
    assertEquals(doc.settings.timing.budgetMs, SMOKE_DEFAULTS.budgetMs);
    assertEquals(doc.settings.shape.qHeads, 4); // --shape 4/2/16/2 wins
    assertEquals(doc.warnings.filter((w) => w.code === "smoke").length, 1);
    const html = await Deno.readTextFile(`${dir}/results.html`);
    assert(html.includes("<b>Smoke run</b>: smoke run (--smoke)"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

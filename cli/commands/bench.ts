/**
 * `bench`: the main job. Runs workloads x methods on a WebGPU device and writes one versioned
 * results document (`results.json`) plus the HTML report next to it, then prints a summary table.
 * Without workloads it runs the eleven paper presets with every registered method; on a software
 * adapter without `--scale` it is a smoke run ({@linkcode SMOKE_DEFAULTS}, said so in the output and
 * the results) that ends in a minute or two.
 *
 * @module
 */

import { Command, InvalidArgumentError, Option } from "../../deps/commander.ts";
import { Table } from "../../deps/cli_table.ts";
import {
  adapterKey,
  calibrate,
  loadCalibration,
  QUICK_CALIBRATION,
} from "../../bench/calibrate.ts";
import { type BenchDevice, type BenchWorkload, runBench } from "../../bench/run.ts";
import { createTimer, type Timer } from "../../bench/timer.ts";
import {
  delegatedOptions,
  delegatesOf,
  describeOptions,
  loadTuning,
  type OptionValues,
  storedChoices,
  type TuningDocument,
  tuningPath,
} from "../../bench/tune.ts";
import { type Gpu, isSoftwareAdapter } from "../../kernels/gpu.ts";
import {
  type AttentionMethod,
  DEFAULT_METHOD_OPTIONS,
  kernelCaps,
  METHOD_NAMES,
  type MethodName,
  type MethodOptions,
} from "../../kernels/method.ts";
import { METHODS } from "../../kernels/methods/mod.ts";
import { docSeries, parseResults } from "../../results/document.ts";
import {
  checkWritable,
  refuseOverlap,
  removePendingTemps,
  saveFallback,
  writeFileAtomic,
} from "../../results/files.ts";
import { renderReport } from "../../report/report.ts";
import type { Calibration, ResultsDocument, TuningUse } from "../../results/schema.ts";
import { PAPER_PRESETS } from "../../workloads/presets.ts";
import { type Dtype, resolveShape } from "../../workloads/shapes.ts";
import { storageDtype } from "../dtype.ts";
import { ExitCode, UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { type InterruptSignal, interruptStatus, onInterrupt } from "../signals.ts";
import { createProgress, formatNs } from "../progress.ts";
import { givenOptions, methodOptionFlags, variantOption } from "../method_args.ts";
import {
  checkKernel,
  dawnNodeOption,
  kernelOption,
  openRuntimes,
  runtimeArgs,
  runtimeCalibrationPath,
  runtimeOption,
} from "../runtime_args.ts";
import {
  generatorOptions,
  intArg,
  parseSweep,
  requireQueries,
  resolveWorkloads,
  scaleArg,
  shapeArg,
  uniqueNames,
} from "../workload_args.ts";

/** Defaults of `bench` on a real GPU. */
export const BENCH_DEFAULTS = {
  samples: 3,
  budgetMs: 1000,
  warmupMs: 200,
  minSamples: 10,
  maxSamples: 1000,
  targetCi: 0.01,
  verifyRows: 64,
  minSampleUs: 2,
} as const;

/**
 * Defaults of `tune` on a software adapter when `--scale` is not given: trees at 5% of the paper's
 * sizes, fewer snapshots and short budgets.
 */
export const SOFTWARE_DEFAULTS = {
  scale: 0.05,
  samples: 2,
  budgetMs: 60,
  warmupMs: 10,
  minSamples: 5,
  maxSamples: 40,
  targetCi: 0.05,
  verifyRows: 16,
} as const;

/**
 * The smoke run: the default of `bench` on a software (CPU) adapter when `--scale` is not given,
 * and with `--smoke` anywhere. Every workload and method is verified against the float64 reference
 * and timed briefly (presets at 2% of the paper's sizes, a small GQA shape, one iteration each),
 * then the results and the report are written: it proves the pipeline in a minute or two on 2 CPU
 * cores, and measures nothing about GPUs. Each option given on the command line wins.
 */
export const SMOKE_DEFAULTS = {
  scale: 0.02,
  shape: "8/2/128",
  samples: 1,
  budgetMs: 20,
  warmupMs: 5,
  minSamples: 3,
  maxSamples: 10,
  targetCi: 0.05,
  verifyRows: 16,
} as const;

/** The options of `bench` that {@linkcode resolveBenchSettings} fills in (undefined: not given). */
export interface BenchSettingsOptions {
  smoke?: boolean;
  scale?: number;
  shape?: string;
  samples?: number;
  budgetMs?: number;
  warmupMs?: number;
  minSamples?: number;
  maxSamples?: number;
  targetCi?: number;
  verifyRows?: number;
  clockGuard?: boolean;
}

/** The settings `bench` runs with, and why. */
export interface BenchSettings {
  /** What the smoke run is and how to get real numbers, or null when this is no smoke run. */
  smoke: string | null;
  scale: number;
  /** Why the presets were scaled (not recorded when the user gave `--scale`). */
  scaleReason: string | null;
  shape: string;
  samples: number;
  budgetMs: number;
  warmupMs: number;
  minSamples: number;
  maxSamples: number;
  targetCi: number;
  verifyRows: number;
  /** Keep and check the GPU clock (`bench/clock.ts`); off on a CPU adapter, which has no clock. */
  clockGuard: boolean;
}

/**
 * Resolves the settings of `bench` from the options given and the adapter: `software` is the
 * description of a software (CPU) adapter in the run, or null when every adapter is a GPU. On a
 * software adapter without `--scale` (or with `--smoke`) it is a smoke run with
 * {@linkcode SMOKE_DEFAULTS}; otherwise {@linkcode BENCH_DEFAULTS} at the paper's sizes. Options
 * given always win; the clock guard is on unless the adapter is a CPU or `--no-clock-guard` is given.
 */
export function resolveBenchSettings(
  opts: BenchSettingsOptions,
  software: string | null,
): BenchSettings {
  const smoke = opts.smoke === true || (software !== null && opts.scale === undefined);
  const d = smoke ? SMOKE_DEFAULTS : { ...BENCH_DEFAULTS, scale: 1, shape: "llama3-8b" };
  const r = {
    scale: opts.scale ?? d.scale,
    shape: opts.shape ?? d.shape,
    samples: opts.samples ?? d.samples,
    budgetMs: opts.budgetMs ?? d.budgetMs,
    warmupMs: opts.warmupMs ?? d.warmupMs,
    minSamples: opts.minSamples ?? d.minSamples,
    maxSamples: opts.maxSamples ?? Math.max(d.maxSamples, opts.minSamples ?? d.minSamples),
    targetCi: opts.targetCi ?? d.targetCi,
    verifyRows: opts.verifyRows ?? d.verifyRows,
    clockGuard: opts.clockGuard ?? software === null,
  };
  if (!smoke) return { ...r, smoke: null, scaleReason: null };
  const where = opts.smoke === true
    ? "smoke run (--smoke)"
    : `smoke run on a CPU adapter (${software})`;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const smokeText =
    `${where}: every workload and method is verified against the float64 reference and timed briefly (presets at ${r.scale} of the paper's sizes, shape ${r.shape}, ${
      plural(r.samples, "iteration")
    } per workload, ${r.budgetMs} ms per case${
      r.clockGuard ? "" : ", no clock guard"
    }). It proves that the pipeline works; its timings say nothing about GPUs. For real numbers, run on a GPU${
      opts.smoke === true ? " without --smoke" : ""
    }; on this adapter, --scale 1 runs the paper's sizes and shape (hours on a CPU).`;
  return {
    ...r,
    smoke: smokeText,
    scaleReason: opts.scale === undefined ? where : null,
  };
}

export { isSoftwareAdapter };

function positiveNumber(flag: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === "" || !(x > 0) || !Number.isFinite(x)) {
      throw new InvalidArgumentError(`${flag} must be a positive number, got "${v}"`);
    }
    return x;
  };
}

function nonNegative(flag: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === "" || !(x >= 0) || !Number.isFinite(x)) {
      throw new InvalidArgumentError(`${flag} must be a non-negative number, got "${v}"`);
    }
    return x;
  };
}

function fraction(flag: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === "" || !(x > 0 && x < 1)) {
      throw new InvalidArgumentError(`${flag} must be a number in (0, 1), got "${v}"`);
    }
    return x;
  };
}

/** Parses `--methods a,b,c` against the registry. */
export function parseMethods(
  spec: string | undefined,
  registry: ReadonlyMap<MethodName, AttentionMethod>,
): AttentionMethod[] {
  const known = METHOD_NAMES.filter((n) => registry.has(n));
  if (known.length === 0) throw new UsageError("No attention methods are registered");
  if (spec === undefined || spec === "all") return known.map((n) => registry.get(n)!);
  const names = spec.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length === 0) throw new UsageError("--methods needs at least one method name");
  const out: AttentionMethod[] = [];
  for (const n of names) {
    const m = registry.get(n as MethodName);
    if (!m) {
      const hint = (METHOD_NAMES as readonly string[]).includes(n) ? " (not implemented yet)" : "";
      throw new UsageError(
        `Unknown method ${JSON.stringify(n)}${hint}; available: ${known.join(", ")}`,
      );
    }
    if (!out.includes(m)) out.push(m);
  }
  return out;
}

/** `out/20250102T030405Z/results.json`-style default output. */
export function defaultOutput(date = new Date()): string {
  const stamp = date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `out/${stamp}/results.json`;
}

/** Turns `--output` (a directory or a .json file) into the results path. */
export function resultsPath(output: string | undefined, date = new Date()): string {
  if (output === undefined) return defaultOutput(date);
  if (output.endsWith(".json")) return output;
  return `${output.replace(/\/+$/, "")}/results.json`;
}

/** The HTML report path next to a results path. */
export function htmlPath(results: string): string {
  return results.replace(/\.json$/, "") + ".html";
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    // A missing path, or a file where a folder should be: checkWritable names the problem.
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

/**
 * The terminal summary: mean latency per iteration (and speedup vs sequence on the same runtime),
 * whole-run totals, and with several runtimes the speedup of each over the first, from this run.
 */
export function summaryTables(doc: ResultsDocument): string {
  const series = docSeries(doc);
  const head = ["workload", ...series.map((x) => x.label)];
  const perIter = new Table({ head, style: { head: [], border: [] } });
  const run = new Table({ head, style: { head: [], border: [] } });
  for (const w of doc.workloads) {
    const row1: string[] = [w.name];
    const row2: string[] = [w.name];
    for (const { method: m, runtime } of series) {
      const cases = w.snapshots.map((s) =>
        s.cases.find((c) => c.method === m && c.runtime === runtime)
      );
      const t = w.totals.find((x) => x.method === m && x.runtime === runtime);
      const bad = cases.find((c) => c && c.status !== "ok");
      if (bad) {
        row1.push(bad.status === "failed" ? "FAILED" : "error");
        row2.push(bad.status === "failed" ? "FAILED" : "error");
      } else if (!t || !t.complete) {
        row1.push("-");
        row2.push("-");
      } else {
        const sp = t.speedupVsSequence === null ? "" : ` ${t.speedupVsSequence.toFixed(2)}x`;
        row1.push(`${formatNs(t.meanIterationNs)}${sp}`);
        row2.push(`${(t.modelRunNs / 1e9).toFixed(3)} s`);
      }
    }
    perIter.push(row1);
    run.push(row2);
  }
  const s = doc.settings;
  const parts = [
    `Attention latency per decoding iteration and layer (Σ weight x median / iterations; Nx = speedup over sequence${
      s.runtimes.length > 1 ? " on the same runtime" : ""
    } in this run):`,
    perIter.toString(),
    `Estimated attention time over the whole decoding run, ${s.shape.layers} layers (the paper's Table 16 shape):`,
    run.toString(),
  ];
  const [first, ...others] = s.runtimes;
  if (first && others.length > 0) {
    const methods = [...new Set(series.map((x) => x.method))];
    const ratio = new Table({
      head: ["workload", ...others.flatMap((r) => methods.map((m) => `${m} ${r}/${first}`))],
      style: { head: [], border: [] },
    });
    for (const w of doc.workloads) {
      const total = (m: string, r: string) =>
        w.totals.find((x) => x.method === m && x.runtime === r && x.complete && x.runNs > 0);
      ratio.push([
        w.name,
        ...others.flatMap((r) =>
          methods.map((m) => {
            const a = total(m, first), b = total(m, r);
            return a && b ? `${(a.runNs / b.runNs).toFixed(2)}x` : "-";
          })
        ),
      ]);
    }
    parts.push(
      `Speedup of each runtime over ${first}, method by method (${first} time / its time, measured in this run):`,
      ratio.toString(),
    );
  }
  return parts.join("\n") + "\n";
}

/** The arguments as given to the program (commander keeps them on the root command). */
export function commandLine(cmd: { parent: unknown }): string[] {
  let root = cmd as { parent: unknown; rawArgs?: string[] };
  while (root.parent) root = root.parent as typeof root;
  return root.rawArgs ? [...root.rawArgs] : [...Deno.args];
}

/** Every case: status, median with CI, samples, achieved rates and roofline fraction. */
export function caseTable(doc: ResultsDocument): string {
  const t = new Table({
    head: [
      "case",
      "kernel",
      "status",
      "median",
      "95% CI",
      "samples",
      "GB/s",
      "GFLOP/s",
      "roofline",
      "bound",
      "clock",
      "max rel err",
    ],
    style: { head: [], border: [] },
  });
  for (const w of doc.workloads) {
    for (const s of w.snapshots) {
      for (const c of s.cases) {
        const tm = c.timing, r = c.roofline, v = c.verification;
        t.push([
          c.key,
          c.kernel,
          c.status,
          tm ? formatNs(tm.medianNs) : "",
          tm ? `${formatNs(tm.ci95Ns[0])} - ${formatNs(tm.ci95Ns[1])}` : "",
          tm ? String(tm.samplesNs.length) : "",
          r ? (r.achievedBytesPerS / 1e9).toFixed(1) : "",
          r ? (r.achievedFlopsPerS / 1e9).toFixed(1) : "",
          r ? `${(r.fraction * 100).toFixed(1)}%` : "",
          r ? r.bound : "",
          c.clock ? `${(c.clock.fraction * 100).toFixed(0)}%${c.clock.lowClock ? " LOW" : ""}` : "",
          v.checked ? v.maxRelError.toExponential(1) : "not checked",
        ]);
      }
    }
  }
  return `Cases (roofline: the largest of DRAM time (bytes that must cross DRAM), L2 time (all bytes moved) and FLOP time at the calibrated ceilings / median; clock: reference kernel speed / working speed, LOW below 90%):\n${t.toString()}\n`;
}

/**
 * Writes the results document and its report. The document is first checked with the readers'
 * own validator (a document `report`, `compare` or `dashboard` would refuse is a bug, exit 1).
 * When the output cannot be written after all, the results go to a fallback file (named in the
 * message, exit 1) instead of being lost.
 */
async function writeResults(
  io: CliIo,
  doc: ResultsDocument,
  json: string,
  outPath: string,
  outHtml: string,
  force: boolean,
): Promise<void> {
  let invalid: string | null = null;
  try {
    parseResults(json, outPath);
  } catch (e) {
    invalid = (e as Error).message;
  }
  let failure: string | null = null;
  if (invalid === null) {
    try {
      await writeFileAtomic(outPath, json, { force });
    } catch (e) {
      failure = `cannot write ${outPath}: ${(e as Error).message}`;
    }
  }
  if (invalid !== null || failure !== null) {
    let saved: string;
    try {
      saved = await saveFallback(json);
    } catch (e) {
      io.err(`error: ${failure ?? invalid}; saving a copy failed too: ${(e as Error).message}\n`);
      throw new ExitCode(1);
    }
    io.err(
      invalid !== null
        ? `internal error: the results document fails its own validation (${invalid}); it was saved to ${saved} (please report this)\n`
        : `error: ${failure}; the results were saved to ${saved} instead\n`,
    );
    throw new ExitCode(1);
  }
  try {
    await writeFileAtomic(outHtml, renderReport([doc]), { force });
  } catch (e) {
    io.err(
      `error: cannot write ${outHtml}: ${
        (e as Error).message
      }; the results are in ${outPath} (\`deft-bench report ${outPath}\` renders them)\n`,
    );
    throw new ExitCode(1);
  }
}

/** Options per method from a stored tuning, and what the results record about it. */
export interface AppliedTuning {
  options: Partial<Record<MethodName, MethodOptions>>;
  use: TuningUse;
}

/**
 * The stored tuning of a device for `dtype` (`file`, else out/tuning/<adapter>-<runtime>.json),
 * applied under the explicit options; says what it applied. Null when nothing is stored; a named
 * file that does not exist or is malformed is a usage error.
 */
export async function storedTuning(
  gpu: Gpu,
  dtype: Dtype,
  methods: readonly AttentionMethod[],
  explicit: Partial<MethodOptions>,
  file: string | undefined,
  say: (line: string) => void,
  tag = "",
  cold?: boolean,
): Promise<AppliedTuning | null> {
  const path = file ?? tuningPath(gpu.info, gpu.runtime.name);
  const doc: TuningDocument | null = await loadTuning(path, {
    adapterKey: adapterKey(gpu.info),
    runtime: gpu.runtime.name,
  });
  if (!doc) {
    if (file !== undefined) throw new UsageError(`Tuning file ${file} does not exist`);
    return null;
  }
  const names = methods.map((m) => m.name);
  // The methods the benched ones run parts of a tree with: their variant parameters apply there.
  const stored = storedChoices(doc, dtype, [...new Set([...names, ...names.flatMap(delegatesOf)])]);
  if (!stored) {
    say(`tuning${tag}: ${path} holds nothing for ${dtype} and these methods; using defaults`);
    return null;
  }
  const options: Partial<Record<MethodName, MethodOptions>> = {};
  const applied: TuningUse["applied"] = {};
  const parts: string[] = [];
  const overridden = new Set<string>();
  const matrix = kernelCaps(gpu).matrix !== null && dtype === "f16";
  for (const method of names) {
    const choice: OptionValues = stored.byMethod[method] ?? {};
    const use: OptionValues = {};
    for (const [k, v] of Object.entries(choice)) {
      if (k in explicit) overridden.add(k);
      else if (k === "kernel" && v === "mma" && !matrix) continue; // the device lost its matrices
      else use[k] = v;
    }
    // A delegate's tuned variant parameters (sequence's split count, for deft-flatten's
    // Flash-Decoding parts), where the method's own choice and the command line say nothing.
    Object.assign(use, delegatedOptions(method, stored.byMethod, { ...choice, ...explicit }));
    if (Object.keys(use).length === 0) continue;
    options[method] = { ...DEFAULT_METHOD_OPTIONS, ...use, ...explicit } as MethodOptions;
    applied[method] = use;
    parts.push(`${method} ${describeOptions(use)}`);
  }
  const note =
    (overridden.size
      ? `; the command line overrides the stored ${[...overridden].join(", ")}`
      : "") +
    // Warm and cold caches can rank candidates differently: say when the run is not like the tuning.
    (cold !== undefined && stored.cold !== null && stored.cold !== cold
      ? `; tuned with ${stored.cold ? "cold" : "warm"} caches, this run's are ${
        cold ? "cold" : "warm"
      }`
      : "");
  const caches = stored.cold === null ? "" : `, ${stored.cold ? "cold" : "warm"} caches`;
  const shapes = (stored.shapes.length ? ` with ${stored.shapes.join(", ")}` : "") + caches;
  if (parts.length === 0) {
    say(`tuning${tag}: ${path} (tuned ${stored.tunedAt}${shapes}): nothing applied${note}`);
    return null;
  }
  say(
    `tuning${tag}: ${path} (tuned ${stored.tunedAt}${shapes}): ${parts.join(", ")}${note}`,
  );
  return { options, use: { file: path, tunedAt: stored.tunedAt, applied } };
}

/** Options a test can inject. */
export interface BenchCommandDeps {
  methods?: ReadonlyMap<MethodName, AttentionMethod>;
}

/** Builds the `bench` command. */
export function benchCommand(io: CliIo, deps: BenchCommandDeps = {}) {
  const registry = deps.methods ?? METHODS;
  const int = <F extends string>(flags: F, desc: string) =>
    new Option(flags, desc).argParser(intArg(flags.split(" ")[0]!));
  const cmd = new Command("bench")
    .description(
      "Benchmark attention methods on workloads (default: the eleven paper presets with every registered method) and write a versioned results document plus its HTML report. GPU time comes from timestamp queries around each method's pass (wall-clock batches when the adapter has none, said so in the output); every method is checked against the float64 reference first, and a wrong one is marked failed, not timed. On a software (CPU) adapter without --scale it is a smoke run (small sizes, brief timing; see --smoke) that proves the pipeline, not a measurement of GPUs. Exit 1 when a method failed or errored.",
    )
    .argument(
      "[workloads...]",
      "preset names, generator kinds or .json files (default: the paper presets)",
    )
    .option(
      "--methods <list>",
      "comma-separated methods, or all (default: every registered method)",
    )
    .addOption(
      new Option(
        "--shape <shape>",
        `model shape: preset or Q/KV/D[/LAYERS] (default llama3-8b; ${SMOKE_DEFAULTS.shape} in a smoke run)`,
      ).argParser(shapeArg),
    )
    .addOption(
      new Option(
        "--dtype <dtype>",
        "storage dtype (default f16 when the adapter has shader-f16, else f32)",
      )
        .choices(["f16", "f32"] as const),
    )
    .addOption(
      int(
        "--samples <k>",
        `iterations sampled per run (default ${BENCH_DEFAULTS.samples}; ${SMOKE_DEFAULTS.samples} in a smoke run)`,
      ),
    )
    .addOption(
      new Option("--seed <n>", "seed of generators and Q/K/V").argParser(intArg("--seed")).default(
        1,
      ),
    )
    .addOption(
      new Option(
        "--scale <s>",
        `shrink presets by s in (0, 1] (default 1; ${SMOKE_DEFAULTS.scale} in a smoke run; given on a software adapter, no smoke run)`,
      ).argParser(scaleArg),
    )
    .option(
      "--smoke",
      "a smoke run: every workload and method verified and timed briefly at small sizes, to prove the pipeline (the default on a software adapter without --scale)",
    )
    .addOption(
      new Option(
        "--budget-ms <ms>",
        `time budget per case (default ${BENCH_DEFAULTS.budgetMs}; ${SMOKE_DEFAULTS.budgetMs} in a smoke run)`,
      )
        .argParser(
          positiveNumber("--budget-ms"),
        ),
    )
    .addOption(
      new Option("--warmup-ms <ms>", `warm-up per snapshot (default ${BENCH_DEFAULTS.warmupMs})`)
        .argParser(
          positiveNumber("--warmup-ms"),
        ),
    )
    .addOption(
      int("--min-samples <n>", `samples of the first round (default ${BENCH_DEFAULTS.minSamples})`),
    )
    .addOption(
      int("--max-samples <n>", `most samples per case (default ${BENCH_DEFAULTS.maxSamples})`),
    )
    .addOption(
      new Option(
        "--target-ci <fraction>",
        `stop when the 95% CI half-width is below this fraction of the median (default ${BENCH_DEFAULTS.targetCi})`,
      ).argParser(fraction("--target-ci")),
    )
    .addOption(
      int(
        "--repetitions <n>",
        "repetitions of a method per timed pass (default: 1, more when a call is short)",
      ),
    )
    .addOption(
      new Option(
        "--min-sample-us <us>",
        `repeat a method inside its pass until one sample lasts this long (default ${BENCH_DEFAULTS.minSampleUs})`,
      ).argParser(nonNegative("--min-sample-us")),
    )
    .option("--cold", "flush caches (write 128 MiB) before every sample")
    .option(
      "--clock-guard",
      "keep the GPU at its working clock and flag cases measured below it (default: on, except on a software adapter)",
    )
    .option("--no-clock-guard", "no clock guard: no reference kernel beside the cases")
    .option("--no-verify", "skip the check against the reference")
    .addOption(
      int(
        "--verify-rows <n>",
        `(query, head) rows checked per case (default ${BENCH_DEFAULTS.verifyRows})`,
      ),
    )
    .option(
      "-o, --output <path>",
      "results file (.json) or directory (default out/<time>/results.json)",
    )
    .option("--force", "overwrite existing output files")
    .option(
      "--calibration <file>",
      "calibration file (default out/calibration/<adapter>.json, <adapter>-dawn.json on Dawn)",
    )
    .option("--no-calibrate", "no calibration and no roofline")
    .addOption(runtimeOption())
    .addOption(dawnNodeOption())
    .addOption(kernelOption())
    .addOption(variantOption())
    .option(
      "--tuning <file>",
      "stored tuning to apply (default out/tuning/<adapter>-<runtime>.json when it exists; explicit options win)",
    )
    .option("--no-tuning", "ignore stored tuning: defaults and explicit options only")
    .addOption(
      new Option("--adapter <kind>", "adapter preference").choices(
        ["high-performance", "fallback"] as const,
      ),
    )
    .option(
      "--cases",
      "also print every case: median, CI, achieved bandwidth and FLOP rate, roofline",
    )
    .option(
      "--sweep <param=values>",
      "run a generator once per value of one option, e.g. prefix=1000,4000,8000 (drawn as latency against it)",
    )
    .option("--json", "print the results document on standard output, nothing else")
    .option("--quiet", "no progress output");
  for (const o of [...methodOptionFlags({ withDefaults: false }), ...generatorOptions()]) {
    cmd.addOption(o);
  }
  return cmd.action(async (workloadArgs, opts, self) => {
    // Check everything the user typed before touching the GPU.
    const methods = parseMethods(opts.methods, registry);
    for (
      const [flag, v] of [
        ["--samples", opts.samples],
        ["--min-samples", opts.minSamples],
        ["--repetitions", opts.repetitions],
        ["--verify-rows", opts.verifyRows],
      ] as const
    ) {
      if (v !== undefined && v < 1) throw new UsageError(`${flag} must be at least 1`);
    }
    const rt = runtimeArgs(opts);
    if (rt.runtimes.length > 1) {
      if (opts.calibration) {
        throw new UsageError(
          "--calibration names one file, but --runtime runs several runtimes; each reads its own (out/calibration/<adapter>[-<runtime>].json)",
        );
      }
      if (typeof opts.tuning === "string") {
        throw new UsageError(
          "--tuning names one file, but --runtime runs several runtimes; each reads its own (out/tuning/<adapter>-<runtime>.json)",
        );
      }
    }
    const specs = workloadArgs.length > 0 ? workloadArgs : [...PAPER_PRESETS];
    const sweep = opts.sweep === undefined ? null : parseSweep(opts.sweep);
    const quiet = Boolean(opts.json || opts.quiet);
    const say = (s: string) => {
      if (!quiet) io.err(`${s}\n`);
    };
    // Every workload is resolved and checked here, before the GPU: files, queries, names.
    const resolveAll = async (scale: number) => {
      const list = [];
      for (const s of specs) {
        const items = await resolveWorkloads(s, { ...opts, scale }, sweep);
        for (const item of items) requireQueries(item.run, s);
        list.push({ spec: s, items });
      }
      return uniqueNames(list);
    };
    for (const note of (await resolveAll(opts.scale ?? 1)).notes) say(`note: ${note}`);
    const startedAt = new Date();
    const outPath = resultsPath(opts.output, startedAt);
    const outHtml = htmlPath(outPath);
    if (!opts.force) {
      for (const p of [outPath, outHtml]) {
        if (await exists(p)) {
          throw new UsageError(`${p} already exists; pass --force to overwrite it`);
        }
      }
    }
    const inputFiles = specs.filter((s) => s.endsWith(".json") || s.includes("/"));
    if (opts.calibration) inputFiles.push(opts.calibration);
    if (typeof opts.tuning === "string") inputFiles.push(opts.tuning);
    await refuseOverlap([outPath, outHtml], inputFiles);
    // Measurements must never be lost to an output that cannot be written: check it first.
    await checkWritable(outPath);
    await checkWritable(outHtml);

    const minSampleNs = (opts.minSampleUs ?? BENCH_DEFAULTS.minSampleUs) * 1e3;
    const gpus = await openRuntimes(
      rt,
      opts.adapter === "fallback" ? { forceFallbackAdapter: true } : {},
    );
    const timers: Timer[] = [];
    try {
      for (const g of gpus) timers.push(createTimer(g, { minSampleNs }));
      const many = gpus.length > 1;
      const tag = (g: Gpu) => (many ? ` (${g.runtime.name})` : "");
      const softwareGpu = gpus.find((g) => isSoftwareAdapter(g.info));
      const d = resolveBenchSettings(
        opts,
        softwareGpu
          ? softwareGpu.info.description || softwareGpu.info.vendor || "software adapter"
          : null,
      );
      const { scale, scaleReason } = d;
      const shape = resolveShape(d.shape);
      if (d.smoke) say(`note: ${d.smoke}`);
      const noF16 = gpus.filter((g) => !g.hasF16);
      // --dtype f16 must be possible on every runtime (storageDtype says why not).
      const dtype = storageDtype(gpus, opts.dtype);
      if (!opts.dtype && noF16.length > 0) {
        say(
          `note: ${
            noF16.map((g) => `the adapter${tag(g)}`).join(" and ")
          } has no shader-f16; using --dtype f32`,
        );
      }
      for (const g of gpus) checkKernel(opts.kernel, g, dtype);
      const { minSamples, maxSamples } = d;
      if (maxSamples < minSamples) {
        throw new UsageError("--max-samples must be at least --min-samples");
      }

      const workloads: BenchWorkload[] = (await resolveAll(scale)).workloads;

      // Options as given; stored tuning fills in what the command line leaves open.
      const explicit = givenOptions(opts);
      const methodOptions: MethodOptions = { ...DEFAULT_METHOD_OPTIONS, ...explicit };

      const devices: BenchDevice[] = [];
      for (const [i, gpu] of gpus.entries()) {
        const timer = timers[i]!;
        let calibration: Calibration | null = null;
        if (opts.calibrate !== false) {
          const path = opts.calibration ?? runtimeCalibrationPath(gpu);
          const stored = await loadCalibration(path, gpu.info).catch((e) => {
            if (!(e instanceof SyntaxError) || opts.calibration) throw e;
            throw new UsageError(
              `${e.message}; delete it or measure a new one with \`deft-bench calibrate --force${
                many ? ` --runtime ${gpu.runtime.name}` : ""
              }\` (or pass --no-calibrate)`,
            );
          });
          if (stored) {
            calibration = stored.calibration;
            say(`calibration${tag(gpu)}: ${path} (measured ${calibration.measuredAt})`);
          } else if (opts.calibration) {
            throw new UsageError(`Calibration file ${path} does not exist`);
          } else {
            say(
              `no calibration at ${path}: running a quick one (deft-bench calibrate${
                many ? ` --runtime ${gpu.runtime.name}` : ""
              } measures a thorough one)`,
            );
            calibration = await calibrate(gpu, timer, {
              ...QUICK_CALIBRATION,
              ...(isSoftwareAdapter(gpu.info)
                ? { readSizes: [4 << 20, 16 << 20], fmaTargetNs: 2e6, fmaMaxWorkgroups: 256 }
                : {}),
            });
          }
        }
        // The device's resident whole-storage workgroups (WebGPU reports no SM count): plans
        // size their work to them (deft-flatten's `multiprocessors`).
        gpu.residentWorkgroups = calibration?.residentWorkgroups ?? null;
        if (gpu.residentWorkgroups) {
          say(
            `resident workgroups${
              tag(gpu)
            }: ${gpu.residentWorkgroups} (from the calibration; deft-flatten sizes its matrix-kernel blocks to them)`,
          );
        }
        const tuned = opts.tuning === false ? null : await storedTuning(
          gpu,
          dtype,
          methods,
          explicit,
          opts.tuning,
          say,
          tag(gpu),
          Boolean(opts.cold),
        );
        devices.push({
          gpu,
          timer,
          calibration,
          methodOptions: tuned?.options,
          tuning: tuned?.use ?? null,
        });
      }

      const progress = createProgress(io, { silent: quiet });
      // Ctrl-C (or SIGTERM) once: stop, and write the cases finished so far marked partial.
      // Twice: quit at once, removing any file being written.
      const interrupt = new AbortController();
      const removeListeners = onInterrupt((name) => {
        if (interrupt.signal.aborted) {
          removePendingTemps();
          io.err(`\n${name} again: quitting at once (no half-written file is left)\n`);
          Deno.exit(interruptStatus(name));
        }
        io.err(
          `\n${name}: stopping; the cases finished so far will be written to ${outPath} (press Ctrl-C again to quit at once)\n`,
        );
        interrupt.abort(name);
      });
      const doc = await runBench(devices, {
        workloads,
        methods,
        shape,
        dtype,
        methodOptions,
        samplesPerRun: d.samples,
        seed: opts.seed,
        scale,
        scaleReason,
        smoke: d.smoke,
        verify: opts.verify !== false,
        verifyRows: d.verifyRows,
        timing: {
          warmupMs: d.warmupMs,
          budgetMs: d.budgetMs,
          minSamples,
          maxSamples,
          targetRelativeCi: d.targetCi,
          cold: Boolean(opts.cold),
          interleaved: true,
          repetitions: opts.repetitions,
        },
        calibration: devices[0]!.calibration,
        clockGuard: d.clockGuard,
        command: commandLine(self),
      }, { progress, signal: interrupt.signal }).catch((e) => {
        removeListeners();
        throw e;
      });
      const partial = doc.partial ?? null;
      const exitCode = interruptStatus(interrupt.signal.reason as InterruptSignal);
      if (partial && partial.completedCases === 0) {
        removeListeners();
        io.err(`${partial.reason} before any case finished: nothing was written\n`);
        throw new ExitCode(exitCode);
      }

      const json = JSON.stringify(doc, null, 1) + "\n";
      // The listeners stay while writing: a second Ctrl-C then removes the temporary file.
      await writeResults(io, doc, json, outPath, outHtml, Boolean(opts.force)).finally(
        removeListeners,
      );
      if (partial) {
        io.err(
          `partial results (${partial.reason}): ${partial.completedCases} of ${partial.plannedCases} cases written to ${outPath} and ${outHtml}\n`,
        );
        throw new ExitCode(exitCode);
      }
      if (opts.json) {
        io.out(json);
      } else {
        io.out(summaryTables(doc));
        if (opts.cases) io.out(caseTable(doc));
        io.out(`results: ${outPath}\n`);
        io.out(`report: ${outHtml}\n`);
        if (doc.warnings.length > 0 && !opts.quiet) {
          const byCode = new Map<string, number>();
          for (const w of doc.warnings) byCode.set(w.code, (byCode.get(w.code) ?? 0) + 1);
          io.out(
            `warnings: ${
              [...byCode].map(([c, n]) => `${c} x${n}`).join(", ")
            } (details in the results)\n`,
          );
        }
      }
      const bad = doc.workloads.flatMap((w) => w.snapshots.flatMap((s) => s.cases)).filter((c) =>
        c.status !== "ok"
      );
      if (bad.length > 0) {
        io.err(
          `error: ${bad.length} case(s) failed or errored: ${
            bad.slice(0, 5).map((c) => c.key).join(", ")
          }${bad.length > 5 ? ", ..." : ""}\n`,
        );
        throw new ExitCode(1);
      }
    } finally {
      for (const t of timers) t.destroy();
      for (const g of gpus) g.destroy();
    }
  });
}

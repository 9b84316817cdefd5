/**
 * `tune`: measures the method options worth choosing (DeFT-Flatten's block size, the kernel
 * family, ...) on a few trees for this adapter and runtime, and stores the winners in
 * `out/tuning/<adapter>-<runtime>.json`, where `bench` finds them.
 *
 * @module
 */

import { Command, InvalidArgumentError, Option } from "../../deps/commander.ts";
import { Table } from "../../deps/cli_table.ts";
import { createTimer } from "../../bench/timer.ts";
import { LOW_CLOCK_FRACTION } from "../../bench/clock.ts";
import type { Gpu } from "../../kernels/gpu.ts";
import type { ClockReferenceCalibration } from "../../results/schema.ts";
import {
  DEFAULT_TIE_MARGIN,
  describeOptions,
  loadTuning,
  mergeTuning,
  saveTuning,
  storedChoices,
  TUNABLES,
  tune,
  type TuneTree,
  type TuningEntry,
  tuningPath,
} from "../../bench/tune.ts";
import { adapterKey } from "../../bench/calibrate.ts";
import {
  type AttentionMethod,
  METHOD_NAMES,
  type MethodName,
  type MethodOptions,
} from "../../kernels/method.ts";
import { METHOD_OPTIONS, METHODS } from "../../kernels/methods/mod.ts";
import { LevelGridRun } from "../../workloads/level_grid.ts";
import { getPreset } from "../../workloads/presets.ts";
import { resolveShape } from "../../workloads/shapes.ts";
import { ExitCode, UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { formatNs } from "../progress.ts";
import { givenOptions, variantOption } from "../method_args.ts";
import { storageDtype } from "../dtype.ts";
import {
  checkKernel,
  dawnNodeOption,
  kernelOption,
  openRuntimes,
  runtimeArgs,
  runtimeOption,
  useStoredResidency,
} from "../runtime_args.ts";
import { generatorOptions, intArg, resolveWorkload, scaleArg, shapeArg } from "../workload_args.ts";
import { BENCH_DEFAULTS, isSoftwareAdapter, parseMethods, SOFTWARE_DEFAULTS } from "./bench.ts";

/**
 * What `tune` tries, from the method records (the tunables): `deft-flatten block size
 * 128/64/256/512, ..., the kernel family fma/mma the device offers (and the mma tile)`.
 */
function tunedList(): string {
  const parts = TUNABLES.map((t) => {
    if (t.option === "kernel") return "the kernel family fma/mma the device offers";
    const option = METHOD_OPTIONS.find((o) => o.key === t.option);
    if (option) return `${option.doc} ${option.tune!.join("/")}`;
    return `the ${t.option} kernel's tile`;
  });
  return parts.join(", ");
}

/** Methods tuned by default. */
export const TUNE_DEFAULT_METHODS = "deft-flatten";

/**
 * The default trees: the paper's Table 14 tree (a 4000-token prompt with 64 one-token queries),
 * and the middle iterations of few-shot-b50 and speculative-t64; token counts times `scale`.
 */
export function defaultTuneTrees(scale: number, seed: number): TuneTree[] {
  const prompt = Math.max(1, Math.round(4000 * scale));
  const table14 = new LevelGridRun([{ nodes: 1, tokens: prompt }, { nodes: 64, tokens: 1 }], "x");
  const middle = (name: string) => {
    const run = getPreset(name).build(seed, scale);
    const [snap] = run.sample(1);
    return { name: `${name}@${snap!.iteration}`, tree: snap!.tree };
  };
  return [
    { name: `table14 (1x${prompt}, 64x1)`, tree: table14.snapshot(0) },
    middle("few-shot-b50"),
    middle("speculative-t64"),
  ];
}

function positiveNumber(flag: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === "" || !(x > 0) || !Number.isFinite(x)) {
      throw new InvalidArgumentError(`${flag} must be a positive number, got "${v}"`);
    }
    return x;
  };
}

/** The candidates of one tuned method as a table (medians per tree, score, winner). */
export function tuningTable(entry: TuningEntry): string {
  const t = new Table({
    head: ["candidate", "kernel", ...entry.trees.map((x) => x.name), "score", "status"],
    style: { head: [], border: [] },
  });
  const winner = describeOptions(entry.choice);
  for (const c of entry.candidates) {
    const won = c.score !== null &&
      Object.entries(entry.choice).every(([k, v]) => c.options[k] === v) &&
      c.score ===
        Math.min(...entry.candidates.filter((x) => x.score !== null).map((x) => x.score!));
    t.push([
      `${describeOptions(c.options)}${won ? " *" : ""}`,
      c.kernel,
      ...c.mediansNs.map((m, i) => {
        if (m === null) return "-";
        const f = c.clockFractions?.[i];
        // A timing below the working clock is marked with the speed it ran at.
        return f != null && f < LOW_CLOCK_FRACTION
          ? `${formatNs(m)} (clock ${(f * 100).toFixed(0)}%)`
          : formatNs(m);
      }),
      c.score === null ? "-" : c.score.toFixed(3),
      c.status === "ok" ? "ok" : `${c.status}: ${c.message}`,
    ]);
  }
  const delegated = entry.delegated
    ? `; with its delegates' choice ${describeOptions(entry.delegated)}, as bench runs it`
    : "";
  return `${entry.method} (${entry.dtype}, ${entry.shape}): ${
    winner === "defaults" ? "the defaults win" : `winner ${winner}`
  }${delegated} (*; score: geometric mean over trees of median / best median; within ${
    DEFAULT_TIE_MARGIN * 100
  } % of the best, the candidate closest to the defaults wins)\n${t.toString()}\n`;
}

/** Options a test can inject. */
export interface TuneCommandDeps {
  methods?: ReadonlyMap<MethodName, AttentionMethod>;
}

/** Builds the `tune` command. */
export function tuneCommand(io: CliIo, deps: TuneCommandDeps = {}) {
  const registry = deps.methods ?? METHODS;
  const int = <F extends string>(flags: F, desc: string) =>
    new Option(flags, desc).argParser(intArg(flags.split(" ")[0]!));
  const cmd = new Command("tune")
    .description(
      `Measure the method options worth choosing on this adapter and runtime (${tunedList()}) on a few trees, checking every candidate against the float64 reference before timing it, and store the winner per dtype and method in out/tuning/<adapter>-<runtime>.json, where bench applies it by default. Default trees: the paper's Table 14 tree (a 4000-token prompt with 64 one-token queries) and the middle iterations of few-shot-b50 and speculative-t64. Exit 1 when a candidate computes wrong results.`,
    )
    .argument(
      "[workloads...]",
      "preset names, generator kinds or .json files, one sampled iteration each (default: Table 14 tree, few-shot-b50, speculative-t64)",
    )
    .option("--methods <list>", `comma-separated methods to tune (default ${TUNE_DEFAULT_METHODS})`)
    .addOption(
      new Option("--shape <shape>", "model shape: preset or Q/KV/D[/LAYERS]").argParser(shapeArg)
        .default("llama3-8b"),
    )
    .addOption(
      new Option(
        "--dtype <dtype>",
        "storage dtype (default f16 when the adapter has shader-f16, else f32)",
      ).choices(["f16", "f32"] as const),
    )
    .addOption(runtimeOption())
    .addOption(dawnNodeOption())
    .addOption(kernelOption())
    .addOption(variantOption())
    .addOption(
      new Option("--seed <n>", "seed of generators and Q/K/V").argParser(intArg("--seed"))
        .default(1),
    )
    .addOption(new Option("--scale <s>", "shrink presets by s in (0, 1]").argParser(scaleArg))
    .addOption(int("--samples <k>", "iterations sampled per workload (default 1, the middle one)"))
    .addOption(
      new Option(
        "--budget-ms <ms>",
        `time budget per candidate and tree (default ${BENCH_DEFAULTS.budgetMs})`,
      ).argParser(positiveNumber("--budget-ms")),
    )
    .addOption(
      new Option("--warmup-ms <ms>", `warm-up per tree (default ${BENCH_DEFAULTS.warmupMs})`)
        .argParser(positiveNumber("--warmup-ms")),
    )
    .addOption(int("--min-samples <n>", `samples of the first round (default 10)`))
    .addOption(int("--max-samples <n>", `most samples per candidate (default 1000)`))
    .option("--cold", "flush caches (write 128 MiB) before every sample")
    .option(
      "--clock-guard",
      "keep the GPU at its working clock while timing, as bench does, and mark timings below it (default: on, except on a software adapter)",
    )
    .option("--no-clock-guard", "no clock guard: no reference kernel beside the candidates")
    .addOption(int("--verify-rows <n>", "(query, head) rows checked per candidate (default 64)"))
    .option(
      "-o, --output <file>",
      "tuning file (default out/tuning/<adapter>-<runtime>.json; updated in place)",
    )
    .addOption(
      new Option("--adapter <kind>", "adapter preference").choices(
        ["high-performance", "fallback"] as const,
      ),
    )
    .option("--json", "print the tuning entries as JSON")
    .option("--quiet", "no progress output");
  for (const o of generatorOptions()) cmd.addOption(o);
  return cmd.action(async (workloadArgs, opts) => {
    const methods = parseMethods(opts.methods ?? TUNE_DEFAULT_METHODS, registry);
    const shape = resolveShape(opts.shape);
    for (
      const [flag, v] of [
        ["--samples", opts.samples],
        ["--min-samples", opts.minSamples],
        ["--verify-rows", opts.verifyRows],
      ] as const
    ) {
      if (v !== undefined && v < 1) throw new UsageError(`${flag} must be at least 1`);
    }
    const rt = runtimeArgs(opts);
    if (rt.runtimes.length > 1 && opts.output) {
      throw new UsageError(
        "--output names one file, but --runtime tunes several runtimes; each writes its own (out/tuning/<adapter>-<runtime>.json)",
      );
    }
    for (const s of workloadArgs) await resolveWorkload(s, { ...opts, scale: opts.scale ?? 1 });
    const quiet = Boolean(opts.json || opts.quiet);
    const say = (s: string) => {
      if (!quiet) io.err(`${s}\n`);
    };
    const gpus = await openRuntimes(
      rt,
      opts.adapter === "fallback" ? { forceFallbackAdapter: true } : {},
    );
    const all: TuningEntry[] = [];
    let wrong = 0;
    try {
      const references = new Map<Gpu, ClockReferenceCalibration | null>();
      for (const g of gpus) references.set(g, await useStoredResidency(g));
      const software = gpus.some((g) => isSoftwareAdapter(g.info));
      const scaled = software && opts.scale === undefined;
      const d = scaled ? SOFTWARE_DEFAULTS : BENCH_DEFAULTS;
      const scale = opts.scale ?? (scaled ? SOFTWARE_DEFAULTS.scale : 1);
      if (scaled) {
        say(
          `note: software adapter: trees scaled to ${scale} and short budgets; a CPU's tuning says nothing about GPUs (pass --scale 1 for full sizes)`,
        );
      }
      const dtype = storageDtype(gpus, opts.dtype);
      for (const g of gpus) checkKernel(opts.kernel, g, dtype);
      let trees: TuneTree[];
      if (workloadArgs.length === 0) {
        trees = defaultTuneTrees(scale, opts.seed);
      } else {
        trees = [];
        for (const s of workloadArgs) {
          const run = await resolveWorkload(s, { ...opts, scale });
          for (const snap of run.sample(opts.samples ?? 1)) {
            trees.push({ name: `${run.info.name}@${snap.iteration}`, tree: snap.tree });
          }
        }
      }
      // Pinned: a kernel family other than auto, and the variant parameters given.
      const { kernel, ...given } = givenOptions(opts);
      const fixed: Partial<MethodOptions> = kernel && kernel !== "auto"
        ? { ...given, kernel }
        : given;
      const minSamples = opts.minSamples ?? d.minSamples;
      const maxSamples = opts.maxSamples ?? Math.max(d.maxSamples, minSamples);
      if (maxSamples < minSamples) {
        throw new UsageError("--max-samples must be at least --min-samples");
      }
      for (const gpu of gpus) {
        const timer = createTimer(gpu, { minSampleNs: BENCH_DEFAULTS.minSampleUs * 1e3 });
        try {
          const runtime = gpu.runtime.name;
          const path = opts.output ?? tuningPath(gpu.info, runtime);
          const key = adapterKey(gpu.info);
          // Read the store first: a malformed file stops the run before any measurement.
          const before = await loadTuning(path, { adapterKey: key, runtime });
          say(
            `tune: ${runtime} on ${
              gpu.info.description || gpu.info.vendor
            }, ${dtype}, ${shape.name}; trees: ${trees.map((t) => t.name).join(", ")}`,
          );
          let entries: TuningEntry[];
          try {
            entries = await tune(gpu, timer, {
              methods,
              trees,
              shape,
              dtype,
              seed: opts.seed,
              timing: {
                warmupMs: opts.warmupMs ?? d.warmupMs,
                budgetMs: opts.budgetMs ?? d.budgetMs,
                minSamples,
                maxSamples,
                targetRelativeCi: d.targetCi,
                cold: Boolean(opts.cold),
                interleaved: true,
              },
              verifyRows: opts.verifyRows ?? d.verifyRows,
              fixed,
              onStep: (m) => say(`tune: ${m}`),
              clockGuard: opts.clockGuard ?? !isSoftwareAdapter(gpu.info),
              clockReference: references.get(gpu) ?? null,
              stored: before ? storedChoices(before, dtype, METHOD_NAMES)?.byMethod : undefined,
            });
          } catch (e) {
            if (e instanceof Error && /^No candidate of/.test(e.message)) {
              io.err(`error: ${runtime}: ${e.message}\n`);
              throw new ExitCode(1);
            }
            throw e;
          }
          const doc = mergeTuning(before, {
            adapterKey: key,
            adapter: gpu.info.description || gpu.info.vendor,
            runtime: { name: runtime, version: gpu.runtime.version },
          }, entries);
          await saveTuning(path, doc);
          all.push(...entries);
          for (const e of entries) {
            wrong += e.candidates.filter((c) => c.status === "failed").length;
            if (!opts.json) io.out(`${runtime}: ${tuningTable(e)}`);
            if (e.lowClock?.length) {
              io.err(
                `warning: ${runtime}: ${e.method}: ${e.lowClock.length} timing(s) ran below ${
                  LOW_CLOCK_FRACTION * 100
                }% of the GPU's working clock (${e.lowClock.slice(0, 3).join("; ")}${
                  e.lowClock.length > 3 ? "; ..." : ""
                }); the choice may be wrong: tune again\n`,
              );
            }
          }
          if (!opts.json) io.out(`tuning: ${path}\n`);
        } finally {
          timer.destroy();
        }
      }
    } finally {
      for (const g of gpus) g.destroy();
    }
    if (opts.json) io.out(JSON.stringify(all, null, 1) + "\n");
    if (wrong > 0) {
      io.err(
        `error: ${wrong} candidate(s) computed wrong results (they cannot win; the others were stored)\n`,
      );
      throw new ExitCode(1);
    }
  });
}

/**
 * `run`: runs one attention method (or all) once on one tree and prints the largest relative error
 * against the float64 reference, with the plan's IO and FLOP counts.
 *
 * @module
 */

import { Command, Option } from "../../deps/commander.ts";
import { Table } from "../../deps/cli_table.ts";
import { GpuError, type RuntimeName } from "../../kernels/gpu.ts";
import { DEFAULT_METHOD_OPTIONS, METHOD_NAMES, type Plan } from "../../kernels/method.ts";
import { kernelVariant } from "../../bench/run.ts";
import { getMethod, METHOD_LIST } from "../../kernels/methods/mod.ts";
import { logitLimitNote } from "../../kernels/f16_logits.ts";
import { InvalidOutputError, Problem, runMethod } from "../../kernels/problem.ts";
import type { Row } from "../../kernels/reference.ts";
import {
  allRows,
  type Reference,
  referenceOf,
  sampleRows,
  TOLERANCE,
  verify,
} from "../../kernels/verify.ts";
import { resolveShape } from "../../workloads/shapes.ts";
import { IndexedTree, treeFacts } from "../../workloads/tree.ts";
import { ExitCode, fromInput, UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { givenOptions, methodOptionFlags, variantOption } from "../method_args.ts";
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

/** One method's outcome on one runtime in `run`. */
export interface RunOutcome {
  method: string;
  runtime: RuntimeName;
  /** Kernel variant the plan reported (the family asked for when it names none); null on error. */
  kernel: string | null;
  maxRelError: number | null;
  tolerance: number;
  unwritten: number;
  nonFinite: number;
  passed: boolean;
  error: string | null;
  /** Why the output is wrong, when known (unwritten values, a limit such as f16 logits). */
  note: string | null;
  plan: Pick<Plan, "counts" | "stats" | "dispatches"> | null;
}

/** Rows to check: every row when the reference is cheap, else a seeded sample of `limit`. */
function chooseRows(
  queries: number,
  qHeads: number,
  pathTokens: number,
  headDim: number,
  limit: number,
  seed: number,
): Row[] {
  if (pathTokens * qHeads * headDim <= 2e8) return allRows(queries, qHeads);
  return sampleRows(queries, qHeads, limit, seed ^ 0x5eed);
}

/** Builds the `run` command. */
export function runCommand(io: CliIo) {
  const cmd = new Command("run")
    .description(
      "Run one attention method (or all) once on one tree, and print the largest relative error against the float64 reference with the method's IO (paper and real accounting) and FLOP counts. Exits 1 when a method is wrong.",
    )
    .argument("<method>", `method name (${METHOD_NAMES.join(", ")}) or "all"`)
    .argument("<workload>", "tree or run .json file, preset or generator")
    .addOption(
      new Option("--snapshot <i>", "iteration of a run to use (default: the last)").argParser(
        intArg("--snapshot"),
      ),
    )
    .addOption(
      new Option("--shape <shape>", "model shape: preset or Q/KV/D").argParser(shapeArg).default(
        "llama3-8b",
      ),
    )
    .addOption(
      new Option("--dtype <dtype>", "storage dtype (default f16 when the adapter has shader-f16)")
        .choices(["f16", "f32"] as const),
    )
    .addOption(
      new Option("--seed <n>", "seed of Q/K/V and of generators").argParser(intArg("--seed"))
        .default(1),
    )
    .addOption(new Option("--scale <s>", "shrink presets by s in (0, 1]").argParser(scaleArg))
    .addOption(
      new Option("--rows <n>", "rows (query, head) checked when the tree is large").argParser(
        intArg("--rows"),
      ).default(512),
    )
    .addOption(
      new Option("--adapter <kind>", "adapter preference").choices(
        ["high-performance", "low-power", "fallback"] as const,
      ).default("high-performance"),
    )
    .addOption(runtimeOption())
    .addOption(dawnNodeOption())
    .addOption(kernelOption())
    .addOption(variantOption())
    .option("--json", "print JSON");
  for (const o of [...methodOptionFlags({ withDefaults: true }), ...generatorOptions()]) {
    cmd.addOption(o);
  }
  return cmd.action(async (methodArg, workload, opts) => {
    const methods = methodArg === "all"
      ? [...METHOD_LIST]
      : [fromInput(() => getMethod(methodArg))];
    if (methods.length === 0) throw new UsageError("No methods are registered");
    const shape = resolveShape(opts.shape);
    const run = await resolveWorkload(workload, opts);
    const iteration = opts.snapshot ?? run.iterations - 1;
    if (iteration >= run.iterations) {
      throw new UsageError(
        `--snapshot ${iteration} is outside the run: it has iterations 0 to ${run.iterations - 1}`,
      );
    }
    const ix = new IndexedTree(run.snapshot(iteration));
    const facts = treeFacts(ix);
    if (facts.queries === 0) {
      throw new UsageError(
        `${workload}: the tree at iteration ${iteration} has no queries; attention needs at least one query`,
      );
    }
    const rt = runtimeArgs(opts);
    const gpus = await openRuntimes(
      rt,
      opts.adapter === "fallback"
        ? { forceFallbackAdapter: true }
        : { powerPreference: opts.adapter },
    );
    try {
      // --dtype f16 must be possible on every runtime (storageDtype says why not).
      const dtype = storageDtype(gpus, opts.dtype);
      for (const g of gpus) checkKernel(opts.kernel, g, dtype);
      for (const g of gpus) await useStoredResidency(g);
      const options = { ...DEFAULT_METHOD_OPTIONS, ...givenOptions(opts) };
      const rows = chooseRows(
        facts.queries,
        shape.qHeads,
        facts.pathTokens,
        shape.headDim,
        opts.rows,
        opts.seed,
      );
      const outcomes: RunOutcome[] = [];
      // Methods whose plan refused this input (a size or option beyond the method's limits).
      const limited: RunOutcome[] = [];
      let reference: Reference | null = null;
      const tolerance = TOLERANCE[dtype];
      for (const gpu of gpus) {
        const runtime = gpu.runtime.name;
        // The same seeded data on every runtime: one reference serves them all.
        const problem = Problem.create(gpu, ix, { shape, dtype, seed: opts.seed });
        try {
          reference ??= referenceOf(problem, rows);
          for (const method of methods) {
            const failure = (error: string): RunOutcome => ({
              method: method.name,
              runtime,
              kernel: null,
              maxRelError: null,
              tolerance,
              unwritten: 0,
              nonFinite: 0,
              passed: false,
              error,
              note: null,
              plan: null,
            });
            let plan: Plan;
            try {
              plan = problem.plan(method, options);
            } catch (e) {
              // A plan reads only the tree, the shape and the options given here: a RangeError
              // names a limit of this input (bad input, exit 2), not a bug.
              if (!(e instanceof RangeError)) throw e;
              const o = failure(e.message);
              outcomes.push(o);
              limited.push(o);
              continue;
            }
            try {
              let output: Float32Array;
              let note: string | null = null;
              try {
                ({ output } = await runMethod(problem, method, options, plan));
              } catch (e) {
                // Unwritten or NaN values: still report the error of the values that were written.
                if (!(e instanceof InvalidOutputError)) throw e;
                ({ output, plan } = e);
                note = e.message;
              }
              const r = verify(output, reference, shape, dtype);
              const { passed, unwritten, nonFinite, tolerance } = r;
              if (!passed && note === null) {
                note = logitLimitNote(method, problem.ix, problem.layout, problem.data, rows, {
                  tolerance,
                });
                if (note) note = `${method.name}: ${note}`;
              }
              outcomes.push({
                method: method.name,
                runtime,
                kernel: kernelVariant(plan, options),
                maxRelError: r.maxRelError,
                tolerance,
                unwritten,
                nonFinite,
                passed,
                error: null,
                note,
                plan: { counts: plan.counts, stats: plan.stats, dispatches: plan.dispatches },
              });
            } catch (e) {
              if (!(e instanceof GpuError)) throw e;
              outcomes.push(failure(e.message));
            }
          }
        } finally {
          problem.destroy();
        }
      }
      const gpu = gpus[0]!;
      const header = {
        workload: run.info.name,
        iteration,
        facts,
        shape,
        dtype,
        adapter: gpu.info.description || gpu.info.vendor,
        runtimes: gpus.map((g) => ({
          name: g.runtime.name,
          version: g.runtime.version,
          adapter: g.info.description || g.info.vendor,
        })),
        rowsChecked: rows.length,
      };
      if (opts.json) {
        io.out(JSON.stringify({ ...header, outcomes }, null, 2) + "\n");
      } else {
        io.out(
          `${header.workload} iteration ${iteration}: ${facts.nodes} nodes, N_tree ${facts.treeTokens}, ${facts.queries} queries, ΣN_i ${facts.pathTokens}; ${shape.name} ${shape.qHeads}/${shape.kvHeads}/${shape.headDim} ${dtype} on ${
            header.runtimes.map((r) => `${r.adapter} (${r.version})`).join(" and ")
          }; ${header.rowsChecked} rows checked\n`,
        );
        const t = new Table({
          head: [
            "method",
            "runtime",
            "kernel",
            "max rel error",
            "unwritten",
            "NaN/inf",
            "ok",
            "paper KV",
            "paper mask",
            "paper PA",
            "real bytes",
            "real KV",
            "GFLOP",
            "dispatches",
          ],
          style: { head: [], border: [] },
        });
        const mb = (x: number) => `${(x / 1e6).toFixed(2)} MB`;
        for (const o of outcomes) {
          const c = o.plan?.counts;
          t.push([
            o.method,
            o.runtime,
            o.kernel ?? "",
            o.maxRelError === null ? `error: ${o.error}` : o.maxRelError.toExponential(2),
            o.maxRelError === null ? "" : String(o.unwritten),
            o.maxRelError === null ? "" : String(o.nonFinite),
            o.passed ? "yes" : "NO",
            c ? mb(c.paper.kvBytes) : "",
            c ? mb(c.paper.maskBytes) : "",
            c ? mb(c.paper.partialBytes) : "",
            c ? mb(c.real.totalBytes) : "",
            c ? mb(c.real.kvBytes) : "",
            c ? (c.flops / 1e9).toFixed(3) : "",
            o.plan ? String(o.plan.dispatches.length) : "",
          ]);
        }
        io.out(t.toString() + "\n");
        for (const o of outcomes) if (o.note) io.out(`note: ${o.note}\n`);
        io.out(
          "max rel error over the rows checked; unwritten and NaN/inf over the whole output. IO per layer; paper accounting counts per query head (the paper's Table 12/17); real accounting counts the bytes the kernels load and store.\n",
        );
      }
      const name = (o: RunOutcome) => (gpus.length > 1 ? `${o.method} (${o.runtime})` : o.method);
      const failed = outcomes.filter((o) => !o.passed && !limited.includes(o));
      if (failed.length > 0) {
        io.err(`error: ${failed.map(name).join(", ")} failed the check against the reference\n`);
        throw new ExitCode(1);
      }
      // Nothing wrong but the input: bad input (exit 2), naming each method's limit.
      if (limited.length > 0) {
        throw new UsageError(
          [...new Set(limited.map((o) => `${o.method} cannot run this input: ${o.error}`))].join(
            "; ",
          ),
        );
      }
    } finally {
      for (const g of gpus) g.destroy();
    }
  });
}

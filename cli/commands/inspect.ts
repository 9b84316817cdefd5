/**
 * `inspect`: a table of the derived facts of trees and runs, with the paper-style KV IO of
 * sequence-based against tree-aware methods and the reduction 1 - 1/F_s.
 *
 * @module
 */

import { Command, Option } from "../../deps/commander.ts";
import { Table } from "../../deps/cli_table.ts";
import { kvIo } from "../../workloads/io.ts";
import { resolveShape } from "../../workloads/shapes.ts";
import { type RunFacts, runFacts } from "../../workloads/run.ts";
import { UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { generatorOptions, intArg, resolveWorkload, scaleArg, shapeArg } from "../workload_args.ts";

/** One row of the inspect table (also its JSON form). */
export interface InspectRow {
  workload: string;
  kind: string;
  iterations: number;
  snapshots: number;
  maxNodes: number;
  maxDepth: number;
  meanTreeTokens: number;
  meanQueries: number;
  meanPathTokens: number;
  sharingFactor: number;
  kvIoSequenceBytes: number;
  kvIoTreeBytes: number;
  kvIoReduction: number;
}

/** Decimal byte sizes (TB as in the paper's Table 17). */
export function formatDecimalBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let u = 0;
  let x = n;
  while (x >= 1000 && u < units.length - 1) {
    x /= 1000;
    u++;
  }
  return `${x.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

/** Builds an inspect row from run facts. */
export function inspectRow(
  name: string,
  kind: string,
  f: RunFacts,
  shapeSpec: string,
  dtype: "f16" | "f32",
): InspectRow {
  const io = kvIo(f, resolveShape(shapeSpec), dtype);
  return {
    workload: name,
    kind,
    iterations: f.iterations,
    snapshots: f.snapshots,
    maxNodes: f.max.nodes,
    maxDepth: f.max.depth,
    meanTreeTokens: f.treeTokens / f.iterations,
    meanQueries: f.queries / f.iterations,
    meanPathTokens: f.pathTokens / f.iterations,
    sharingFactor: f.treeTokens === 0 ? 0 : f.pathTokens / f.treeTokens,
    kvIoSequenceBytes: io.sequenceModelBytes,
    kvIoTreeBytes: io.treeModelBytes,
    kvIoReduction: io.reduction,
  };
}

/** Builds the `inspect` command. */
export function inspectCommand(io: CliIo) {
  const cmd = new Command("inspect")
    .description(
      "Print the derived facts of workloads (presets, generators or .json files): nodes, depth, N_tree, queries, sum of path lengths, sharing factor F_s, and the paper-style KV IO of sequence-based (2·d·ΣN_i) against tree-aware (2·d·N_tree) methods over the whole run, for a model of --shape.",
    )
    .argument("<workloads...>", "preset names, generator kinds or .json files")
    .addOption(
      new Option("--shape <shape>", "model shape: preset or Q/KV/D[/LAYERS]").argParser(shapeArg)
        .default("llama3-8b"),
    )
    .addOption(
      new Option("--dtype <dtype>", "KV dtype for byte counts").choices(["f16", "f32"] as const)
        .default("f16"),
    )
    .addOption(new Option("--seed <n>", "generator seed").argParser(intArg("--seed")).default(1))
    .addOption(
      new Option("--scale <s>", "shrink token counts and run length by s in (0, 1]").argParser(
        scaleArg,
      ),
    )
    .addOption(
      new Option("--sample <k>", "estimate from k weighted iterations instead of all").argParser(
        intArg("--sample"),
      ),
    )
    .addOption(
      new Option("--snapshot <i>", "inspect iteration i alone").argParser(intArg("--snapshot"))
        .conflicts("sample"),
    )
    .option("--json", "print JSON instead of a table");
  for (const o of generatorOptions()) cmd.addOption(o);
  return cmd.action(async (workloads, opts) => {
    resolveShape(opts.shape);
    const rows: InspectRow[] = [];
    for (const w of workloads) {
      const run = await resolveWorkload(w, opts);
      let facts: RunFacts;
      if (opts.snapshot !== undefined) {
        if (opts.snapshot >= run.iterations) {
          throw new UsageError(
            `--snapshot ${opts.snapshot} is outside the run: ${w} has iterations 0 to ${
              run.iterations - 1
            }`,
          );
        }
        const tree = run.snapshot(opts.snapshot);
        facts = {
          ...runFacts(run, [{ iteration: opts.snapshot, weight: 1, tree }]),
          iterations: 1,
        };
      } else {
        if (opts.sample === 0) throw new UsageError("--sample must be at least 1");
        facts = runFacts(run, opts.sample === undefined ? undefined : run.sample(opts.sample));
      }
      rows.push(inspectRow(run.info.name, run.info.kind, facts, opts.shape, opts.dtype));
    }
    if (opts.json) {
      io.out(
        JSON.stringify({ shape: resolveShape(opts.shape), dtype: opts.dtype, rows }, null, 2) +
          "\n",
      );
      return;
    }
    const table = new Table({
      head: [
        "workload",
        "iters",
        "max nodes",
        "max depth",
        "N_tree",
        "queries",
        "ΣN_i",
        "F_s",
        "KV IO seq",
        "KV IO tree",
        "reduction",
      ],
      style: { head: [], border: [] },
    });
    for (const r of rows) {
      table.push([
        r.workload,
        r.iterations,
        r.maxNodes,
        r.maxDepth,
        r.meanTreeTokens.toFixed(0),
        r.meanQueries.toFixed(1),
        r.meanPathTokens.toFixed(0),
        r.sharingFactor.toFixed(2),
        formatDecimalBytes(r.kvIoSequenceBytes),
        formatDecimalBytes(r.kvIoTreeBytes),
        `${(r.kvIoReduction * 100).toFixed(2)} %`,
      ]);
    }
    io.out(table.toString() + "\n");
    const s = resolveShape(opts.shape);
    io.out(
      `N_tree, queries and ΣN_i are means per iteration; KV IO is the whole run in the paper's accounting (per query head) for ${s.name} (${s.qHeads} query heads, d=${s.headDim}, ${s.layers} layers, ${opts.dtype}).\n`,
    );
  });
}

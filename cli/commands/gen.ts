/**
 * `gen`: writes a workload as JSON: the whole run, a sample of it, or one snapshot as a tree.
 *
 * @module
 */

import { Command, Option } from "../../deps/commander.ts";
import { stringifyRun, stringifyTree } from "../../workloads/format.ts";
import { refuseOverlap, writeFileAtomic } from "../../results/files.ts";
import { UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { generatorOptions, intArg, resolveWorkload, scaleArg } from "../workload_args.ts";

/** Builds the `gen` command. */
export function genCommand(io: CliIo) {
  const cmd = new Command("gen")
    .description(
      "Write a workload as JSON: a deft-bench/run document (every iteration, or --sample K of them) or, with --snapshot, one iteration as a deft-bench/tree document.",
    )
    .argument("<workload>", "preset name, generator kind (few-shot, reasoning, speculative, grid)")
    .option("-o, --output <file>", "write to this file instead of standard output")
    .option("--force", "overwrite an existing output file")
    .addOption(new Option("--seed <n>", "generator seed").argParser(intArg("--seed")).default(1))
    .addOption(
      new Option("--scale <s>", "shrink token counts and run length by s in (0, 1]").argParser(
        scaleArg,
      ),
    )
    .addOption(
      new Option("--sample <k>", "only k iterations spread over the run, weighted").argParser(
        intArg("--sample"),
      ),
    )
    .addOption(
      new Option("--snapshot <i>", "only iteration i (0-based), as a tree document").argParser(
        intArg("--snapshot"),
      ).conflicts("sample"),
    );
  for (const o of generatorOptions()) cmd.addOption(o);
  return cmd.action(async (workload, opts) => {
    if (opts.output && (workload.endsWith(".json") || workload.includes("/"))) {
      await refuseOverlap([opts.output], [workload]);
    }
    const run = await resolveWorkload(workload, opts);
    let text: string;
    if (opts.snapshot !== undefined) {
      if (opts.snapshot >= run.iterations) {
        throw new UsageError(
          `--snapshot ${opts.snapshot} is outside the run: ${workload} has iterations 0 to ${
            run.iterations - 1
          }`,
        );
      }
      text = stringifyTree(run.snapshot(opts.snapshot));
    } else {
      if (opts.sample === 0) throw new UsageError("--sample must be at least 1");
      text = stringifyRun(run.toDocument(opts.sample));
    }
    if (opts.output) {
      await writeFileAtomic(opts.output, text, { force: opts.force });
      io.err(`wrote ${opts.output} (${text.length} bytes)\n`);
    } else {
      io.out(text);
    }
  });
}

/**
 * `compare BASE.json HEAD.json`: per-case latency ratios with a bootstrap interval and a
 * Mann-Whitney U test, exact IO and FLOP checks; Markdown on standard output (for a CI job
 * summary), JSON on request. Exit 1 when anything regressed, 2 on bad input.
 *
 * @module
 */

import { Command, InvalidArgumentError, Option } from "../../deps/commander.ts";
import {
  compareExitCode,
  compareRuns,
  DEFAULT_COMPARE_OPTIONS,
  MismatchError,
} from "../../report/compare.ts";
import { formatMarkdown } from "../../report/compare_markdown.ts";
import { readResults } from "../../results/document.ts";
import { refuseOverlap, writeFileAtomic } from "../../results/files.ts";
import { ExitCode, UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";

function nonNegative(flag: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === "" || !Number.isFinite(x) || x < 0) {
      throw new InvalidArgumentError(`${flag} must be a non-negative number, got "${v}"`);
    }
    return x;
  };
}

function probability(v: string): number {
  const x = Number(v);
  if (v.trim() === "" || !(x > 0 && x < 1)) {
    throw new InvalidArgumentError(`--alpha must be a number in (0, 1), got "${v}"`);
  }
  return x;
}

/** Builds the `compare` command. */
export function compareCommand(io: CliIo) {
  return new Command("compare")
    .description(
      "Compare two results documents case by case: ratio of medians (head / base) with a 95 % bootstrap interval and a Mann-Whitney U test on the raw samples. A case regresses when the ratio exceeds 1 + threshold and the test agrees, when its IO bytes or FLOPs grew (they must match exactly), or when it fails in HEAD. A case measured below its adapter's working clock on either side (flagged lowClock by bench) is not judged: verdict unreliable-clock, neither regression nor improvement. Prints a Markdown table (append it to $GITHUB_STEP_SUMMARY); exit 1 when anything regressed, 0 otherwise, 2 on bad input.",
    )
    .argument("<base>", "results document of the baseline run")
    .argument("<head>", "results document of the run under test")
    .addOption(
      new Option(
        "--threshold <t>",
        "relative change of the median that counts, e.g. 0.05 (5 %) or 0.5 on a noisy software adapter",
      ).argParser(nonNegative("--threshold")).default(DEFAULT_COMPARE_OPTIONS.threshold),
    )
    .addOption(
      new Option("--alpha <p>", "significance level of the Mann-Whitney U test").argParser(
        probability,
      ).default(DEFAULT_COMPARE_OPTIONS.alpha),
    )
    .option("--json-output <file>", "also write the comparison as JSON to this file")
    .option("--markdown-output <file>", "also write the Markdown to this file")
    .option("--force", "overwrite existing output files")
    .option("--common-only", "compare the cases both runs hold and list the others")
    .option("--quiet", "print nothing on standard output (use the exit code and files)")
    .action(async (basePath, headPath, opts) => {
      const outputs = [opts.jsonOutput, opts.markdownOutput].filter((o): o is string => !!o);
      await refuseOverlap(outputs, [basePath, headPath]);
      const base = await readResults(basePath);
      const head = await readResults(headPath);
      let comparison;
      try {
        comparison = compareRuns(base, head, {
          threshold: opts.threshold,
          alpha: opts.alpha,
          commonOnly: opts.commonOnly ?? false,
        });
      } catch (e) {
        if (e instanceof MismatchError) {
          throw new UsageError(`cannot compare ${basePath} with ${headPath}: ${e.message}`);
        }
        throw e;
      }
      const markdown = formatMarkdown(comparison);
      const force = opts.force ?? false;
      if (opts.jsonOutput) {
        await writeFileAtomic(opts.jsonOutput, JSON.stringify(comparison, null, 2) + "\n", {
          force,
        });
      }
      if (opts.markdownOutput) await writeFileAtomic(opts.markdownOutput, markdown, { force });
      if (!opts.quiet) io.out(markdown);
      const s = comparison.summary;
      io.err(
        `compare: ${s.regressions} regression(s), ${s.improvements} improvement(s), ${s.noise} unchanged${
          s.unreliableClock > 0 ? `, ${s.unreliableClock} not judged (low clock)` : ""
        } of ${comparison.cases.length} case(s)\n`,
      );
      const code = compareExitCode(comparison);
      if (code !== 0) throw new ExitCode(code);
    });
}

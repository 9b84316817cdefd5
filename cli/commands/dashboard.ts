/**
 * `dashboard RUN.json... -o site/`: a static site of every given run (folders are searched for
 * results documents): history per case, latest results, and each run's report.
 *
 * @module
 */

import { Command } from "../../deps/commander.ts";
import {
  buildDashboard,
  type DashboardRun,
  type SkippedFile,
  writeSite,
} from "../../report/dashboard.ts";
import { parseResults } from "../../results/document.ts";
import { refuseOverlap } from "../../results/files.ts";
import { UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { type InterruptSignal, interruptStatus, onInterrupt } from "../signals.ts";

/** `.json` files under a folder, sorted, recursively. */
async function jsonFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir.replace(/\/+$/, "")}/${e.name}`;
    if (e.isDirectory) { for (const f of await jsonFiles(p)) out.push(f); }
    else if (e.isFile && e.name.endsWith(".json")) out.push(p);
  }
  return out.sort();
}

/** Builds the `dashboard` command. */
export function dashboardCommand(io: CliIo) {
  return new Command("dashboard")
    .description(
      "Export a static site from results documents: index.html with the history of each case over the runs (ordered by start time, then commit), the latest results with their change, and links to each run's report (runs/<id>.html) and data; one shared chart.umd.min.js. Every input must exist; a .json file (named or found in a folder) that cannot be read or is not a valid results document is skipped with a warning naming it and why, and the site lists it (exit 2 when no run is left). The output folder is replaced atomically, only with --force, and only when it holds nothing but a site deft-bench wrote; it may not be an input, hold one, or lie inside one.",
    )
    .argument("<runs...>", "results documents, or folders searched for them")
    .requiredOption("-o, --output <dir>", "output folder")
    .option("--force", "replace an existing output folder written by dashboard")
    .option("--title <text>", "page title of the index")
    .action(async (inputs, opts) => {
      await refuseOverlap([opts.output], inputs);
      const runs: DashboardRun[] = [];
      const skipped: SkippedFile[] = [];
      for (const input of inputs) {
        const info = await Deno.stat(input).catch((e) => {
          if (e instanceof Deno.errors.NotFound) throw new UsageError(`${input} does not exist`);
          throw new UsageError(`cannot read ${input}: ${(e as Error).message}`);
        });
        const paths = info.isDirectory ? await jsonFiles(input) : [input];
        for (const path of paths) {
          // One rule for every file: a run that cannot be read or validated is skipped, by name.
          try {
            runs.push({ doc: parseResults(await Deno.readTextFile(path), path), source: path });
          } catch (e) {
            const reason = (e as Error).message.replace(`${path}: `, "");
            skipped.push({ path, reason });
            io.err(`dashboard: warning: skipped ${path}: ${reason}\n`);
          }
        }
      }
      if (runs.length === 0) {
        throw new UsageError(
          `no valid results documents in ${inputs.join(", ")}${
            skipped.length ? ` (${skipped.length} file(s) skipped, named above)` : ""
          }`,
        );
      }
      const files = buildDashboard(runs, { title: opts.title, skipped });
      // Ctrl-C (or SIGTERM) during the write waits for it: the site is written and renamed in one
      // synchronous step, then the command exits as interrupted.
      let caught: InterruptSignal | null = null;
      const removeListeners = onInterrupt((name) => {
        caught = name;
      });
      try {
        await writeSite(opts.output, files, { force: opts.force ?? false });
      } finally {
        removeListeners();
      }
      if (caught !== null) {
        io.err(`\n${caught}: the dashboard was written to ${opts.output} before stopping\n`);
        Deno.exit(interruptStatus(caught));
      }
      io.err(
        `dashboard: wrote ${files.size} file(s) for ${runs.length} run(s) to ${opts.output}${
          skipped.length ? `; skipped ${skipped.length} file(s)` : ""
        }\n`,
      );
    });
}

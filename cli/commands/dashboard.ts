/**
 * `dashboard RUN.json... -o site/`: a static site of every given run (folders are searched for
 * results documents): history per case, latest results, and each run's report.
 *
 * @module
 */

import { Command } from "../../deps/commander.ts";
import { buildDashboard, type DashboardRun, writeSite } from "../../results/dashboard.ts";
import { parseResults } from "../../results/document.ts";
import { RESULTS_FORMAT } from "../../results/schema.ts";
import { UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";

/** `.json` files under a folder, sorted, recursively. */
async function jsonFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir.replace(/\/+$/, "")}/${e.name}`;
    if (e.isDirectory) out.push(...await jsonFiles(p));
    else if (e.isFile && e.name.endsWith(".json")) out.push(p);
  }
  return out.sort();
}

/** Whether a text looks like a results document (so folders may hold other JSON). */
function isResultsText(text: string): boolean {
  try {
    const v = JSON.parse(text);
    return typeof v === "object" && v !== null && v.format === RESULTS_FORMAT;
  } catch {
    return false;
  }
}

/** Builds the `dashboard` command. */
export function dashboardCommand(io: CliIo) {
  return new Command("dashboard")
    .description(
      "Export a static site from results documents: index.html with the history of each case over the runs (ordered by start time, then commit), the latest results with their change, and links to each run's report (runs/<id>.html) and data; one shared chart.umd.min.js. The output folder is replaced atomically, and only with --force.",
    )
    .argument("<runs...>", "results documents, or folders searched for them")
    .requiredOption("-o, --output <dir>", "output folder")
    .option("--force", "replace an existing output folder")
    .option("--title <text>", "page title of the index")
    .action(async (inputs, opts) => {
      const runs: DashboardRun[] = [];
      for (const input of inputs) {
        const info = await Deno.stat(input);
        if (info.isDirectory) {
          let skipped = 0;
          for (const path of await jsonFiles(input)) {
            const text = await Deno.readTextFile(path);
            if (!isResultsText(text)) {
              skipped++;
              continue;
            }
            runs.push({ doc: parseResults(text, path), source: path });
          }
          if (skipped) {
            io.err(
              `dashboard: skipped ${skipped} JSON file(s) in ${input} that are not results documents\n`,
            );
          }
        } else {
          runs.push({ doc: parseResults(await Deno.readTextFile(input), input), source: input });
        }
      }
      if (runs.length === 0) {
        throw new UsageError(`no results documents found in ${inputs.join(", ")}`);
      }
      const files = buildDashboard(runs, { title: opts.title });
      await writeSite(opts.output, files, { force: opts.force ?? false });
      io.err(
        `dashboard: wrote ${files.size} file(s) for ${runs.length} run(s) to ${opts.output}\n`,
      );
    });
}

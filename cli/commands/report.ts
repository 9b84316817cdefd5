/**
 * `report RUN.json... -o report.html`: one self-contained HTML report of one or more runs
 * (chart.js inlined unless `--cdn`).
 *
 * @module
 */

import { Command } from "../../deps/commander.ts";
import { readResults } from "../../results/document.ts";
import { refuseOverlap, writeFileAtomic } from "../../results/files.ts";
import { renderReport } from "../../report/report.ts";
import type { CliIo } from "../io.ts";

/** Builds the `report` command. */
export function reportCommand(io: CliIo) {
  return new Command("report")
    .description(
      "Render one or more results documents as one self-contained HTML file: latency per method per workload, speedup over sequence, KV / mask / partial-result IO, roofline position, latency along sweeps, a drawing of each workload tree with DeFT-Flatten's blocks, environment, settings, warnings and per-case tables. Chart.js is inlined, so the file opens offline.",
    )
    .argument("<runs...>", "results documents (.json) written by `bench`")
    .option("-o, --output <file>", "write the HTML to this file instead of standard output")
    .option("--force", "overwrite an existing output file")
    .option(
      "--cdn",
      "load chart.js from the jsDelivr CDN instead of inlining it (smaller, needs the network)",
    )
    .option("--title <text>", "page title")
    .action(async (runs, opts) => {
      if (opts.output) await refuseOverlap([opts.output], runs);
      const docs = [];
      for (const path of runs) docs.push(await readResults(path));
      const html = renderReport(docs, { chartJs: opts.cdn ? "cdn" : "inline", title: opts.title });
      if (opts.output) {
        await writeFileAtomic(opts.output, html, { force: opts.force ?? false });
        io.err(
          `report: wrote ${opts.output} (${docs.length} run(s), ${
            (html.length / 1024).toFixed(0)
          } KiB)\n`,
        );
      } else {
        io.out(html);
      }
    });
}

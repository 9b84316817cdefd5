/**
 * `report`: one or more results documents as one self-contained HTML file. Chart.js (vendored in
 * `deps/chart.js/`) is inlined by default, so the file opens offline; the chart data are computed
 * here and embedded as JSON, and every string from the input is escaped. A content security policy
 * allows only the page's own scripts (by hash), so the report cannot reach the network at view time.
 *
 * Charts: latency per method per workload, speedup over sequence, KV / mask / partial-result IO,
 * roofline position, latency along sweeps, and an SVG drawing of each workload tree with
 * DeFT-Flatten's blocks.
 *
 * The report reads results documents only (and the tree model of `workloads/tree.ts` to draw
 * trees). Its modules: `page.ts` (the page, its CSP, `report.css` and `chart_runtime.js`),
 * `escape.ts`, `common.ts` (colours, method order, series), `charts.ts`, `tree_svg.ts`,
 * `tables.ts`, and this file, which puts a run's sections together.
 *
 * @module
 */

import { caseProblem, caseRefs, formatNs, runLabel, seriesLabel } from "../results/document.ts";
import type { ResultsDocument } from "../results/schema.ts";
import { runCharts } from "./charts.ts";
import { type ChartSpec, methodStatus, workloadLabel } from "./common.ts";
import { escapeHtml as esc } from "./escape.ts";
import { type ChartJsSource, htmlPage } from "./page.ts";
import {
  calibrationTable,
  caseTable,
  environmentTable,
  settingsTable,
  totalsTable,
} from "./tables.ts";
import { flattenBlockSize, treeFigure } from "./tree_svg.ts";

/** Options of {@linkcode renderReport}. */
export interface ReportOptions {
  /** Where the page gets chart.js (see {@linkcode ChartJsSource}; default `inline`). */
  chartJs?: ChartJsSource;
  /** Page title (default: "deft-bench report" and the run label). */
  title?: string;
  /** A link shown above the title, e.g. back to the dashboard. */
  backLink?: { href: string; text: string };
}

function notices(doc: ResultsDocument): string {
  const out: string[] = [];
  const e = doc.environment;
  if (doc.partial) {
    out.push(
      `<p class="notice bad"><b>Partial run</b>: ${esc(doc.partial.reason)}; it holds ${
        esc(doc.partial.completedCases)
      } of the ${
        esc(doc.partial.plannedCases)
      } planned cases. Workloads it did not finish have no whole-run totals.</p>`,
    );
  }
  if (doc.settings.smoke) {
    out.push(`<p class="notice bad"><b>Smoke run</b>: ${esc(doc.settings.smoke)}</p>`);
  }
  if (e.adapter.isFallbackAdapter || doc.runtimes.some((r) => r.adapter.isFallbackAdapter)) {
    out.push(
      `<p class="notice">This run used a fallback (software) adapter: latencies describe a CPU rasterizer, not a GPU.</p>`,
    );
  }
  if (doc.settings.scale !== 1) {
    out.push(
      `<p class="notice">Workloads were scaled by ${esc(doc.settings.scale)}${
        doc.settings.scaleReason ? ` (${esc(doc.settings.scaleReason)})` : ""
      }: sizes are smaller than the paper's.</p>`,
    );
  }
  if (doc.settings.timing.mode !== "timestamp") {
    out.push(
      `<p class="notice">Timings are wall-clock batches (no timestamp queries): coarse.</p>`,
    );
  }
  const slow = caseRefs(doc).filter((r) => r.case.clock?.lowClock === true);
  if (slow.length) {
    out.push(
      `<p class="notice bad"><b>${slow.length} case(s) were measured below ${
        esc((doc.environment.clock?.lowClockFraction ?? 0.9) * 100)
      } % of the adapter's working clock</b> (the clock reference ran slower beside them): their latencies are not comparable, and <code>compare</code> does not judge them. ${
        slow.slice(0, 6).map((r) =>
          `<code>${esc(r.key)}</code> (${esc(((r.case.clock?.fraction ?? 0) * 100).toFixed(0))} %)`
        ).join(", ")
      }${slow.length > 6 ? ` and ${slow.length - 6} more` : ""}.</p>`,
    );
  }
  const bad = caseRefs(doc).filter((r) => caseProblem(r.case) !== null);
  if (bad.length) {
    out.push(
      `<p class="notice bad"><b>${bad.length} case(s) failed or errored</b> and are not drawn as measurements: ${
        bad.slice(0, 6).map((r) => `<code>${esc(r.key)}</code> (${esc(caseProblem(r.case))})`).join(
          ", ",
        )
      }${bad.length > 6 ? ` and ${bad.length - 6} more` : ""}.</p>`,
    );
  }
  if (doc.warnings.length) {
    // Warnings grouped by code; a code with many (one per case) folds into a details element.
    const item = (w: ResultsDocument["warnings"][number]) =>
      `<li><code>${esc(w.code)}</code> ${esc(w.message)}${
        w.key ? ` <span class="sub">(${esc(w.key)})</span>` : ""
      }</li>`;
    const byCode = new Map<string, ResultsDocument["warnings"]>();
    for (const w of doc.warnings) byCode.set(w.code, [...(byCode.get(w.code) ?? []), w]);
    const parts = [...byCode].map(([code, ws]) =>
      ws.length <= 3
        ? ws.map(item).join("")
        : `<li><details><summary><code>${esc(code)}</code> × ${ws.length}: ${
          esc(ws[0]!.message)
        } …</summary><ul>${ws.map(item).join("")}</ul></details></li>`
    );
    out.push(`<h3>Warnings</h3><ul>${parts.join("")}</ul>`);
  }
  return out.join("");
}

function figure(spec: ChartSpec): string {
  return `<figure${spec.wide ? ` class="wide"` : ""}><h3>${
    esc(spec.title)
  }</h3><div class="chart" style="height:${spec.height ?? 300}px"><canvas id="${
    esc(spec.id)
  }" role="img" aria-label="${esc(spec.caption)}"></canvas></div><figcaption>${
    esc(spec.caption)
  }</figcaption></figure>`;
}

function runSection(doc: ResultsDocument, i: number, charts: ChartSpec[], many: boolean): string {
  const anchor = `run-${i}`;
  const parts: string[] = [];
  parts.push(
    `<section id="${anchor}"><h2>${many ? `Run ${i + 1}: ` : "Run "}${esc(runLabel(doc))}</h2>`,
  );
  const a = doc.environment.adapter;
  const cases = caseRefs(doc).length;
  parts.push(
    `<p class="sub">${
      esc(a.description || [a.vendor, a.architecture].join(" ") || "unknown adapter")
    } · ${esc(doc.runtimes.map((r) => r.version).join(" and "))} · ${
      esc(doc.settings.shape.name)
    } ${esc(doc.settings.dtype)} · ${esc(doc.settings.timing.mode)} timing · scale ${
      esc(doc.settings.scale)
    } · ${doc.workloads.length} workload(s), ${cases} case(s) · <a href="#${anchor}-env">environment and settings</a></p>`,
  );
  parts.push(notices(doc));
  if (doc.workloads.length === 0) {
    parts.push(`<p class="notice bad">This run holds no workloads.</p>`);
  } else {
    parts.push(`<div class="grid">${charts.map(figure).join("")}</div>`);
    parts.push(`<h3>Workload trees and DeFT-Flatten blocks</h3>`);
    parts.push(
      doc.workloads.map((w, k) => treeFigure(w, flattenBlockSize(doc, w), k === 0)).join(""),
    );
    parts.push(`<h3>Totals per workload and method</h3>${totalsTable(doc)}`);
    parts.push(`<h3>Cases</h3>${caseTable(doc)}`);
  }
  parts.push(
    `<div class="tables" id="${anchor}-env"><div><h3>Environment</h3>${
      environmentTable(doc)
    }</div><div><h3>Settings</h3>${settingsTable(doc)}<h3>Calibration</h3>${
      calibrationTable(doc)
    }</div></div>`,
  );
  parts.push(`</section>`);
  return parts.join("");
}

function runsOverview(docs: ResultsDocument[]): string {
  const rows = docs.map((d, i) => {
    const bad = caseRefs(d).filter((r) => caseProblem(r.case) !== null).length;
    return `<tr><td><a href="#run-${i}">Run ${i + 1}</a></td><td>${esc(runLabel(d))}</td><td>${
      esc(d.environment.adapter.description || d.environment.adapter.vendor)
    }</td><td class="num">${esc(d.workloads.length)}</td><td class="num">${
      esc(caseRefs(d).length)
    }</td><td class="num">${bad ? `<span class="badge bad">${bad}</span>` : "0"}</td></tr>`;
  });
  const keyed = new Map<string, (number | null)[]>();
  docs.forEach((d, i) => {
    for (const w of d.workloads) {
      for (const t of w.totals) {
        // Runtimes apart: a Deno-only run labels methods plainly, others add the runtime.
        const k = `${workloadLabel(w)} / ${seriesLabel(t.method, t.runtime, [t.runtime])}`;
        const row = keyed.get(k) ?? new Array<number | null>(docs.length).fill(null);
        row[i] = t.complete && methodStatus(w, t.method, t.runtime) === "ok"
          ? t.meanIterationNs
          : null;
        keyed.set(k, row);
      }
    }
  });
  const cross = [...keyed].map(([k, vals]) => {
    const first = vals[0];
    const last = vals[vals.length - 1];
    const ratio = first && last ? (last / first).toFixed(3) : "–";
    return `<tr><td>${esc(k)}</td>${
      vals.map((v) => `<td class="num">${v === null ? "—" : esc(formatNs(v))}</td>`).join("")
    }<td class="num">${esc(ratio)}</td></tr>`;
  });
  return `<h2>Runs</h2><table><thead><tr><th>run</th><th>commit and time</th><th>adapter</th><th>workloads</th><th>cases</th><th>failed</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table><h3>Mean iteration latency across runs</h3><div class="scroll"><table><thead><tr><th>workload / method</th>${
    docs.map((_, i) => `<th>run ${i + 1}</th>`).join("")
  }<th>last / first</th></tr></thead><tbody>${cross.join("")}</tbody></table></div>`;
}

/**
 * Renders one or more runs as one self-contained HTML page: environment, settings, warnings and
 * failed cases first, then the charts, the tree drawings, and per-workload and per-case tables.
 * Throws `RangeError` when `docs` is empty.
 */
export function renderReport(docs: ResultsDocument[], options: ReportOptions = {}): string {
  if (docs.length === 0) throw new RangeError("A report needs at least one results document");
  const many = docs.length > 1;
  const title = options.title ??
    (many ? `deft-bench report: ${docs.length} runs` : `deft-bench report: ${runLabel(docs[0]!)}`);
  const charts: ChartSpec[] = [];
  const sections = docs.map((d, i) => {
    const c = runCharts(d, `r${i}`);
    charts.push(...c);
    return runSection(d, i, c, many);
  });
  const back = options.backLink
    ? `<p class="sub"><a href="${esc(options.backLink.href)}">← ${
      esc(options.backLink.text)
    }</a></p>`
    : "";
  const lead =
    `<p class="sub">Tree-structured decoding attention on WebGPU (DeFT, arXiv 2404.00242, and its baselines). Latencies are per layer; IO is in the paper's accounting unless marked real.</p>`;
  const body = `${back}<h1>${esc(title)}</h1>${lead}${many ? runsOverview(docs) : ""}${
    sections.join("")
  }`;
  return htmlPage(title, body, charts, options.chartJs);
}

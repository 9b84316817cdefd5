/**
 * `dashboard RUN...`: a static site built only from results documents (asv style: a pure function
 * of the results). `index.html` shows the history of every case over the runs (ordered by start
 * time, then commit), the latest results with their change against the previous run, and links;
 * `runs/<id>.html` is each run's report and `runs/<id>.json` its document; one shared
 * `chart.umd.min.js` serves every page. {@linkcode writeSite} replaces the output folder atomically.
 *
 * @module
 */

import {
  caseProblem,
  caseRefs,
  formatNs,
  orderRuns,
  runLabel,
  runSlug,
  seriesLabel,
} from "../results/document.ts";
import {
  checkReplaceable,
  FileExistsError,
  resolvePath,
  SITE_MANIFEST,
  withTempSync,
  writeTarget,
} from "../results/files.ts";
import {
  caseKey,
  type CaseResult,
  DEFAULT_RUNTIME,
  type ResultsDocument,
} from "../results/schema.ts";
import { axis, type ChartSpec, methodOrder, orderMethods, seriesColour } from "./common.ts";
import { escapeHtml as esc } from "./escape.ts";
import { CHART_JS_SOURCE, htmlPage } from "./page.ts";
import { renderReport } from "./report.ts";
import { statusBadge } from "./tables.ts";

/** One input run; `source` (its file name) is shown in the runs table. */
export interface DashboardRun {
  doc: ResultsDocument;
  source?: string;
}

/** An input file the dashboard left out, and why. */
export interface SkippedFile {
  path: string;
  reason: string;
}

/** Options of {@linkcode buildDashboard}. */
export interface DashboardOptions {
  title?: string;
  /** Input files that were not valid results documents; listed on the index page. */
  skipped?: SkippedFile[];
}

/** Site files by relative path (`index.html`, `chart.umd.min.js`, `runs/<id>.html`, ...). */
export type SiteFiles = Map<string, string>;

interface OrderedRun extends DashboardRun {
  id: string;
  label: string;
}

/** Unique file-name ids per run (a suffix separates runs with the same time and commit). */
function assignIds(runs: DashboardRun[]): OrderedRun[] {
  const seen = new Map<string, number>();
  return orderRuns(runs).map((r) => {
    const base = runSlug(r.doc);
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return { ...r, id: n === 1 ? base : `${base}-${n}`, label: runLabel(r.doc) };
  });
}

function historyCharts(runs: OrderedRun[]): { charts: ChartSpec[]; groups: string[] } {
  // One chart per sampled iteration (workload@iteration): a line per method and runtime (the
  // runtimes' keys differ, so their histories never join), a point per run.
  const groups = new Map<string, { workload: string; iteration: number; series: Set<string> }>();
  const lookup = runs.map((r) => new Map(caseRefs(r.doc).map((c) => [c.key, c.case])));
  for (const r of runs) {
    for (const ref of caseRefs(r.doc)) {
      const group = `${ref.workload.name}@${ref.snapshot.iteration}`;
      const g = groups.get(group) ??
        { workload: ref.workload.name, iteration: ref.snapshot.iteration, series: new Set() };
      g.series.add(`${ref.case.method}\n${ref.case.runtime}`);
      groups.set(group, g);
    }
  }
  const labels = runs.map((r) => r.label);
  const order = methodOrder(runs.map((r) => r.doc));
  const charts = [...groups].map(([group, g], gi): ChartSpec => {
    const pairs = [...g.series].map((x) => x.split("\n") as [string, string]);
    const ordered = orderMethods(pairs.map(([m]) => m), order).flatMap((m) =>
      pairs.filter(([pm]) => pm === m).sort((
        a,
        b,
      ) => (a[1] === DEFAULT_RUNTIME
        ? -1
        : b[1] === DEFAULT_RUNTIME
        ? 1
        : a[1].localeCompare(b[1]))
      )
    );
    const datasets = ordered.map(([m, runtime]) => {
      const key = caseKey(g.workload, g.iteration, m, runtime as CaseResult["runtime"]);
      const cases = lookup.map((l) => l.get(key) ?? null);
      let prevHash: string | null = null;
      const pointStyle = cases.map((c) => {
        const changed = c !== null && prevHash !== null && c.sourceHash !== prevHash;
        if (c) prevHash = c.sourceHash;
        return changed ? "rectRot" : "circle";
      });
      const colour = seriesColour(m, runtime);
      return {
        label: seriesLabel(m, runtime as CaseResult["runtime"], [runtime as CaseResult["runtime"]]),
        borderColor: colour,
        backgroundColor: colour,
        ...(runtime === DEFAULT_RUNTIME ? {} : { borderDash: [6, 3] }),
        data: cases.map((c) => (c && caseProblem(c) === null ? c.timing!.medianNs : null)),
        deftStatus: cases.map((c) => (c === null ? "missing" : statusOf(c))),
        pointStyle,
        pointRadius: pointStyle.map((p) => (p === "rectRot" ? 6 : 3)),
        spanGaps: false,
      };
    });
    return {
      id: `h${gi}`,
      title: `History of ${group}`,
      caption:
        `Median latency of each method's case on ${group} in every run, oldest to newest, one line per method and runtime; a gap with a red ✗ is a failed case, and a diamond marks a run whose kernel source hash differs from the previous one's.`,
      config: {
        type: "line",
        data: { labels, datasets },
        options: {
          scales: {
            x: axis("run (commit, start time)", "plain"),
            y: axis("median latency (1 layer)", "ns", { type: "logarithmic" }),
          },
        },
      },
    };
  });
  return { charts, groups: [...groups.keys()] };
}

function statusOf(c: CaseResult): string {
  if (c.status === "error") return "error";
  return caseProblem(c) === null ? "ok" : "failed";
}

function runsTable(runs: OrderedRun[]): string {
  const rows = [...runs].reverse().map((r) => {
    const d = r.doc;
    const cases = caseRefs(d);
    const bad = cases.filter((c) => caseProblem(c.case) !== null).length;
    const a = d.environment.adapter;
    const partial = d.partial
      ? ` <span class="badge warn" title="${esc(d.partial.reason)}">partial: ${
        esc(d.partial.completedCases)
      } of ${esc(d.partial.plannedCases)} cases</span>`
      : "";
    return `<tr><td><a href="runs/${esc(r.id)}.html">${esc(r.label)}</a>${partial}</td><td>${
      esc(a.description || [a.vendor, a.architecture].join(" "))
    }${a.isFallbackAdapter ? ` <span class="badge warn">fallback</span>` : ""}</td><td>${
      esc(d.settings.shape.name)
    } ${esc(d.settings.dtype)}, scale ${esc(d.settings.scale)}, ${esc(d.settings.timing.mode)}; ${
      esc(d.runtimes.map((x) => x.version).join(", "))
    }</td><td class="num">${cases.length}</td><td class="num">${
      bad ? `<span class="badge bad">${bad}</span>` : "0"
    }</td><td class="num">${d.warnings.length}</td><td>${
      r.source ? `<span class="mono">${esc(r.source)}</span> · ` : ""
    }<a href="runs/${esc(r.id)}.json">json</a></td></tr>`;
  });
  return `<table><thead><tr><th>run (newest first)</th><th>adapter</th><th>settings</th><th>cases</th><th>failed</th><th>warnings</th><th>data</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table>`;
}

function latestTable(runs: OrderedRun[]): string {
  const latest = runs[runs.length - 1]!;
  const earlier = runs.slice(0, -1).reverse().map((r) => ({
    r,
    cases: new Map(caseRefs(r.doc).map((c) => [c.key, c.case])),
  }));
  const rows = caseRefs(latest.doc).map((ref) => {
    const c = ref.case;
    const problem = caseProblem(c);
    // Change against the most recent earlier run where this case has a usable timing.
    let change = "–"; // HTML
    let sourceNote = "";
    for (const e of earlier) {
      const prev = e.cases.get(ref.key);
      if (!prev || caseProblem(prev) !== null) continue;
      if (problem === null) {
        const ratio = c.timing!.medianNs / prev.timing!.medianNs;
        change = `<span title="${esc(`against ${e.r.label}`)}">${ratio.toFixed(3)}×</span>`;
      }
      if (prev.sourceHash !== c.sourceHash) sourceNote = " (kernel source changed)";
      break;
    }
    const t = problem === null ? c.timing! : null;
    return `<tr${problem === null ? "" : ` class="bad"`}><td class="mono">${esc(ref.key)}</td><td>${
      esc(c.method)
    }</td><td>${
      problem === null ? `<span class="badge ok">ok</span>` : `${statusBadge(c)} ${esc(problem)}`
    }</td><td>${esc(c.runtime)}</td><td class="mono">${esc(c.kernel)}</td><td class="num">${
      t ? esc(formatNs(t.medianNs)) : "—"
    }</td><td class="num">${
      t ? esc(`${formatNs(t.ci95Ns[0])} – ${formatNs(t.ci95Ns[1])}`) : "—"
    }</td><td class="num">${change}${esc(sourceNote)}</td></tr>`;
  });
  return `<div class="scroll"><table><thead><tr><th>case</th><th>method</th><th>status</th><th>runtime</th><th>kernel</th><th>median</th><th>95 % CI</th><th>change against the previous run with this case</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table></div>`;
}

function consistencyNotice(runs: OrderedRun[]): string {
  const sig = (d: ResultsDocument) =>
    `${
      d.environment.adapter.description || d.environment.adapter.vendor
    } / ${d.settings.shape.name} ${d.settings.dtype} / scale ${d.settings.scale} / ${d.settings.timing.mode} / ${
      d.runtimes.map((r) => r.version).join(" + ")
    }`;
  const kinds = [...new Set(runs.map((r) => sig(r.doc)))];
  if (kinds.length <= 1) return "";
  return `<p class="notice">The runs differ in adapter, model shape, dtype, scale or timing mode, or in runtime versions (${
    kinds.map(esc).join("; ")
  }): history lines join them anyway, so read steps against the runs table.</p>`;
}

function skippedNotice(skipped: readonly SkippedFile[]): string {
  if (skipped.length === 0) return "";
  return `<p class="notice bad">${skipped.length} input file(s) are not valid results documents and were left out:</p><ul>${
    skipped.map((f) => `<li><span class="mono">${esc(f.path)}</span>: ${esc(f.reason)}</li>`).join(
      "",
    )
  }</ul>`;
}

/**
 * Builds the site's files from results documents (no I/O): the index, one report and one JSON
 * copy per run, and the shared chart.js bundle. Throws `RangeError` for no runs.
 */
export function buildDashboard(inputs: DashboardRun[], options: DashboardOptions = {}): SiteFiles {
  if (inputs.length === 0) throw new RangeError("A dashboard needs at least one results document");
  const runs = assignIds(inputs);
  const files: SiteFiles = new Map();
  files.set("chart.umd.min.js", CHART_JS_SOURCE);
  for (const r of runs) {
    files.set(
      `runs/${r.id}.html`,
      renderReport([r.doc], {
        chartJs: { src: "../chart.umd.min.js" },
        backLink: { href: "../index.html", text: "dashboard" },
      }),
    );
    files.set(`runs/${r.id}.json`, JSON.stringify(r.doc, null, 1) + "\n");
  }
  const latest = runs[runs.length - 1]!;
  const { charts } = historyCharts(runs);
  const title = options.title ?? "deft-bench dashboard";
  const first = runs[0]!.doc.environment.startedAt;
  const last = latest.doc.environment.startedAt;
  const latestBad = caseRefs(latest.doc).filter((c) => caseProblem(c.case) !== null).length;
  const figures = charts.map((c) =>
    `<figure><h3>${esc(c.title)}</h3><div class="chart" style="height:260px"><canvas id="${
      esc(c.id)
    }" role="img" aria-label="${esc(c.caption)}"></canvas></div><figcaption>${
      esc(c.caption)
    }</figcaption></figure>`
  );
  const body = `<h1>${esc(title)}</h1>
<p class="sub">${runs.length} run(s) from ${esc(first)} to ${
    esc(last)
  }, ordered by start time, then commit. Latencies are medians per layer; every run links to its full report.</p>
${consistencyNotice(runs)}${skippedNotice(options.skipped ?? [])}
<p>Latest run: <a href="runs/${esc(latest.id)}.html">${esc(latest.label)}</a>${
    latest.doc.partial
      ? ` <span class="badge warn">partial (${esc(latest.doc.partial.reason)})</span>`
      : ""
  }${
    latestBad
      ? ` <span class="badge bad">${latestBad} case(s) failed or errored</span> (not drawn as measurements)`
      : ""
  }</p>
<h2>History per case</h2>
<div class="grid">${figures.join("")}</div>
<h2>Latest results</h2>
${latestTable(runs)}
<h2>Runs</h2>
${runsTable(runs)}`;
  files.set("index.html", htmlPage(title, body, charts, { src: "chart.umd.min.js" }));
  return files;
}

/**
 * Writes a site into `dir` atomically: the files go to a temporary folder beside it, which then
 * replaces `dir` by renames. An existing `dir` is replaced only with `force`
 * ({@linkcode FileExistsError} otherwise), and only when it holds nothing but files a previous
 * `writeSite` wrote (listed in its {@linkcode SITE_MANIFEST}); a symbolic link is written through.
 */
export async function writeSite(
  dir: string,
  files: SiteFiles,
  { force = false }: { force?: boolean } = {},
): Promise<void> {
  for (const path of files.keys()) {
    if (
      path.split("/").some((p) => p === ".." || p === "." || p === "") || path === SITE_MANIFEST
    ) {
      throw new RangeError(`Unsafe site path ${JSON.stringify(path)}`);
    }
  }
  const named = dir.replace(/\/+$/, "") || "/";
  let exists = false;
  try {
    await Deno.lstat(named);
    exists = true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (exists && !force) throw new FileExistsError(named);
  const target = exists ? await resolvePath(await writeTarget(named)) : named;
  if (exists) await checkReplaceable(target);
  const suffix = `${Deno.pid}.${Math.random().toString(36).slice(2)}`;
  const tmp = `${target}.${suffix}.tmp`;
  const old = `${target}.${suffix}.old`;
  // Written and renamed synchronously, as results files are (results/files.ts): no signal handler
  // runs in between, so an interrupt finds the old site or the new one in place, never neither and
  // never a temporary folder (the command defers Ctrl-C until this returns).
  withTempSync(tmp, () => {
    for (const [path, text] of files) {
      const full = `${tmp}/${path}`;
      Deno.mkdirSync(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      Deno.writeTextFileSync(full, text);
    }
    Deno.writeTextFileSync(
      `${tmp}/${SITE_MANIFEST}`,
      JSON.stringify({ format: "deft-bench/site", files: [...files.keys()].sort() }, null, 1) +
        "\n",
    );
    if (exists) Deno.renameSync(target, old);
    try {
      Deno.renameSync(tmp, target);
    } catch (e) {
      if (exists) Deno.renameSync(old, target);
      throw e;
    }
    if (exists) Deno.removeSync(old, { recursive: true });
  });
}

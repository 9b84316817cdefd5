import { parseResults } from "../results/document.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { caseOf, makeRun, showcaseRun } from "./_results_fixture.ts";
import { launchBrowser, openAndCheck, SKIP_BROWSER } from "./_browser.ts";
import { renderReport } from "../report/report.ts";
import { runCharts } from "../report/charts.ts";
import { methodOrder, orderMethods } from "../report/common.ts";
import { escapeHtml, scriptJson } from "../report/escape.ts";
import { CHART_JS_CDN } from "../report/page.ts";
import { renderTreeSvg } from "../report/tree_svg.ts";
import { main } from "../cli/main.ts";
import { captureIo } from "../cli/io.ts";
import type { Tree } from "../workloads/tree.ts";

const XSS = "<script>alert(1)</script>";
const ATTR_XSS = `"><img src=x onerror=alert(2)>`;

async function cli(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

/** Chart specs embedded in a page. */
function embeddedCharts(html: string): { id: string; config: Record<string, unknown> }[] {
  const m = /<script type="application\/json" id="deft-charts">([^<]*)<\/script>/.exec(html);
  if (!m) throw new Error("the page embeds no chart JSON");
  return JSON.parse(m[1]!);
}

Deno.test("renderReport() escapes every string from the input", () => {
  const doc = showcaseRun({ name: XSS });
  doc.environment.adapter.description = ATTR_XSS;
  doc.environment.command = ["bench", XSS];
  doc.environment.cpu = XSS;
  doc.settings.scaleReason = ATTR_XSS;
  doc.warnings.push({ code: XSS, message: ATTR_XSS, key: XSS });
  doc.workloads[2]!.sweep = { parameter: XSS, value: 32 };
  caseOf(doc, doc.workloads[1]!.snapshots[0]!.cases[0]!.key).sourceHash = ATTR_XSS;
  const html = renderReport([doc], { title: XSS });
  assert(!html.includes(XSS), "the payload never appears raw");
  assert(!html.includes("<img"), "no attribute breakout");
  // Only the page's own three scripts: chart.js, the chart data, the chart runtime.
  assertEquals(html.match(/<script/gi)?.length, 3);
  assertMatch(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assertMatch(html, /\\u003cscript\\u003ealert\(1\)\\u003c\/script\\u003e/);
  // The embedded JSON still carries the exact strings for the charts.
  const charts = embeddedCharts(html);
  const labels = (charts[0]!.config.data as { labels: string[] }).labels;
  assertEquals(labels[0], XSS);
});

Deno.test("escapeHtml() and scriptJson() leave nothing that can break out", () => {
  assertEquals(
    escapeHtml(`<a href="x">'&'</a>`),
    "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;",
  );
  const s = scriptJson({ a: "</script><!-- \u2028 &" });
  assert(!/[<>&\u2028]/.test(s), s);
  assertEquals(JSON.parse(s), { a: "</script><!-- \u2028 &" });
});

Deno.test("renderReport() shows environment, settings, warnings and marks failed cases, never as fast", () => {
  const doc = showcaseRun();
  const html = renderReport([doc]);
  for (
    const text of [
      "NVIDIA H100 80GB HBM3",
      "shader-f16",
      "0123456789abcdef0123456789abcdef01234567",
      "deft-bench bench --preset few-shot-b20 --scale 0.02",
      "2025-01-02T03:04:05.000Z",
      "timestamp queries around each sample",
      "high-noise",
      "CI half-width 7.5 % of the median after the budget",
      "Workloads were scaled by 0.02",
      "2 case(s) failed or errored",
      "GPU validation error: binding too large",
      "95 % CI of median",
      "MAD",
      "verification (max rel. error / tolerance)",
      "N_tree = ",
    ]
  ) assert(html.includes(escapeHtml(text)), `report shows ${text}`);
  assertMatch(
    html,
    /<tr class="bad"><td class="mono">few-shot-b20@4\/tree-mask<\/td><td>tree-mask<\/td><td><span class="badge bad">ERROR<\/span>/,
  );
  // The failed method has no bar where it failed, and a failure status for the ✗ marker.
  const charts = embeddedCharts(html);
  assertEquals(charts.map((c) => c.id), [
    "r0-latency",
    "r0-speedup",
    "r0-io",
    "r0-roofline",
    "r0-sweep-0",
  ]);
  const latency = charts[0]!.config.data as {
    datasets: { label: string; data: (number | null)[]; deftStatus: string[] }[];
  };
  const treeMask = latency.datasets.find((d) => d.label === "tree-mask")!;
  assertEquals(treeMask.data[0], null);
  assertEquals(treeMask.deftStatus[0], "error");
  assert(treeMask.data[1]! > 0);
  const chunk = latency.datasets.find((d) => d.label === "deft-node-chunk")!;
  assertEquals(chunk.deftStatus[3], "failed");
  assertEquals(chunk.data[3], null);
  // Every chart has a one-sentence caption.
  for (const spec of runCharts(doc, "x")) {
    assertEquals(spec.caption.split(/[.;] [A-Z]/).length, 1, spec.caption);
    assert(html.includes(escapeHtml(spec.caption)));
  }
});

Deno.test("renderReport() marks wall-clock timing, fallback adapters and missing calibration", () => {
  const doc = makeRun({ fallback: true, calibration: false });
  doc.settings.timing.mode = "wallclock-batched";
  const html = renderReport([doc]);
  assertMatch(html, /fallback \(software\)/);
  assertMatch(html, /software adapter/);
  assertMatch(html, /wall clock, batched <span class="badge warn">coarse<\/span>/);
  assertMatch(html, /No calibration in this run/);
  assertMatch(html, /no calibration in this run, so no ceiling is drawn/);
});

Deno.test("renderReport() inlines chart.js with a CSP by default; --cdn loads it instead", () => {
  const doc = makeRun();
  const inline = renderReport([doc]);
  assert(inline.length > 200_000, "chart.js is inlined");
  assert(!/<script src=|<link /.test(inline), "an inline report loads nothing");
  const csp = /Content-Security-Policy" content="([^"]*)"/.exec(inline)![1]!;
  assert(!csp.includes("http"), csp);
  assertMatch(
    inline,
    /Content-Security-Policy" content="default-src &#39;none&#39;; script-src &#39;sha256-/,
  );
  const cdn = renderReport([doc], { chartJs: "cdn" });
  assert(cdn.length < 120_000);
  assert(cdn.includes(`<script src="${CHART_JS_CDN}"`));
  assertMatch(cdn, /script-src [^"]*https:\/\/cdn\.jsdelivr\.net/);
  assertMatch(CHART_JS_CDN, /chart\.js@4\.6\.1\//);
});

Deno.test("renderReport() renders several runs with an overview and rejects none", () => {
  const html = renderReport([makeRun({ seed: 1 }), makeRun({ seed: 2, commit: "fedcba9876" })]);
  assertMatch(html, /<h2>Runs<\/h2>/);
  assertMatch(html, /href="#run-1">Run 2<\/a><\/td><td>fedcba9 2025-01-02 03:04/);
  assertMatch(html, /Mean iteration latency across runs/);
  assertEquals(embeddedCharts(html).filter((c) => c.id.endsWith("-latency")).length, 2);
  assertThrows(() => renderReport([]), RangeError);
});

Deno.test("methodOrder() takes the method order from the documents, never from the kernels", () => {
  const all = makeRun({ seed: 1 });
  const two = makeRun({ seed: 2, methods: ["sequence", "deft-flatten"] });
  const order = all.settings.methods;
  assertEquals(methodOrder([all]), order);
  // Several runs: one order that keeps each run's, whichever run comes first.
  assertEquals(methodOrder([two, all]), order);
  assertEquals(methodOrder([all, two]), order);
  // A run that lists its methods otherwise is shown in its own order, charts included.
  const mine = makeRun({ seed: 3, methods: ["deft-flatten", "sequence"] });
  assertEquals(methodOrder([mine]), ["deft-flatten", "sequence"]);
  const latency = runCharts(mine, "x")[0]!.config.data as { datasets: { label: string }[] };
  assertEquals(latency.datasets.map((d) => d.label), ["deft-flatten", "sequence"]);
  // Methods only the cases name come after the listed ones; unknown names after known ones.
  mine.settings.methods = ["sequence"];
  assertEquals(methodOrder([mine]), ["sequence", "deft-flatten"]);
  assertEquals(orderMethods(["x", "deft-flatten", "sequence"], order), [
    "sequence",
    "deft-flatten",
    "x",
  ]);
});

Deno.test("renderTreeSvg() draws every node and DeFT-Flatten's blocks with their queries", () => {
  // root(100) -> a(50) -> a1(30); root -> b(40). Queries on a1, a1, b.
  const tree: Tree = {
    nodes: [
      { id: 0, parent: null, tokens: 100 },
      { id: 1, parent: 0, tokens: 50 },
      { id: 2, parent: 0, tokens: 40 },
      { id: 3, parent: 1, tokens: 30 },
    ],
    queries: [{ node: 3 }, { node: 3 }, { node: 2 }],
  };
  const svg = renderTreeSvg(tree, 64);
  assertEquals(svg.match(/<title>node /g)?.length, 4);
  assertEquals(svg.match(/<title>block /g)?.length, 4);
  assertMatch(svg, /block 3: tokens 192–219, 1 query<\/title>/);
  assertMatch(
    svg,
    /node 3: 30 tokens, depth 3, 2 queries here; KV tokens 150–179 of the DFS flattening, block 2<\/title>/,
  );
  assertMatch(
    svg,
    /aria-label="Tree of 4 nodes and 3 queries, 220 KV tokens flattened in DFS order and cut into 4 blocks of 64 tokens"/,
  );
});

Deno.test("report CLI: -o writes atomically and never overwrites without --force; stdout otherwise", async () => {
  const dir = await Deno.makeTempDir();
  const run = `${dir}/run.json`;
  await Deno.writeTextFile(run, JSON.stringify(makeRun()));
  const out = `${dir}/r/report.html`;
  const first = await cli("report", run, "-o", out);
  assertEquals(first.code, 0, first.err);
  assertMatch(await Deno.readTextFile(out), /^<!DOCTYPE html>/);
  const again = await cli("report", run, "-o", out);
  assertEquals(again.code, 2);
  assertMatch(again.err, /already exists; pass --force/);
  assertEquals((await cli("report", run, "-o", out, "--force", "--cdn")).code, 0);
  assertMatch(await Deno.readTextFile(out), /cdn\.jsdelivr\.net/);
  const stdout = await cli("report", run, run);
  assertEquals(stdout.code, 0);
  assertMatch(stdout.out, /deft-bench report: 2 runs/);
  await Deno.writeTextFile(
    `${dir}/bad.json`,
    JSON.stringify({ format: "deft-bench/results", version: 1 }),
  );
  const bad = await cli("report", `${dir}/bad.json`);
  assertEquals(bad.code, 2);
  assertMatch(bad.err, /bad\.json: environment must be an object, got nothing/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "report opens in headless Chromium: no console errors, every chart drawn",
  ignore: SKIP_BROWSER,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const doc = showcaseRun();
    const path = `${dir}/report.html`;
    await Deno.writeTextFile(path, renderReport([doc]));
    const attack = `${dir}/xss.html`;
    await Deno.writeTextFile(attack, renderReport([showcaseRun({ name: XSS })]));
    const browser = await launchBrowser();
    try {
      const r = await openAndCheck(browser, `file://${path}`);
      assertEquals(r.errors, []);
      assertEquals(r.canvases.map((c) => c.id), runCharts(doc, "r0").map((c) => c.id));
      for (const c of r.canvases) assert(c.drawn && c.width > 100, `canvas ${c.id} has pixels`);
      const svgs = await r.page.evaluate<number>(
        `document.querySelectorAll("details[open] svg").length`,
      );
      assertEquals(svgs, 1);
      const x = await openAndCheck(browser, `file://${attack}`);
      assertEquals(x.errors, []);
      const dialogs = await x.page.evaluate<number>(`document.querySelectorAll("script").length`);
      assertEquals(dialogs, 3);
      assert(x.canvases.every((c) => c.drawn));
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "the committed NVIDIA runs render in headless Chromium (DEFT_UPDATE_SCREENSHOT=1 rewrites docs/report.png, shown in the README)",
  ignore: SKIP_BROWSER,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // The first run is the README's final pair (every method, both runtimes); the second the older
    // Deno-only run.
    const sources = ["nvidia-h200-dawn/issue-trees-26-all-tuned.json", "nvidia-h200/results.json"];
    const dir = await Deno.makeTempDir();
    const browser = await launchBrowser();
    try {
      for (const [i, name] of sources.entries()) {
        const source = new URL(`../results/data/${name}`, import.meta.url);
        const doc = parseResults(await Deno.readTextFile(source), source.pathname);
        const path = `${dir}/report-${i}.html`;
        await Deno.writeTextFile(path, renderReport([doc]));
        const r = await openAndCheck(browser, `file://${path}`);
        assertEquals(r.errors, [], name);
        assert(r.canvases.length >= 4, `${name}: ${r.canvases.length} charts`);
        for (const c of r.canvases) assert(c.drawn && c.width > 100, `canvas ${c.id} has pixels`);
        // The README's picture, the top of the report at 1280 px: only when asked for, so that
        // tests never rewrite tracked files.
        const update = i === 0 && Deno.env.get("DEFT_UPDATE_SCREENSHOT") === "1";
        await r.page.screenshot({
          path: update
            ? new URL("../docs/report.png", import.meta.url).pathname
            : `${dir}/report-${i}.png`,
          clip: { x: 0, y: 0, width: 1280, height: 1900 },
          fullPage: true,
        });
        await r.page.close();
      }
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

import { summaryTables } from "../cli/commands/bench.ts";
import { compareRuns, MismatchError } from "../report/compare.ts";
import { buildDashboard } from "../report/dashboard.ts";
import { caseRefs, docSeries, parseResults, ResultsError } from "../results/document.ts";
import { renderReport } from "../report/report.ts";
import { runCharts } from "../report/charts.ts";
import { seriesColour } from "../report/common.ts";
import { caseKey, RESULTS_VERSION, type ResultsDocument } from "../results/schema.ts";
import { makeRun } from "./_results_fixture.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { launchBrowser, openAndCheck, SKIP_BROWSER } from "./_browser.ts";

/** The chart specs a page embeds. */
function charts(
  html: string,
): { id: string; config: { data: { datasets: { label: string }[] } } }[] {
  const m = /<script type="application\/json" id="deft-charts">(.*?)<\/script>/s.exec(html);
  assert(m !== null, "no chart data in the page");
  return JSON.parse(m![1]!);
}

const labels = (html: string, id: RegExp) =>
  charts(html).filter((c) => id.test(c.id)).flatMap((c) =>
    c.config.data.datasets.map((d) => d.label)
  );

Deno.test("version 1 documents (before runtimes) still parse: Deno's runtime, FMA kernels, same keys", async () => {
  for (
    const path of [
      "results/data/nvidia-h200-first-look/results.json",
      "results/data/nvidia-h200/results.json",
    ]
  ) {
    const text = await Deno.readTextFile(path);
    const raw = JSON.parse(text);
    assertEquals(raw.version, 1, path);
    const doc = parseResults(text, path);
    assertEquals(doc.version, RESULTS_VERSION);
    assertEquals(doc.settings.runtimes, ["deno"]);
    assertEquals(doc.settings.kernel, "fma");
    assertEquals(doc.runtimes.length, 1);
    const r = doc.runtimes[0]!;
    assertEquals([r.name, r.version, r.source, r.tuning], [
      "deno",
      `deno ${raw.environment.deno}`,
      null,
      null,
    ]);
    assertEquals(r.adapter, raw.environment.adapter);
    assertEquals(r.calibration, raw.calibration);
    const refs = caseRefs(doc);
    assert(refs.length > 0);
    // Keys are the ones the file holds: old Deno runs compare with new ones case by case.
    assertEquals(
      refs.map((x) => x.key),
      raw.workloads.flatMap((w: { snapshots: { cases: { key: string }[] }[] }) =>
        w.snapshots.flatMap((s) => s.cases.map((c) => c.key))
      ),
    );
    for (const { case: c, workload, snapshot } of refs) {
      assertEquals([c.runtime, c.kernel], ["deno", "fma"]);
      assertEquals(c.key, caseKey(workload.name, snapshot.iteration, c.method));
      assertEquals(c.options, {
        blockSize: doc.settings.blockSize,
        chunkSize: doc.settings.chunkSize,
      });
    }
    assert(doc.workloads.every((w) => w.totals.every((t) => t.runtime === "deno")));
    // It compares with itself, and renders.
    assertEquals(compareRuns(doc, doc).summary.regressions, 0);
    assert(!labels(renderReport([doc]), /latency$/).some((l) => l.includes("(")));
  }
});

Deno.test("parseResults() checks runtimes: declared, matching the cases, in the keys", () => {
  const good = JSON.stringify(makeRun({ runtimes: ["deno", "dawn"] }));
  const doc = parseResults(good, "r.json");
  assertEquals(doc.runtimes.map((r) => r.name), ["deno", "dawn"]);
  const bad: [(d: ResultsDocument) => void, RegExp][] = [
    [(d) => (d.settings.runtimes = ["deno"]), /runtimes must be one entry per settings.runtimes/],
    [
      (d) => (d.settings.runtimes = ["deno", "deno"]),
      /settings\.runtimes\[1\] must be a runtime named once/,
    ],
    [
      (d) => ((d.settings as { runtimes: string[] }).runtimes = ["deno", "gecko"]),
      /settings\.runtimes\[1\]/,
    ],
    [(d) => (d.runtimes[1]!.name = "deno"), /runtimes\[1\]\.name must be settings\.runtimes\[1\]/],
    [(d) => (d.workloads[0]!.snapshots[0]!.cases[4]!.key = "few-shot-b20@0/sequence"), /key/],
    [
      (d) => (d.workloads[0]!.snapshots[0]!.cases[0]!.runtime = "dawn"),
      /cases\[0\]\.key must be a key ending in \/sequence@dawn \(runtime dawn\)/,
    ],
    [
      (d) => delete (d.workloads[0]!.snapshots[0]!.cases[0] as { kernel?: string }).kernel,
      /cases\[0\]\.kernel must be a string/,
    ],
    [
      (d) => ((d.workloads[0]!.snapshots[0]!.cases[0]!.options as Record<string, unknown>).x = [1]),
      /options\.x must be a number, a string or an object of them, got \[1\]/,
    ],
    [
      (d) => (d.workloads[0]!.snapshots[0]!.cases[0]!.options.mma = { rows: [8] } as never),
      /options\.mma\.rows must be a number or a string, got \[8\]/,
    ],
    [
      (d) => delete (d.workloads[0]!.totals[0] as { runtime?: string }).runtime,
      /totals\[0\]\.runtime must be one of/,
    ],
    [
      (d) => delete (d.settings as { kernel?: string }).kernel,
      /settings\.kernel must be one of "auto", "fma", "mma"/,
    ],
  ];
  for (const [edit, re] of bad) {
    const d = JSON.parse(good);
    edit(d);
    assertThrows(() => parseResults(JSON.stringify(d), "r.json"), ResultsError, re);
  }
});

Deno.test("compareRuns() keeps runtimes apart: own keys, own geometric means, version notes", () => {
  const base = makeRun({ runtimes: ["deno", "dawn"], seed: 1 });
  const head = makeRun({
    runtimes: ["deno", "dawn"],
    seed: 2,
    runtimeFactor: (r) => (r === "dawn" ? 1.3 : 1),
  });
  head.runtimes[1]!.version = "dawn (npm webgpu@0.7.0)";
  const c = compareRuns(base, head);
  const regressed = c.cases.filter((k) => k.verdict === "regression");
  assert(regressed.length > 0);
  assert(
    regressed.every((k) => k.runtime === "dawn" && k.key.endsWith("@dawn")),
    JSON.stringify(regressed.map((k) => k.key)),
  );
  assert(c.cases.filter((k) => k.runtime === "deno").every((k) => k.verdict === "noise"));
  const groups = new Map(c.summary.geomean.map((g) => [g.group, g.ratio]));
  assert(Math.abs(groups.get("deft-flatten (dawn)")! - 1.3) < 0.05, JSON.stringify([...groups]));
  assert(Math.abs(groups.get("deft-flatten")! - 1) < 0.05);
  assert(
    c.notes.some((n) =>
      /Runtime dawn changed \(base dawn \(npm webgpu@0\.6\.2\), head dawn \(npm webgpu@0\.7\.0\)\)/
        .test(n)
    ),
  );
  assertEquals(c.head.runtimes, ["deno 2.9.6", "dawn (npm webgpu@0.7.0)"]);
  // A Deno run and a Dawn run share no case.
  assertThrows(
    () => compareRuns(makeRun({ runtimes: ["deno"] }), makeRun({ runtimes: ["dawn"] })),
    MismatchError,
    /only in BASE: few-shot-b20@\d+\/sequence,.*only in HEAD: few-shot-b20@\d+\/sequence@dawn/,
  );
  // A variant change is a reason in its own right.
  const h2 = makeRun({ runtimes: ["deno", "dawn"], seed: 1 });
  for (const r of caseRefs(h2)) if (r.case.runtime === "dawn") r.case.kernel = "mma";
  const k = compareRuns(base, h2).cases.find((x) => x.runtime === "dawn")!;
  assertEquals([k.baseKernel, k.headKernel], ["fma", "mma"]);
  assert(k.reasons.includes("kernel variant changed (fma → mma)"));
});

Deno.test("the report shows runtimes side by side; the dashboard keeps their histories apart", () => {
  const doc = makeRun({
    runtimes: ["deno", "dawn"],
    runtimeFactor: (r) => (r === "dawn" ? 0.5 : 1),
  });
  assertEquals(
    docSeries(doc).slice(0, 4).map((s) => s.label),
    ["sequence (deno)", "sequence (dawn)", "tree-mask (deno)", "tree-mask (dawn)"],
  );
  const html = renderReport([doc]);
  const lat = labels(html, /-latency$/);
  assert(lat.includes("deft-flatten (deno)") && lat.includes("deft-flatten (dawn)"), lat.join());
  const rt = charts(html).find((c) => c.id.endsWith("-runtime"))!;
  assert(rt !== undefined, "no runtime chart");
  const flat = rt.config.data.datasets.find((d) =>
    d.label === "deft-flatten (dawn)"
  ) as unknown as {
    data: number[];
  };
  assert(flat.data.every((x) => Math.abs(x - 2) < 0.1), JSON.stringify(flat.data)); // dawn 2x faster
  assert(html.includes("Speedup over deno"));
  assert(/<th>runtime dawn<\/th><td>dawn \(npm webgpu@0\.6\.2\)/.test(html));
  assert(
    /<td class="mono">few-shot-b20@\d+\/deft-flatten@dawn<\/td><td>deft-flatten<\/td><td><span class="badge ok">ok<\/span><\/td><td>dawn<\/td>/
      .test(html),
  );
  assert(seriesColour("deft-flatten", "dawn") !== seriesColour("deft-flatten", "deno"));
  // A Deno-only run is labelled as before.
  const plain = labels(renderReport([makeRun()]), /-latency$/);
  assert(plain.includes("deft-flatten") && !plain.some((l) => l.includes("(")), plain.join());

  const runs = [1, 2].map((i) =>
    makeRun({ runtimes: ["deno", "dawn"], seed: i, startedAt: `2025-02-0${i}T12:00:00.000Z` })
  );
  const site = buildDashboard(runs.map((d) => ({ doc: d })));
  const hist = labels(site.get("index.html")!, /^h0$/);
  assert(hist.includes("deft-flatten") && hist.includes("deft-flatten (dawn)"), hist.join());
  assertEquals(new Set(hist).size, hist.length);
});

Deno.test("bench's summary puts runtimes side by side and adds their ratio", () => {
  const doc = makeRun({
    runtimes: ["deno", "dawn"],
    runtimeFactor: (r) => (r === "dawn" ? 0.5 : 1),
  });
  const text = summaryTables(doc);
  assert(text.includes("deft-flatten (dawn)") && text.includes("deft-flatten (deno)"), text);
  assert(text.includes("Speedup of each runtime over deno"), text);
  assert(/deft-flatten dawn\/deno/.test(text), text);
  assert(/2\.0\dx/.test(text), text);
  const plain = summaryTables(makeRun());
  assert(!plain.includes("(deno)") && !plain.includes("Speedup of each runtime"), plain);
});

Deno.test({
  name: "a two-runtime report opens in headless Chromium: no console errors, every chart drawn",
  ignore: SKIP_BROWSER,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const doc = makeRun({
      runtimes: ["deno", "dawn"],
      runtimeFactor: (r) => (r === "dawn" ? 0.5 : 1),
      workloads: [
        { preset: "speculative-t32", scale: 0.2, sweep: { parameter: "tree width", value: 32 } },
        { preset: "speculative-t64", scale: 0.2, sweep: { parameter: "tree width", value: 64 } },
      ],
    });
    const path = `${dir}/report.html`;
    await Deno.writeTextFile(path, renderReport([doc]));
    const browser = await launchBrowser();
    try {
      const r = await openAndCheck(browser, `file://${path}`);
      assertEquals(r.errors, []);
      assertEquals(r.canvases.map((c) => c.id), runCharts(doc, "r0").map((c) => c.id));
      assert(r.canvases.some((c) => c.id === "r0-runtime"));
      for (const c of r.canvases) assert(c.drawn && c.width > 100, `canvas ${c.id} has pixels`);
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

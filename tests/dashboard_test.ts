import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { caseOf, failCase, makeRun, retotal } from "./_results_fixture.ts";
import { launchBrowser, openAndCheck, SKIP_BROWSER } from "./_browser.ts";
import { buildDashboard, writeSite } from "../report/dashboard.ts";
import { CHART_JS_SOURCE } from "../report/page.ts";
import { FileExistsError } from "../results/files.ts";
import { main } from "../cli/main.ts";
import { captureIo } from "../cli/io.ts";
import type { ResultsDocument } from "../results/schema.ts";

const KEY = "few-shot-b20@5/deft-flatten";

async function cli(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

/** Three runs over three days; the last one edits deft-flatten (slower) and fails a case. */
function history(): ResultsDocument[] {
  const runs = [1, 2, 3].map((i) =>
    makeRun({
      seed: i,
      commit: `${i}${i}${i}aaaa0000000000000000000000000000000000`.slice(0, 40),
      startedAt: `2025-02-0${i}T12:00:00.000Z`,
    })
  );
  const last = runs[2]!;
  const c = caseOf(last, KEY);
  c.sourceHash = "edited";
  c.timing!.samplesNs = c.timing!.samplesNs.map((x) => x * 1.5);
  c.timing!.medianNs *= 1.5;
  failCase(last, "few-shot-b20@1/tree-mask");
  return runs.map(retotal);
}

Deno.test("buildDashboard() is a pure function of the runs: index, reports, data, shared chart.js", () => {
  const runs = history();
  // Input order does not matter: runs are ordered by start time.
  const a = buildDashboard([runs[2]!, runs[0]!, runs[1]!].map((doc) => ({ doc })));
  const b = buildDashboard(runs.map((doc) => ({ doc })));
  assertEquals([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, v] of a) assertEquals(v, b.get(k), k);
  assertEquals([...a.keys()].sort(), [
    "chart.umd.min.js",
    "index.html",
    "runs/20250201T120000-111aaaa.html",
    "runs/20250201T120000-111aaaa.json",
    "runs/20250202T120000-222aaaa.html",
    "runs/20250202T120000-222aaaa.json",
    "runs/20250203T120000-333aaaa.html",
    "runs/20250203T120000-333aaaa.json",
  ]);
  assertEquals(a.get("chart.umd.min.js"), CHART_JS_SOURCE);
  const index = a.get("index.html")!;
  // One shared copy of chart.js, never inlined in the index or the run reports.
  assert(index.length < 100_000);
  assertMatch(index, /<script src="chart\.umd\.min\.js"><\/script>/);
  const report = a.get("runs/20250203T120000-333aaaa.html")!;
  assertMatch(report, /<script src="\.\.\/chart\.umd\.min\.js"><\/script>/);
  assertMatch(report, /<a href="\.\.\/index\.html">← dashboard<\/a>/);
  // Links to every run's report and data, newest first.
  const links = [...index.matchAll(/<a href="runs\/([^"]+)\.html">/g)].map((m) => m[1]);
  assertEquals(links, [
    "20250203T120000-333aaaa",
    "20250203T120000-333aaaa",
    "20250202T120000-222aaaa",
    "20250201T120000-111aaaa",
  ]);
  assertMatch(index, /href="runs\/20250201T120000-111aaaa\.json">json/);
  assertEquals(JSON.parse(a.get("runs/20250202T120000-222aaaa.json")!), runs[1]);
});

Deno.test("buildDashboard() charts each case's history and marks failures and source changes", () => {
  const index = buildDashboard(history().map((doc) => ({ doc })))!.get("index.html")!;
  const charts = JSON.parse(
    /<script type="application\/json" id="deft-charts">([^<]*)<\/script>/.exec(index)![1]!,
  ) as {
    title: string;
    config: { data: { labels: string[]; datasets: Record<string, unknown>[] } };
  }[];
  assertEquals(charts.map((c) => c.title), [
    "History of few-shot-b20@1",
    "History of few-shot-b20@5",
  ]);
  const at5 = charts[1]!.config.data;
  assertEquals(at5.labels, [
    "111aaaa 2025-02-01 12:00",
    "222aaaa 2025-02-02 12:00",
    "333aaaa 2025-02-03 12:00",
  ]);
  const flatten = at5.datasets.find((d) => d.label === "deft-flatten")!;
  const y = flatten.data as number[];
  assert(y[2]! / y[1]! > 1.4, "the slower edited kernel shows as a step");
  assertEquals(flatten.pointStyle, ["circle", "circle", "rectRot"]);
  const treeMask = charts[0]!.config.data.datasets.find((d) => d.label === "tree-mask")!;
  assertEquals((treeMask.data as unknown[])[2], null);
  assertEquals(treeMask.deftStatus, ["ok", "ok", "failed"]);
  // The latest-results table shows the failure and the change against the previous run.
  assertMatch(
    index,
    /few-shot-b20@1\/tree-mask<\/td><td>tree-mask<\/td><td><span class="badge bad">FAILED<\/span>/,
  );
  assertMatch(
    index,
    /few-shot-b20@5\/deft-flatten<\/td>.*?1\.[45]\d\d×<\/span> \(kernel source changed\)/,
  );
  assertMatch(index, /1 case\(s\) failed or errored/);
  assertThrows(() => buildDashboard([]), RangeError);
});

Deno.test("buildDashboard() gives runs with the same time and commit distinct ids, and warns of mixed settings", () => {
  const a = makeRun({ seed: 1 });
  const b = makeRun({ seed: 2 });
  b.settings.scale = 0.5;
  const files = buildDashboard([{ doc: a }, { doc: b }]);
  assert(files.has("runs/20250102T030405-0123456.html"));
  assert(files.has("runs/20250102T030405-0123456-2.html"));
  assertMatch(
    files.get("index.html")!,
    /The runs differ in adapter, model shape, dtype, scale or timing mode/,
  );
});

Deno.test("writeSite() replaces the folder atomically and only with force", async () => {
  const dir = await Deno.makeTempDir();
  const site = `${dir}/site`;
  await writeSite(site, new Map([["index.html", "one"], ["runs/a.html", "a"]]));
  await assertRejects(() => writeSite(site, new Map([["index.html", "two"]])), FileExistsError);
  assertEquals(await Deno.readTextFile(`${site}/index.html`), "one");
  await writeSite(site, new Map([["index.html", "two"]]), { force: true });
  assertEquals(await Deno.readTextFile(`${site}/index.html`), "two");
  await assertRejects(() => Deno.stat(`${site}/runs/a.html`), Deno.errors.NotFound);
  await assertRejects(
    () => writeSite(`${dir}/evil`, new Map([["../x.html", "x"]])),
    RangeError,
  );
  const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assertEquals(left, ["site"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "dashboard CLI: folders of runs to a site that opens in headless Chromium without errors",
  ignore: SKIP_BROWSER,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    await Deno.mkdir(`${dir}/results/old`, { recursive: true });
    const [r1, r2, r3] = history();
    await Deno.writeTextFile(`${dir}/results/old/r1.json`, JSON.stringify(r1));
    await Deno.writeTextFile(`${dir}/results/r2.json`, JSON.stringify(r2));
    await Deno.writeTextFile(`${dir}/results/notes.json`, `{"format": "something-else"}`);
    await Deno.writeTextFile(`${dir}/r3.json`, JSON.stringify(r3));
    const site = `${dir}/site`;
    const first = await cli("dashboard", `${dir}/results`, `${dir}/r3.json`, "-o", site);
    assertEquals(first.code, 0, first.err);
    assertMatch(first.err, /skipped .*results\/notes\.json: format must be "deft-bench\/results"/);
    assertMatch(first.err, /wrote 8 file\(s\) for 3 run\(s\)/);
    const again = await cli("dashboard", `${dir}/r3.json`, "-o", site);
    assertEquals(again.code, 2);
    assertMatch(again.err, /already exists; pass --force/);
    assertEquals((await cli("dashboard", `${dir}/r3.json`, "-o", `${dir}/x`)).code, 0);
    assertEquals((await cli("dashboard", `${dir}/results/notes.json`, "-o", `${dir}/y`)).code, 2);
    assertEquals((await cli("dashboard", `${dir}/nowhere`, "-o", `${dir}/z`)).code, 2);
    assertEquals((await cli("dashboard", `${dir}/r3.json`)).code, 2); // -o is required

    const browser = await launchBrowser();
    try {
      const index = await openAndCheck(browser, `file://${site}/index.html`);
      assertEquals(index.errors, []);
      assertEquals(index.canvases.length, 2);
      for (const c of index.canvases) assert(c.drawn, `canvas ${c.id} has pixels`);
      const report = await openAndCheck(
        browser,
        `file://${site}/runs/20250203T120000-333aaaa.html`,
      );
      assertEquals(report.errors, []);
      assert(report.canvases.length >= 4);
      for (const c of report.canvases) assert(c.drawn, `report canvas ${c.id} has pixels`);
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { caseOf, failCase, makeRun, retotal } from "./_results_fixture.ts";
import { compareExitCode, compareRuns, MismatchError } from "../report/compare.ts";
import { escapeMarkdown, formatMarkdown } from "../report/compare_markdown.ts";
import { parseResults, ResultsError } from "../results/document.ts";
import { bootstrapRatioCi } from "../results/stats.ts";
import { main } from "../cli/main.ts";
import { captureIo } from "../cli/io.ts";
import type { ResultsDocument } from "../results/schema.ts";

const SLOW_KEY = "few-shot-b20@5/deft-flatten";

async function cli(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

async function writeRuns(...docs: ResultsDocument[]): Promise<{ dir: string; paths: string[] }> {
  const dir = await Deno.makeTempDir();
  const paths = [];
  for (const [i, d] of docs.entries()) {
    const p = `${dir}/run${i}.json`;
    await Deno.writeTextFile(p, JSON.stringify(d));
    paths.push(p);
  }
  return { dir, paths };
}

/** Scales one case's samples (and stats) by `factor`, as a slower or faster kernel would. */
function scaleCase(doc: ResultsDocument, key: string, factor: number): ResultsDocument {
  const t = caseOf(doc, key).timing!;
  t.samplesNs = t.samplesNs.map((x) => x * factor);
  t.medianNs *= factor;
  t.meanNs *= factor;
  t.minNs *= factor;
  t.maxNs *= factor;
  t.madNs *= factor;
  t.ci95Ns = [t.ci95Ns[0] * factor, t.ci95Ns[1] * factor];
  return retotal(doc);
}

Deno.test("compareRuns() catches a real 15 % regression and calls same-distribution noise noise", () => {
  const base = makeRun({ seed: 1 });
  const head = scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 1.15);
  const c = compareRuns(base, head);
  const slow = c.cases.find((k) => k.key === SLOW_KEY)!;
  assertEquals(slow.verdict, "regression");
  assert(slow.latency!.ratio > 1.1 && slow.latency!.ratio < 1.2, `ratio ${slow.latency!.ratio}`);
  assert(slow.latency!.p < 1e-6);
  assert(slow.latency!.ratioCi95[0] > 1.05 && slow.latency!.ratioCi95[1] < 1.25);
  for (const k of c.cases) if (k.key !== SLOW_KEY) assertEquals(k.verdict, "noise", k.key);
  assertEquals(c.summary.regressions, 1);
  assertEquals(compareExitCode(c), 1);

  // Two independent draws of the same distributions: nothing is flagged.
  const noise = compareRuns(makeRun({ seed: 3 }), makeRun({ seed: 4 }));
  assertEquals(noise.summary.regressions, 0);
  assertEquals(noise.summary.improvements, 0);
  assertEquals(compareExitCode(noise), 0);
  assert(Math.abs(noise.summary.geomean[0]!.ratio - 1) < 0.02);
});

Deno.test("compareRuns() needs both the threshold and the test: noisy or small changes are noise", () => {
  // A 3 % shift with 2 % noise is significant but under the 5 % threshold.
  const small = compareRuns(makeRun({ seed: 1 }), scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 1.03));
  assertEquals(small.cases.find((k) => k.key === SLOW_KEY)!.verdict, "noise");
  // A 20 % shift drowned in 60 % noise with few samples is not significant.
  const noisy = compareRuns(
    makeRun({ seed: 1, noise: 0.6, samples: 8 }),
    scaleCase(makeRun({ seed: 2, noise: 0.6, samples: 8 }), SLOW_KEY, 1.2),
  );
  assertEquals(noisy.cases.find((k) => k.key === SLOW_KEY)!.verdict, "noise");
  // A loose CI threshold (0.5) ignores a 15 % regression, but not a 2x one.
  const base = makeRun({ seed: 1 });
  assertEquals(
    compareRuns(base, scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 1.15), { threshold: 0.5 }).summary
      .regressions,
    0,
  );
  assertEquals(
    compareRuns(base, scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 2), { threshold: 0.5 }).summary
      .regressions,
    1,
  );
});

Deno.test("compareRuns() marks improvements and computes a geometric-mean row per method", () => {
  const c = compareRuns(makeRun({ seed: 1 }), scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 0.8));
  const fast = c.cases.find((k) => k.key === SLOW_KEY)!;
  assertEquals(fast.verdict, "improvement");
  assertEquals(c.summary.verdict, "improvement");
  assertEquals(compareExitCode(c), 0);
  const groups = c.summary.geomean.map((g) => g.group);
  assertEquals(groups, ["all", "sequence", "tree-mask", "deft-node", "deft-flatten"]);
  const all = c.summary.geomean[0]!;
  assertEquals(all.cases, c.cases.length);
  const flatten = c.summary.geomean.find((g) => g.group === "deft-flatten")!;
  assert(flatten.ratio < 0.95, `deft-flatten geomean ${flatten.ratio}`);
});

Deno.test("compareRuns() counts a case that fails in head as a regression, and a fixed one as an improvement", () => {
  const c = compareRuns(makeRun({ seed: 1 }), failCase(makeRun({ seed: 2 }), SLOW_KEY, "error"));
  const k = c.cases.find((x) => x.key === SLOW_KEY)!;
  assertEquals(k.verdict, "regression");
  assertEquals(k.latency, null);
  assertMatch(k.headProblem!, /^error: GPU validation error/);
  assertEquals(c.summary.failedInHead, 1);
  assertEquals(compareExitCode(c), 1);
  const fixed = compareRuns(failCase(makeRun({ seed: 1 }), SLOW_KEY), makeRun({ seed: 2 }));
  assertEquals(fixed.cases.find((x) => x.key === SLOW_KEY)!.verdict, "improvement");
  assertEquals(compareExitCode(fixed), 0);
});

Deno.test("compareRuns() compares IO bytes and FLOPs exactly and reports changed kernel sources", () => {
  const head = makeRun({ seed: 2, sourceHash: (m) => m === "deft-node" ? "edited" : `h-${m}` });
  caseOf(head, SLOW_KEY).counts.real.maskBytes += 4; // one extra mask word
  const c = compareRuns(makeRun({ seed: 1 }), head);
  const k = c.cases.find((x) => x.key === SLOW_KEY)!;
  assertEquals(k.metricChanges.map((m) => m.field), ["counts.real.maskBytes"]);
  assertEquals(k.verdict, "regression");
  assertMatch(k.reasons.join(), /deterministic metrics grew: counts\.real\.maskBytes/);
  assertEquals(c.summary.metricChanged, 1);
  const edited = c.cases.filter((x) => x.sourceChanged).map((x) => x.method);
  assertEquals(new Set(edited), new Set(["deft-node"]));
  assertEquals(c.summary.sourceChanged, 2);
  assertMatch(formatMarkdown(c), /kernel source changed \(h-deft-node → edited\)/);

  const less = makeRun({ seed: 2 });
  caseOf(less, SLOW_KEY).counts.flops -= 2;
  const l = compareRuns(makeRun({ seed: 1 }), less).cases.find((x) => x.key === SLOW_KEY)!;
  assertEquals(l.verdict, "improvement");
});

Deno.test("compareRuns() names mismatched cases, different workloads and shapes (MismatchError)", () => {
  const base = makeRun({ seed: 1 });
  const head = makeRun({ seed: 2, methods: ["sequence", "tree-mask", "deft-node"] });
  assertThrows(
    () => compareRuns(base, head),
    MismatchError,
    /only in BASE: few-shot-b20@1\/deft-flatten, few-shot-b20@5\/deft-flatten/,
  );
  const common = compareRuns(base, head, { commonOnly: true });
  assertEquals(common.onlyInBase, ["few-shot-b20@1/deft-flatten", "few-shot-b20@5/deft-flatten"]);
  assertEquals(common.cases.length, 6);
  assertMatch(formatMarkdown(common), /only in base: few-shot-b20@1\/deft-flatten/);

  const other = makeRun({ seed: 2 });
  other.workloads[0]!.snapshots[0]!.facts.treeTokens += 1;
  assertThrows(
    () => compareRuns(base, other),
    MismatchError,
    /hold different workloads.*few-shot-b20@1\/sequence \(facts\.treeTokens/,
  );
  const f32 = makeRun({ seed: 2 });
  f32.settings.dtype = "f32";
  assertThrows(() => compareRuns(base, f32), MismatchError, /different model shapes or dtypes/);
  assertThrows(() => compareRuns(base, base, { threshold: -1 }), RangeError);
  assertThrows(() => compareRuns(base, base, { alpha: 1 }), RangeError);
});

Deno.test("bootstrapRatioCi() is deterministic and brackets the ratio of medians", () => {
  const a = [10, 11, 9, 10, 10.5, 9.5, 10.2, 9.8];
  const b = a.map((x) => x * 2);
  const ci = bootstrapRatioCi(a, b, { seed: 3 });
  assertEquals(ci, bootstrapRatioCi(a, b, { seed: 3 }));
  assert(ci[0] <= 2 && ci[1] >= 2 && ci[1] - ci[0] < 0.3, `${ci}`);
  assertEquals(bootstrapRatioCi([5], [10]), [2, 2]);
});

Deno.test("formatMarkdown() prints a headline, one row per case, a geomean row and details", () => {
  const head = scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 1.15);
  const md = formatMarkdown(compareRuns(makeRun({ seed: 1 }), head));
  const lines = md.split("\n");
  assertEquals(lines[0], "### deft-bench compare: 1 regression, 0 improvements, 7 unchanged");
  assertMatch(md, /beyond ±5 % \(above 1\.050 or below 0\.952\).*p < 0\.01/);
  assert(lines.includes("| case | base | head | ratio | 95 % CI | p | verdict |"));
  const row = lines.find((l) => l.startsWith("| few-shot-b20@5/deft-flatten |"))!;
  assertMatch(
    row,
    /^\| few-shot-b20@5\/deft-flatten \| [\d.]+ µs \| [\d.]+ µs \| 1\.1\d\d \| 1\.1\d\d – 1\.\d\d\d \| [\d.e-]+ \| \*\*regression\*\* \|$/,
  );
  assertEquals(lines.filter((l) => / \| noise \|$/.test(l)).length, 7);
  assertMatch(md, /\| \*\*geometric mean\*\* \(8 cases\) \| \| \| 1\.0\d\d \| \| \| \|/);
  assertMatch(md, /geometric mean, deft-flatten \(2 cases\)/);
  assertMatch(
    md,
    /#### Details\n\n- few-shot-b20@5\/deft-flatten: regression; latency \+1\d\.\d %/,
  );
});

Deno.test("escapeMarkdown() keeps table cells and HTML summaries intact", () => {
  assertEquals(escapeMarkdown("a|b<script>`x`"), "a\\|b&lt;script&gt;\\`x\\`");
  const base = makeRun({ seed: 1, workloads: [{ name: "<script>alert(1)</script>|x" }] });
  const head = makeRun({ seed: 2, workloads: [{ name: "<script>alert(1)</script>|x" }] });
  const md = formatMarkdown(compareRuns(base, head));
  assert(!md.includes("<script>"));
  assertMatch(md, /\| &lt;script&gt;alert\(1\)&lt;\/script&gt;\\\|x@1\/sequence \|/);
});

Deno.test("compare CLI: exit 1 on a regression, 0 on noise, JSON and Markdown files, --force", async () => {
  const { dir, paths } = await writeRuns(
    makeRun({ seed: 1 }),
    scaleCase(makeRun({ seed: 2 }), SLOW_KEY, 1.15),
    makeRun({ seed: 3 }),
  );
  const [base, slow, same] = paths as [string, string, string];
  const reg = await cli("compare", base, slow, "--json-output", `${dir}/c.json`);
  assertEquals(reg.code, 1);
  assertMatch(reg.out, /^### deft-bench compare: 1 regression/);
  assertMatch(reg.err, /1 regression\(s\), 0 improvement\(s\), 7 unchanged of 8 case\(s\)/);
  const json = JSON.parse(await Deno.readTextFile(`${dir}/c.json`));
  assertEquals(json.format, "deft-bench/compare");
  assertEquals(json.summary.regressions, 1);
  assertEquals(json.cases.find((c: { key: string }) => c.key === SLOW_KEY).verdict, "regression");
  const again = await cli("compare", base, slow, "--json-output", `${dir}/c.json`);
  assertEquals(again.code, 2);
  assertMatch(again.err, /already exists; pass --force/);
  assertEquals(
    (await cli("compare", base, slow, "--json-output", `${dir}/c.json`, "--force", "--quiet"))
      .code,
    1,
  );
  const ok = await cli("compare", base, same, "--markdown-output", `${dir}/c.md`);
  assertEquals(ok.code, 0);
  assertEquals(await Deno.readTextFile(`${dir}/c.md`), ok.out);
  assertEquals((await cli("compare", base, slow, "--threshold", "0.5")).code, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compare CLI: exit 2 on bad input, naming the mismatched cases or the bad field", async () => {
  const bad = makeRun({ seed: 2 }) as unknown as Record<string, unknown>;
  (bad.settings as Record<string, unknown>).blockSize = "128";
  const { dir, paths } = await writeRuns(
    makeRun({ seed: 1 }),
    makeRun({ seed: 2, methods: ["sequence", "deft-node", "deft-flatten"] }),
    bad as unknown as ResultsDocument,
  );
  const [base, fewer, broken] = paths as [string, string, string];
  const mismatch = await cli("compare", base, fewer);
  assertEquals(mismatch.code, 2);
  assertMatch(
    mismatch.err,
    /cannot compare .*run0\.json with .*run1\.json: The runs hold different cases \(only in BASE: few-shot-b20@1\/tree-mask, few-shot-b20@5\/tree-mask\)/,
  );
  assertEquals((await cli("compare", base, fewer, "--common-only")).code, 0);
  const field = await cli("compare", base, broken);
  assertEquals(field.code, 2);
  assertMatch(field.err, /run2\.json: settings\.blockSize must be a finite number, got "128"/);
  for (const t of ["-0.1", "abc", ""]) {
    const r = await cli("compare", base, base, "--threshold", t);
    assertEquals(r.code, 2, t);
    assertMatch(r.err, /--threshold must be a non-negative number/);
  }
  assertEquals((await cli("compare", base, `${dir}/missing.json`)).code, 2);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("parseResults() names the file and the field of a malformed document", () => {
  const good = JSON.stringify(makeRun());
  assertEquals(parseResults(good, "r.json").workloads.length, 1);
  assertThrows(() => parseResults("{", "r.json"), ResultsError, /^r\.json: not valid JSON/);
  assertThrows(
    () => parseResults(JSON.stringify({ format: "deft-bench/run" }), "r.json"),
    ResultsError,
    /format must be "deft-bench\/results", got "deft-bench\/run"/,
  );
  const v3 = { ...JSON.parse(good), version: 3 };
  assertThrows(() => parseResults(JSON.stringify(v3), "r.json"), ResultsError, /version 3/);
  const doc = JSON.parse(good);
  doc.workloads[0].snapshots[1].cases[2].timing.samplesNs[3] = "fast";
  assertThrows(
    () => parseResults(JSON.stringify(doc), "r.json"),
    ResultsError,
    /r\.json: workloads\[0\]\.snapshots\[1\]\.cases\[2\]\.timing\.samplesNs\[3\] must be a finite number, got "fast"/,
  );
  const dup = JSON.parse(good);
  dup.workloads[0].snapshots[1].cases[1].key = dup.workloads[0].snapshots[0].cases[0].key;
  assertThrows(
    () => parseResults(JSON.stringify(dup), "r.json"),
    ResultsError,
    /cases\[1\]\.key "few-shot-b20@1\/sequence" is a duplicate of workloads\[0\]\.snapshots\[0\]\.cases\[0\]\.key/,
  );
  const status = JSON.parse(good);
  status.workloads[0].snapshots[0].cases[0].status = "slow";
  assertThrows(
    () => parseResults(JSON.stringify(status), "r.json"),
    ResultsError,
    /status must be one of "ok", "failed", "error", got "slow"/,
  );
});

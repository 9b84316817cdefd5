import {
  assert,
  assertAlmostEquals,
  assertEquals,
  assertNotEquals,
  assertThrows,
} from "./_assert.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { ReasoningRun } from "../workloads/reasoning.ts";
import {
  ACCEPT_LENGTH_WEIGHTS,
  depthHistogram,
  MEDUSA_DEPTH_HISTOGRAMS,
  medusaTokenTree,
  SpeculativeRun,
} from "../workloads/speculative.ts";
import { LevelGridRun, levelGridTree, parseGridSpec } from "../workloads/level_grid.ts";
import { getPreset, PAPER_PRESETS, PRESETS } from "../workloads/presets.ts";
import { runFacts, sampleIterations } from "../workloads/run.ts";
import { stringifyRun } from "../workloads/format.ts";
import { IndexedTree, treeFacts } from "../workloads/tree.ts";
import { kvIo } from "../workloads/io.ts";
import { MODEL_SHAPES, resolveShape } from "../workloads/shapes.ts";
import { Rng } from "../workloads/rng.ts";

Deno.test("Rng is deterministic per seed and uniform enough", () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xs = Array.from({ length: 1000 }, () => a.next());
  assertEquals(xs, Array.from({ length: 1000 }, () => b.next()));
  assertNotEquals(xs, Array.from({ length: 1000 }, () => c.next()));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assertAlmostEquals(mean, 0.5, 0.05);
  for (let i = 0; i < 1000; i++) {
    const k = a.int(3, 7);
    assert(k >= 3 && k <= 7 && Number.isInteger(k));
  }
});

Deno.test("few-shot: every branch grows one token per iteration and carries one query", () => {
  const run = new FewShotRun({ prompt: 4000, branches: 20, generated: 400 });
  assertEquals(run.iterations, 400);
  const t = run.snapshot(9);
  assertEquals(t.nodes.length, 21);
  assertEquals(t.nodes[0], { id: 0, parent: null, tokens: 4000 });
  assert(t.nodes.slice(1).every((n) => n.parent === 0 && n.tokens === 10));
  assertEquals(t.queries.map((q) => q.node), Array.from({ length: 20 }, (_, i) => i + 1));
  assertThrows(() => run.snapshot(400), RangeError, /outside the run/);
  assertThrows(
    () => new FewShotRun({ prompt: 0, branches: 1, generated: 1 }),
    RangeError,
    /prompt/,
  );
});

Deno.test("reasoning: width-w expansions, one kept thought per level, pruned KV freed", () => {
  const run = new ReasoningRun({
    prompt: 500,
    depth: 4,
    width: 10,
    thoughtMin: 30,
    thoughtMax: 90,
    seed: 7,
  });
  let maxQueries = 0;
  let sawOverlap = false;
  for (const { tree } of run.snapshots()) {
    const ix = new IndexedTree(tree);
    // Every query sits on a leaf that is still generating; internal nodes are expanded thoughts.
    for (let q = 0; q < ix.queryCount; q++) assertEquals(ix.children[ix.queryNode[q]!]!.length, 0);
    for (let v = 0; v < ix.nodeCount; v++) {
      const c = ix.children[v]!.length;
      assert(c === 0 || c <= 10, `node with ${c} children`);
      if (c === 0 && v !== ix.root) {
        assert(
          tree.queries.some((q) => q.node === tree.nodes[v]!.id),
          "a finished, unexpanded thought must be freed",
        );
      }
    }
    const f = treeFacts(ix);
    assert(f.depth <= 5);
    maxQueries = Math.max(maxQueries, f.queries);
    if (f.queries > 10) sawOverlap = true;
  }
  assert(maxQueries >= 10);
  assert(sawOverlap, "slow siblings should overlap the next level");
  const last = new IndexedTree(run.snapshot(run.iterations - 1));
  assert(last.queryCount >= 1);
  assertEquals(treeFacts(run.snapshot(run.iterations - 1)).depth, 5);
});

Deno.test("generators are seeded: the same seed gives byte-identical JSON", () => {
  for (const name of PRESETS.keys()) {
    const a = stringifyRun(getPreset(name).build(11, 0.05).toDocument(5));
    const b = stringifyRun(getPreset(name).build(11, 0.05).toDocument(5));
    assertEquals(a, b, name);
  }
  const r1 = stringifyRun(getPreset("sorting").build(1, 0.1).toDocument());
  const r2 = stringifyRun(getPreset("sorting").build(2, 0.1).toDocument());
  assertNotEquals(r1, r2);
});

Deno.test("speculative: Medusa token trees follow the paper's depth histograms", () => {
  for (const [t, hist] of Object.entries(MEDUSA_DEPTH_HISTOGRAMS)) {
    const parent = medusaTokenTree(Number(t));
    const depth = new Int32Array(parent.length);
    for (let i = 1; i < parent.length; i++) {
      assert(parent[i]! < i && parent[i]! >= 0);
      depth[i] = depth[parent[i]!]! + 1;
    }
    const got = [1, 2, 3, 4].map((d) => depth.filter((x) => x === d).length);
    assertEquals(got, [...hist], `t=${t}`);
  }
  for (const t of [1, 2, 5, 100, 300]) {
    assertEquals(1 + depthHistogram(t).reduce((a, b) => a + b, 0), t, `t=${t}`);
  }
});

Deno.test("speculative: every token-tree token is a query; the prefix grows by 1..5 per step", () => {
  const run = new SpeculativeRun({
    prefix: 1000,
    treeTokens: 64,
    steps: 2000,
    seed: 3,
    topology: "medusa",
  });
  const t = run.snapshot(5);
  assertEquals(t.nodes.length, 65);
  assertEquals(t.queries.length, 64);
  assert(t.nodes.slice(1).every((n) => n.tokens === 1));
  const ix = new IndexedTree(t);
  assertEquals(Math.max(...ix.depth), 6); // prefix, root token, 4 token-tree levels
  let sum = 0;
  for (let s = 1; s < run.iterations; s++) {
    const step = run.prefixAt[s]! - run.prefixAt[s - 1]!;
    assert(step >= 1 && step <= 5);
    sum += step;
  }
  assertAlmostEquals(sum / (run.iterations - 1), 4.33, 0.1);
  const mean = ACCEPT_LENGTH_WEIGHTS.reduce((s, w, i) => s + w * (i + 1), 0);
  assertAlmostEquals(mean, 4.33, 0.02);
  const flat = new SpeculativeRun({
    prefix: 10,
    treeTokens: 8,
    steps: 1,
    seed: 1,
    topology: "flat",
  }).snapshot(0);
  assert(flat.nodes.slice(1).every((n) => n.parent === 0));
});

Deno.test("level grids spread each level evenly over the one above", () => {
  const t = levelGridTree(parseGridSpec("1x4000,50x200"));
  assertEquals(t.nodes.length, 51);
  assertEquals(t.queries.length, 50);
  const f = treeFacts(t);
  assertEquals(f.treeTokens, 14000);
  assertEquals(f.pathTokens, 50 * 4200);
  const t2 = levelGridTree(parseGridSpec("1x10, 2x5 ,6x1"));
  const ix = new IndexedTree(t2);
  assertEquals(ix.children.slice(1, 3).map((c) => c.length), [3, 3]);
  assertThrows(() => parseGridSpec("1x10,abc"), RangeError, /Level 1 .* NODESxTOKENS/);
  assertThrows(() => levelGridTree(parseGridSpec("2x10")), RangeError, /exactly 1 node/);
  assertThrows(
    () => levelGridTree(parseGridSpec("1x10,4x2,2x1")),
    RangeError,
    /fewer than the 4 nodes/,
  );
  assertEquals(new LevelGridRun(parseGridSpec("1x3")).iterations, 1);
});

Deno.test("sampling spreads strata evenly and weights sum to the run length", () => {
  for (const [n, k] of [[400, 5], [3720, 7], [10, 10], [3, 8], [1000, 1]]) {
    const s = sampleIterations(n!, k!);
    assertEquals(s.reduce((a, x) => a + x.weight, 0), n);
    assertEquals(s.length, Math.min(n!, k!));
    for (let i = 1; i < s.length; i++) assert(s[i]!.iteration > s[i - 1]!.iteration);
  }
  // A weighted sample estimates run totals of a linear quantity exactly.
  const run = new FewShotRun({ prompt: 100, branches: 4, generated: 400 });
  const all = runFacts(run);
  const est = runFacts(run, run.sample(8));
  assertAlmostEquals(est.treeTokens, all.treeTokens, 0, 0.01);
});

Deno.test("the eleven paper presets exist in the paper's column order", () => {
  assertEquals(PAPER_PRESETS, [
    "few-shot-b20",
    "few-shot-b30",
    "few-shot-b50",
    "sorting",
    "document",
    "keyword",
    "set",
    "speculative-t32",
    "speculative-t64",
    "speculative-t128",
    "speculative-t256",
  ]);
  assertThrows(() => getPreset("nope"), RangeError, /known presets: few-shot-b20/);
});

Deno.test("paper presets reproduce the KV IO reductions of the paper (section 4.2)", () => {
  const expect: Record<string, [number, number]> = {
    // preset: [paper %, tolerance in percentage points]
    "few-shot-b20": [90.48, 0.02],
    "few-shot-b30": [92.06, 0.02],
    "few-shot-b50": [93.33, 0.02],
    "speculative-t32": [96.9, 0.1],
    "speculative-t64": [98.4, 0.1],
    "speculative-t128": [99.2, 0.1],
    "speculative-t256": [99.6, 0.1],
  };
  for (const [name, [pct, tol]] of Object.entries(expect)) {
    const f = runFacts(getPreset(name).build(1));
    assertAlmostEquals(f.kvIoReduction * 100, pct, tol, 0, `${name}: ${f.kvIoReduction * 100}`);
  }
});

Deno.test("paper-accounting KV IO reproduces Table 17 (few-shot, Llama-3-8B, fp16)", () => {
  const shape = MODEL_SHAPES["llama3-8b"]!;
  const tb = (x: number) => Math.round(x / 1e10) / 100;
  const cases: [string, number, number][] = [
    ["few-shot-b20", 17.62, 1.68],
    ["few-shot-b30", 26.43, 2.10],
    ["few-shot-b50", 44.05, 2.94],
  ];
  for (const [name, seqTb, treeTb] of cases) {
    const io = kvIo(runFacts(getPreset(name).build(1)), shape, "f16");
    assertEquals([tb(io.sequenceModelBytes), tb(io.treeModelBytes)], [seqTb, treeTb], name);
  }
});

Deno.test("resolveShape() knows the paper's models and custom shapes", () => {
  assertEquals(resolveShape("llama3-8b").kvHeads, 8);
  assertEquals(resolveShape("codellama-7b").kvHeads, 32);
  assertEquals(resolveShape("codellama-34b").qHeads, 64);
  assertEquals(resolveShape("16/4/64"), {
    name: "custom",
    qHeads: 16,
    kvHeads: 4,
    headDim: 64,
    layers: 32,
  });
  assertThrows(() => resolveShape("32/5/128"), RangeError, /multiple of kvHeads/);
  assertThrows(() => resolveShape("32/8/130"), RangeError, /headDim/);
  assertThrows(() => resolveShape("gpt"), RangeError, /Unknown model shape "gpt"/);
});

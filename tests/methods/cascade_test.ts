import { FewShotRun } from "../../workloads/few_shot.ts";
import { ReasoningRun } from "../../workloads/reasoning.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import { IndexedTree, type Tree } from "../../workloads/tree.ts";
import { attendedSlots } from "../../kernels/group_attention.ts";
import { kvLayout } from "../../kernels/layout.ts";
import {
  DEFAULT_METHOD_OPTIONS,
  type MethodOptions,
  type PlanInput,
} from "../../kernels/method.ts";
import { cascade, cascadeGroups } from "../../kernels/methods/cascade.ts";
import { getMethod } from "../../kernels/methods/mod.ts";
import { querySlots } from "../../kernels/reference.ts";
import { chainTree, GQA4, internalQueriesTree, starTree } from "../_conformance.ts";
import { assert, assertEquals, assertStrictEquals, assertThrows } from "../_assert.ts";

function input(tree: Tree, options: Partial<MethodOptions> = {}): PlanInput {
  const ix = new IndexedTree(tree);
  return {
    ix,
    layout: kvLayout(ix, "shuffled", 9),
    shape: GQA4,
    dtype: "f16",
    options: { ...DEFAULT_METHOD_OPTIONS, ...options },
  };
}

/** Root (100) -> a (50) -> {b (20) with 2 leaves of 5, c (30) with a leaf of 8}, queries on leaves. */
function deepTree(): Tree {
  return {
    nodes: [
      { id: 0, parent: null, tokens: 100 },
      { id: 1, parent: 0, tokens: 50 },
      { id: 2, parent: 1, tokens: 20 },
      { id: 3, parent: 1, tokens: 30 },
      { id: 4, parent: 2, tokens: 5 },
      { id: 5, parent: 2, tokens: 5 },
      { id: 6, parent: 3, tokens: 8 },
      { id: 7, parent: 0, tokens: 40 }, // no query below: not part of anything
    ],
    queries: [{ node: 4 }, { node: 5 }, { node: 6 }],
  };
}

Deno.test("cascadeGroups() finds the prefix shared by all queries (their lowest common ancestor)", () => {
  const cases: [Tree, number, number][] = [
    [new FewShotRun({ prompt: 300, branches: 12, generated: 60 }).snapshot(40), 0, 300],
    [deepTree(), 1, 150],
    [chainTree(5, 10), 4, 50],
    [internalQueriesTree(), 10, 150],
    [
      new SpeculativeRun({ prefix: 250, treeTokens: 32, steps: 1, seed: 1, topology: "medusa" })
        .snapshot(0),
      1,
      251,
    ],
  ];
  for (const [tree, lcaId, prefixTokens] of cases) {
    const { ix, layout } = input(tree);
    const c = cascadeGroups(ix, layout, 128);
    assertStrictEquals(tree.nodes[c.prefixNode]!.id, lcaId);
    assertStrictEquals(c.prefixTokens, prefixTokens);
    assertStrictEquals(c.prefixGroups, Math.ceil(prefixTokens / 128));
  }
});

Deno.test("cascadeGroups() gives prefix chunks all queries and suffix chunks one query each", () => {
  const { ix, layout } = input(deepTree());
  const c = cascadeGroups(ix, layout, 16);
  const g = c.groups;
  for (let i = 0; i < g.count; i++) {
    const nq = g.queryOffset[i + 1]! - g.queryOffset[i]!;
    assertStrictEquals(nq, i < c.prefixGroups ? 3 : 1);
    assert(g.tokens[i]! <= 16);
    assertStrictEquals(g.maskWords[i], 0);
  }
  // Prefix 150 tokens in chunks of 16; suffixes 25, 25 and 38 tokens.
  assertStrictEquals(c.prefixGroups, 10);
  assertStrictEquals(g.count - c.prefixGroups, 2 + 2 + 3);
  assertStrictEquals(c.kvTokens, 150 + 25 + 25 + 38);
});

Deno.test("cascade with one query puts its whole path in the prefix", () => {
  const p = cascade.plan(input(chainTree(4, 100)));
  assertStrictEquals(p.prefixTokens, 400);
  assertStrictEquals(p.stats.suffixGroups, 0);
  assertStrictEquals(p.stats.prefixGroups, 4);
});

Deno.test("cascade attends every query to exactly the KV of its path", () => {
  const trees = [
    deepTree(),
    internalQueriesTree(),
    new ReasoningRun({ prompt: 200, depth: 3, width: 4, thoughtMin: 20, thoughtMax: 70, seed: 3 })
      .snapshot(75),
    starTree(90, 40, 7),
  ];
  for (const tree of trees) {
    const inp = input(tree, { chunkSize: 32 });
    const p = cascade.plan(inp);
    for (let q = 0; q < inp.ix.queryCount; q++) {
      const got = attendedSlots(p.groups, q).sort((a, b) => a - b);
      const want = Array.from(querySlots(inp.ix, inp.layout, q)).sort((a, b) => a - b);
      assertEquals(got, want, `query ${q}`);
    }
  }
});

Deno.test("cascade paper IO reads the prefix once and every suffix once per query", () => {
  const p = cascade.plan(input(deepTree()));
  const perElement = GQA4.qHeads * 2;
  assertStrictEquals(p.counts.paper.kvBytes, 2 * GQA4.headDim * (150 + 25 + 25 + 38) * perElement);
  assertStrictEquals(p.counts.paper.maskBytes, 0);
  assertStrictEquals(p.counts.paper.partialBytes, 0);
});

Deno.test("cascade rejects a chunkSize that is not a positive integer", () => {
  assertThrows(() => cascade.plan(input(deepTree(), { chunkSize: 0 })), RangeError, /chunkSize/);
});

Deno.test("cascade is registered as cascade", () => {
  assertStrictEquals(getMethod("cascade"), cascade);
});

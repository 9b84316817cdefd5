import { FewShotRun } from "../../workloads/few_shot.ts";
import { ReasoningRun } from "../../workloads/reasoning.ts";
import type { ModelShape } from "../../workloads/shapes.ts";
import { IndexedTree, type Tree } from "../../workloads/tree.ts";
import { attendedSlots } from "../../kernels/group_attention.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type PlanInput } from "../../kernels/method.ts";
import { deftNode, nodeGroups } from "../../kernels/methods/deft_node.ts";
import { getMethod } from "../../kernels/methods/mod.ts";
import { querySlots } from "../../kernels/reference.ts";
import { GpuError } from "../../kernels/gpu.ts";
import { Problem, runMethod } from "../../kernels/problem.ts";
import { chainTree, GQA4, internalQueriesTree, starTree, testGpu } from "../_conformance.ts";
import { assertEquals, assertRejects, assertStrictEquals } from "../_assert.ts";

function input(tree: Tree): PlanInput {
  const ix = new IndexedTree(tree);
  return {
    ix,
    layout: kvLayout(ix, "shuffled", 5),
    shape: GQA4,
    dtype: "f32",
    options: DEFAULT_METHOD_OPTIONS,
  };
}

const reasoning = () =>
  new ReasoningRun({ prompt: 200, depth: 3, width: 4, thoughtMin: 20, thoughtMax: 70, seed: 3 })
    .snapshot(75);

Deno.test("nodeGroups() makes one unmasked group per node with every query below it", () => {
  for (const tree of [internalQueriesTree(), reasoning()]) {
    const { ix, layout } = input(tree);
    const groups = nodeGroups(ix, layout);
    const below = ix.queriesByNode();
    const seen = Array.from(ix.dfsOrder).filter((v) => below[v]!.length > 0);
    assertStrictEquals(groups.count, seen.length);
    seen.forEach((v, g) => {
      assertStrictEquals(groups.tokens[g], ix.tokens(v));
      assertStrictEquals(groups.segOffset[g + 1]! - groups.segOffset[g]!, 1);
      assertStrictEquals(groups.segSlot[groups.segOffset[g]!], layout.slotStart[v]);
      const qs = Array.from(
        groups.queries.subarray(groups.queryOffset[g], groups.queryOffset[g + 1]),
      );
      assertEquals(qs.sort((a, b) => a - b), below[v]);
      assertStrictEquals(groups.maskWords[g], 0);
    });
    assertStrictEquals(groups.mask.length, 0);
  }
});

Deno.test("nodeGroups() skips nodes no query sees", () => {
  const tree: Tree = {
    nodes: [
      { id: 0, parent: null, tokens: 10 },
      { id: 1, parent: 0, tokens: 4 },
      { id: 2, parent: 0, tokens: 6 },
    ],
    queries: [{ node: 1 }],
  };
  const { ix, layout } = input(tree);
  const groups = nodeGroups(ix, layout);
  assertStrictEquals(groups.count, 2);
  assertEquals(Array.from(groups.tokens), [10, 4]);
});

Deno.test("deft-node keeps a long node as one group (the load imbalance of the paper)", () => {
  const p = deftNode.plan(input(starTree(20000, 3, 1)));
  assertStrictEquals(p.stats.groups, 4);
  assertStrictEquals(p.stats.maxTokensPerGroup, 20000);
  assertStrictEquals(p.groups.tokens[0], 20000);
});

Deno.test("deft-node attends every query to exactly the KV of its path", () => {
  for (const tree of [internalQueriesTree(), reasoning(), starTree(90, 40, 7)]) {
    const inp = input(tree);
    const p = deftNode.plan(inp);
    for (let q = 0; q < inp.ix.queryCount; q++) {
      const got = attendedSlots(p.groups, q).sort((a, b) => a - b);
      const want = Array.from(querySlots(inp.ix, inp.layout, q)).sort((a, b) => a - b);
      assertEquals(got, want, `query ${q}`);
    }
  }
});

Deno.test("deft-node paper IO is 2d N_tree KV without mask; real IO reads each node per row tile", () => {
  const inp = input(new FewShotRun({ prompt: 300, branches: 20, generated: 60 }).snapshot(40));
  const p = deftNode.plan(inp);
  const n = 300 + 20 * 41;
  const perElement = GQA4.qHeads * 4;
  assertStrictEquals(p.counts.paper.kvBytes, 2 * GQA4.headDim * n * perElement);
  assertStrictEquals(p.counts.paper.maskBytes, 0);
  assertStrictEquals(p.counts.paper.totalBytes, p.counts.paper.kvBytes);
  // The prompt has 20 queries x 4 heads = 80 rows: two row tiles; each branch has one.
  const kvPerToken = 2 * GQA4.headDim * GQA4.kvHeads * 4;
  assertStrictEquals(p.counts.real.kvBytes, (2 * 300 + 20 * 41) * kvPerToken);
  assertStrictEquals(p.counts.real.maskBytes, 0);
  assertStrictEquals(p.stats.rowTiles, 2 + 20);
  assertStrictEquals(p.stats.partials, 20 + 20);
});

Deno.test("deft-node is registered as deft-node", () => {
  assertStrictEquals(getMethod("deft-node"), deftNode);
});

Deno.test({
  name: "deft-node refuses, on llvmpipe, a group longer than llvmpipe's shader loop limit",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await testGpu();
    if (!gpu.info.description.includes("llvmpipe")) return; // hardware GPUs have no such limit
    const shape: ModelShape = { name: "4/1/128", qHeads: 4, kvHeads: 1, headDim: 128, layers: 1 };
    const problem = Problem.create(gpu, chainTree(1, 200000), { shape, dtype: "f32", seed: 1 });
    try {
      await assertRejects(() => runMethod(problem, deftNode), GpuError, /loop iterations/);
    } finally {
      problem.destroy();
    }
  },
});

import { ReasoningRun } from "../../workloads/reasoning.ts";
import { IndexedTree, type Tree } from "../../workloads/tree.ts";
import { attendedSlots } from "../../kernels/group_attention.ts";
import { kvLayout } from "../../kernels/layout.ts";
import {
  DEFAULT_METHOD_OPTIONS,
  type MethodOptions,
  type PlanInput,
} from "../../kernels/method.ts";
import { deftNodeChunk } from "../../kernels/methods/deft_node_chunk.ts";
import { getMethod } from "../../kernels/methods/mod.ts";
import { querySlots } from "../../kernels/reference.ts";
import { GQA4, internalQueriesTree, starTree } from "../_conformance.ts";
import { assertEquals, assertStrictEquals, assertThrows } from "../_assert.ts";

function input(tree: Tree, options: Partial<MethodOptions> = {}): PlanInput {
  const ix = new IndexedTree(tree);
  return {
    ix,
    layout: kvLayout(ix, "shuffled", 5),
    shape: GQA4,
    dtype: "f16",
    options: { ...DEFAULT_METHOD_OPTIONS, ...options },
  };
}

Deno.test("deft-node-chunk cuts each node into chunks of chunkSize tokens, the last one shorter", () => {
  const tree: Tree = {
    nodes: [
      { id: 0, parent: null, tokens: 300 },
      { id: 1, parent: 0, tokens: 128 },
      { id: 2, parent: 0, tokens: 5 },
    ],
    queries: [{ node: 1 }, { node: 2 }],
  };
  const inp = input(tree);
  const p = deftNodeChunk.plan(inp);
  assertEquals(Array.from(p.groups.tokens), [128, 128, 44, 128, 5]);
  assertStrictEquals(p.stats.groups, 5);
  // Chunks of one node are consecutive slot ranges, each with all the node's queries.
  const s = inp.layout.slotStart;
  assertEquals(Array.from(p.groups.segSlot), [s[0]!, s[0]! + 128, s[0]! + 256, s[1]!, s[2]!]);
  assertEquals(Array.from(p.groups.queryOffset), [0, 2, 4, 6, 7, 8]);
  assertStrictEquals(p.chunkSize, 128);
});

Deno.test("deft-node-chunk makes sum(ceil(n_i / chunk)) groups", () => {
  const inp = input(
    new ReasoningRun({ prompt: 200, depth: 3, width: 4, thoughtMin: 20, thoughtMax: 70, seed: 3 })
      .snapshot(75),
    { chunkSize: 16 },
  );
  const p = deftNodeChunk.plan(inp);
  const below = inp.ix.queriesByNode();
  let groups = 0;
  for (let v = 0; v < inp.ix.nodeCount; v++) {
    if (below[v]!.length > 0) groups += Math.ceil(inp.ix.tokens(v) / 16);
  }
  assertStrictEquals(p.groups.count, groups);
  for (let g = 0; g < p.groups.count; g++) assertStrictEquals(p.groups.tokens[g]! <= 16, true);
});

Deno.test("deft-node-chunk attends every query to exactly the KV of its path", () => {
  for (const tree of [internalQueriesTree(), starTree(300, 40, 7)]) {
    const inp = input(tree, { chunkSize: 32 });
    const p = deftNodeChunk.plan(inp);
    for (let q = 0; q < inp.ix.queryCount; q++) {
      const got = attendedSlots(p.groups, q).sort((a, b) => a - b);
      const want = Array.from(querySlots(inp.ix, inp.layout, q)).sort((a, b) => a - b);
      assertEquals(got, want, `query ${q}`);
    }
  }
});

Deno.test("deft-node-chunk paper IO is 2d N_tree KV without mask", () => {
  const inp = input(starTree(300, 40, 7));
  const p = deftNodeChunk.plan(inp);
  const n = 300 + 40 * 7;
  assertStrictEquals(p.counts.paper.kvBytes, 2 * GQA4.headDim * n * GQA4.qHeads * 2);
  assertStrictEquals(p.counts.paper.maskBytes, 0);
  assertStrictEquals(p.counts.real.maskBytes, 0);
});

Deno.test("deft-node-chunk rejects a chunkSize that is not a positive integer", () => {
  for (const chunkSize of [0, 2.5, -1]) {
    assertThrows(() => deftNodeChunk.plan(input(starTree(10, 2, 1), { chunkSize })), RangeError);
  }
});

Deno.test("deft-node-chunk is registered as deft-node-chunk", () => {
  assertStrictEquals(getMethod("deft-node-chunk"), deftNodeChunk);
});

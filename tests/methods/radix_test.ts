import { assert, assertEquals } from "../_assert.ts";
import {
  chainTree,
  type ConformanceCase,
  conformanceSuite,
  GQA4,
  internalQueriesTree,
  shape,
  starTree,
} from "../_conformance.ts";
import { planRadix, radix, RADIX_LOGIT_TILE } from "../../kernels/methods/radix.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS } from "../../kernels/method.ts";
import { querySlots } from "../../kernels/reference.ts";
import { FewShotRun } from "../../workloads/few_shot.ts";
import { type Dtype, MODEL_SHAPES, type ModelShape } from "../../workloads/shapes.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import { IndexedTree, type Tree, treeFacts } from "../../workloads/tree.ts";

function plan(tree: Tree, s: ModelShape = GQA4, dtype: Dtype = "f16") {
  const ix = new IndexedTree(tree);
  const layout = kvLayout(ix, "shuffled", 3);
  const p = planRadix({ ix, layout, shape: s, dtype, options: DEFAULT_METHOD_OPTIONS });
  return { ix, layout, plan: p, facts: treeFacts(ix) };
}

const trees: [string, () => Tree][] = [
  ["few-shot", () => new FewShotRun({ prompt: 300, branches: 12, generated: 60 }).snapshot(40)],
  [
    "speculative",
    () =>
      new SpeculativeRun({ prefix: 250, treeTokens: 32, steps: 4, seed: 1, topology: "medusa" })
        .snapshot(2),
  ],
  ["chain", () => chainTree(40, 37)],
  ["internal queries", internalQueriesTree],
];

Deno.test("planRadix() loads KV per query head, as the paper counts it", () => {
  for (const [name, tree] of trees) {
    for (const dtype of ["f16", "f32"] as const) {
      const { plan: p, facts } = plan(tree(), GQA4, dtype);
      const b = dtype === "f16" ? 2 : 4;
      const kv = 2 * GQA4.headDim * facts.pathTokens * GQA4.qHeads * b;
      assertEquals(p.counts.paper.kvBytes, kv, name);
      assertEquals(p.counts.real.kvBytes, kv, name);
      assertEquals(p.counts.paper.partialBytes, 0);
      assertEquals(p.counts.usefulFlops, 4 * GQA4.headDim * facts.pathTokens * GQA4.qHeads);
      assertEquals(p.counts.flops, p.counts.usefulFlops);
    }
  }
});

Deno.test("planRadix() writes and reads the logits [qHead][ΣN_i] once each", () => {
  for (const [name, tree] of trees) {
    for (const dtype of ["f16", "f32"] as const) {
      const { plan: p, facts } = plan(tree(), GQA4, dtype);
      const b = dtype === "f16" ? 2 : 4;
      assertEquals(p.totalTokens, facts.pathTokens, name);
      assertEquals(p.counts.real.logitsBytes, 2 * GQA4.qHeads * facts.pathTokens * b, name);
      assertEquals(p.stats.logitElements, GQA4.qHeads * facts.pathTokens);
      assertEquals(p.counts.real.partialBytes, 0);
    }
  }
});

Deno.test("planRadix() gives every query a req_to_token row of its path slots", () => {
  for (const [name, tree] of trees) {
    const { ix, layout, plan: p } = plan(tree());
    for (let q = 0; q < ix.queryCount; q++) {
      const [start, n] = [p.reqs[2 * q]!, p.reqs[2 * q + 1]!];
      assertEquals(
        Array.from(p.reqToToken.subarray(start, start + n)),
        Array.from(querySlots(ix, layout, q)),
        `${name} query ${q}`,
      );
    }
  }
});

Deno.test("planRadix() launches the original's padded grid, folded within 65535", () => {
  const { plan: p, facts } = plan(
    new FewShotRun({ prompt: 4000, branches: 50, generated: 400 }).snapshot(399),
    MODEL_SHAPES["llama3-8b"]!,
  );
  const maxN = 4000 + 400;
  assertEquals(p.logitTiles, Math.ceil(maxN / RADIX_LOGIT_TILE));
  assertEquals(p.logitWorkgroups, facts.queries * 32 * p.logitTiles);
  assertEquals(p.reduceWorkgroups, facts.queries * 32);
  for (const d of p.dispatches) {
    const [x, y, z] = d.workgroups;
    assert(x <= 65535 && y <= 65535 && z === 1);
  }
  const [x, y] = p.dispatches[0]!.workgroups;
  assert(x * y >= p.logitWorkgroups);
  assertEquals(p.dispatches.map((d) => d.kernel), ["radix-logits", "radix-reducev"]);
  // Varying lengths leave idle programs in the padded grid.
  const ragged = plan(internalQueriesTree()).plan;
  assert(ragged.stats.idleLogitWorkgroups! > 0);
});

// Geometry corners: head dim 256 (one key lane in stage 2), head dim 32 (4 lanes per key in
// stage 1, 8 key lanes in stage 2), MHA, a query longer than many reduce tiles.
const corners: ConformanceCase[] = [];
for (const dtype of ["f32", "f16"] as const) {
  corners.push(
    {
      name: `head dim 256 ${dtype}`,
      tree: () => starTree(300, 4, 9),
      shape: shape(4, 2, 256),
      dtype,
    },
    {
      name: `head dim 32, GQA group 3 ${dtype}`,
      tree: () => chainTree(9, 29),
      shape: shape(6, 2, 32),
      dtype,
    },
  );
}
conformanceSuite(radix, corners);

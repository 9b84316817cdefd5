import { assert, assertEquals } from "../_assert.ts";
import {
  chainTree,
  type ConformanceCase,
  conformanceSuite,
  internalQueriesTree,
  runCase,
  starTree,
  TOLERANCE,
} from "../_conformance.ts";
import {
  MIN_CHUNK_TOKENS,
  planSequence,
  sequence,
  SEQUENCE_STORAGE_BUDGET,
  sequenceTiling,
} from "../../kernels/methods/sequence.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type MethodOptions } from "../../kernels/method.ts";
import { querySlots } from "../../kernels/reference.ts";
import { FewShotRun } from "../../workloads/few_shot.ts";
import { ReasoningRun } from "../../workloads/reasoning.ts";
import { type Dtype, MODEL_SHAPES, type ModelShape } from "../../workloads/shapes.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import { IndexedTree, type Tree, treeFacts } from "../../workloads/tree.ts";

conformanceSuite(sequence);

const shape = (qHeads: number, kvHeads: number, headDim: number): ModelShape => ({
  name: `${qHeads}/${kvHeads}/${headDim}`,
  qHeads,
  kvHeads,
  headDim,
  layers: 1,
});
const GQA4 = shape(8, 2, 128);

function plan(
  tree: Tree,
  s: ModelShape = GQA4,
  dtype: Dtype = "f16",
  options: Partial<MethodOptions> = {},
) {
  const ix = new IndexedTree(tree);
  const layout = kvLayout(ix, "shuffled", 7);
  const p = planSequence({
    ix,
    layout,
    shape: s,
    dtype,
    options: { ...DEFAULT_METHOD_OPTIONS, ...options },
  });
  return { ix, layout, plan: p, facts: treeFacts(ix) };
}

const trees: [string, () => Tree][] = [
  ["few-shot", () => new FewShotRun({ prompt: 300, branches: 12, generated: 60 }).snapshot(40)],
  [
    "reasoning",
    () =>
      new ReasoningRun({ prompt: 200, depth: 3, width: 4, thoughtMin: 20, thoughtMax: 70, seed: 3 })
        .snapshot(75),
  ],
  [
    "speculative",
    () =>
      new SpeculativeRun({ prefix: 250, treeTokens: 32, steps: 4, seed: 1, topology: "medusa" })
        .snapshot(2),
  ],
  ["chain", () => chainTree(40, 37)],
  ["internal queries", internalQueriesTree],
];

Deno.test("planSequence() counts KV once per KV head, the paper per query head", () => {
  for (const [name, tree] of trees) {
    for (const dtype of ["f16", "f32"] as const) {
      const { plan: p, facts } = plan(tree(), GQA4, dtype);
      const b = dtype === "f16" ? 2 : 4;
      const d = GQA4.headDim;
      assertEquals(p.counts.paper.kvBytes, 2 * d * facts.pathTokens * GQA4.qHeads * b, name);
      assertEquals(p.counts.real.kvBytes, facts.pathTokens * GQA4.kvHeads * d * 2 * b, name);
      assertEquals(p.counts.usefulFlops, 4 * d * facts.pathTokens * GQA4.qHeads, name);
      assert(p.counts.flops >= p.counts.usefulFlops, name);
      assertEquals(p.counts.real.logitsBytes, 0);
      assertEquals(p.counts.real.outputBytes, facts.queries * GQA4.qHeads * d * 4);
    }
  }
});

Deno.test("planSequence() chunks cover every path token of every query exactly once", () => {
  for (const [name, tree] of trees) {
    for (const targetWorkgroups of [0, 1, 50, 100_000]) {
      const { ix, layout, plan: p } = plan(tree(), GQA4, "f32", { targetWorkgroups });
      const seen = Array.from({ length: ix.queryCount }, () => [] as number[]);
      const segs = p.segments;
      const chunks = p.chunkMeta.length / 4;
      for (let c = 0; c < chunks; c++) {
        const [q, first, begin, end] = p.chunkMeta.subarray(4 * c, 4 * c + 4);
        assert(begin! < end!, `${name}: chunk ${c} is empty`);
        assert(end! - begin! <= p.chunkTokens + p.tiling.keysPerTile, `${name}: chunk too long`);
        assertEquals(p.chunkQuery[c], q);
        let s = first!;
        assert(segs[2 * s]! <= begin! && begin! < segs[2 * (s + 1)]!, `${name}: first segment`);
        for (let pos = begin!; pos < end!; pos++) {
          while (segs[2 * (s + 1)]! <= pos) s++;
          seen[q!]!.push(segs[2 * s + 1]! + pos - segs[2 * s]!);
        }
      }
      for (let q = 0; q < ix.queryCount; q++) {
        assertEquals(seen[q], Array.from(querySlots(ix, layout, q)), `${name} query ${q}`);
      }
    }
  }
});

Deno.test("planSequence() sizes chunks for the target number of workgroups", () => {
  const tree = new FewShotRun({ prompt: 4000, branches: 50, generated: 400 }).snapshot(399);
  const s = MODEL_SHAPES["llama3-8b"]!;
  for (const target of [0, 1000, 4096, 20000]) {
    const { plan: p, facts } = plan(tree, s, "f16", { targetWorkgroups: target });
    const T = p.tiling.keysPerTile;
    assertEquals(p.chunkTokens % T, 0);
    assert(p.chunkTokens >= MIN_CHUNK_TOKENS);
    const goal = target || 4096;
    // At most one extra chunk per query from rounding up.
    assert(p.workgroups <= goal + facts.queries * s.kvHeads, `${p.workgroups} for ${goal}`);
    assert(p.workgroups >= goal / 2 || p.chunkTokens === Math.max(MIN_CHUNK_TOKENS, T));
    assertEquals(p.stats.workgroups, p.stats.chunks! * s.kvHeads);
    const partialRow = s.qHeads * (s.headDim + 1) * 4;
    assertEquals(p.counts.real.partialBytes, 2 * p.stats.chunks! * partialRow);
  }
});

Deno.test("planSequence() writes the output directly when every query has one chunk", () => {
  const { plan: p, facts } = plan(starTree(100, 5, 3), GQA4, "f16", { targetWorkgroups: 1 });
  assert(p.direct);
  assertEquals(p.stats.chunks, facts.queries);
  assertEquals(p.dispatches.map((d) => d.kernel), ["sequence"]);
  assertEquals(p.counts.real.partialBytes, facts.queries * GQA4.qHeads * 4);
  const split = plan(starTree(100, 5, 3), GQA4, "f16", { targetWorkgroups: 1000 }).plan;
  assert(!split.direct);
  assertEquals(split.dispatches.map((d) => d.kernel), ["sequence", "reduce"]);
});

Deno.test("planSequence() folds large grids within 65535 workgroups per dimension", () => {
  const { plan: p } = plan(starTree(100, 3000, 50), MODEL_SHAPES["llama3-8b"]!, "f16", {
    targetWorkgroups: 200_000,
  });
  assert(p.workgroups > 65535);
  const [x, y, z] = p.dispatches[0]!.workgroups;
  assert(x <= 65535 && y <= 65535 && z === 1);
  assert(x * y >= p.workgroups);
});

Deno.test("sequenceTiling() fits the workgroup-memory and thread budgets for every shape", () => {
  for (const d of [4, 32, 64, 96, 128, 256]) {
    for (const [qh, kvh] of [[4, 4], [8, 2], [8, 1], [6, 2], [32, 2], [64, 8], [32, 32]]) {
      for (const dtype of ["f16", "f32"] as const) {
        const t = sequenceTiling(shape(qh!, kvh!, d), dtype);
        const group = qh! / kvh!;
        const where = `${qh}/${kvh}/${d}`;
        assert(t.sharedBytes <= SEQUENCE_STORAGE_BUDGET, where);
        assert(t.keysPerTile >= 4 && (t.keysPerTile & (t.keysPerTile - 1)) === 0, where);
        assertEquals(t.workgroupSize, t.headsPerWorkgroup * d / 4, where);
        assert(t.workgroupSize <= 256, where);
        assertEquals(t.headBlocks * t.headsPerWorkgroup, group, where);
      }
    }
  }
  // The paper's shapes keep the whole GQA group in one workgroup (KV read once per KV head).
  for (const s of Object.values(MODEL_SHAPES)) {
    assertEquals(sequenceTiling(s, "f16").headBlocks, 1);
    assertEquals(sequenceTiling(s, "f16").keysPerTile, 32);
  }
});

// Geometry corners the shared matrix does not reach: one chunk per query (direct output), GQA
// groups that are not a power of two or fill 256 threads, two head blocks per KV head (head dim
// 256, group 8), chunks of many tiles, and a tiny head dim (4 threads, 16 keys per logit thread).
const corners: ConformanceCase[] = [];
for (const dtype of ["f32", "f16"] as const) {
  corners.push(
    {
      name: `direct output ${dtype}`,
      tree: internalQueriesTree,
      shape: GQA4,
      dtype,
      options: { targetWorkgroups: 1 },
    },
    {
      name: `GQA group 3, head dim 32 ${dtype}`,
      tree: () => chainTree(9, 29),
      shape: shape(6, 2, 32),
      dtype,
    },
    {
      name: `GQA group 16, head dim 64 ${dtype}`,
      tree: () => starTree(150, 6, 20),
      shape: shape(16, 1, 64),
      dtype,
    },
    {
      name: `head dim 256, two head blocks, chunks of many tiles ${dtype}`,
      tree: () => starTree(700, 3, 45),
      shape: shape(16, 2, 256),
      dtype,
      options: { targetWorkgroups: 8 },
    },
    {
      name: `head dim 8 ${dtype}`,
      tree: () => chainTree(5, 21),
      shape: shape(4, 2, 8),
      dtype,
    },
  );
}
for (const c of corners) {
  Deno.test({
    name: `sequence matches the float64 reference: ${c.name}`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const r = await runCase(sequence, c, 12345);
      assertEquals([r.unwritten, r.nonFinite], [0, 0]);
      assert(r.maxRelError <= TOLERANCE[c.dtype], `max relative error ${r.maxRelError}`);
    },
  });
}

import { assert, assertEquals } from "../_assert.ts";
import {
  chainTree,
  CHECK_VARIANTS,
  type ConformanceCase,
  conformanceSuite,
  FULL_CONFORMANCE,
  GQA4,
  growKeysAlongPaths,
  HAS_F16,
  inMatrix,
  internalQueriesTree,
  shape,
  skipDtype,
  starTree,
  subgroupsBelow,
  testGpu,
} from "../_conformance.ts";
import {
  checkSequenceVariant,
  DEFAULT_SEQUENCE_VARIANT,
  DEFAULT_TARGET_WORKGROUPS,
  MIN_CHUNK_TOKENS,
  planSequence,
  sequence,
  type SequenceParams,
  sequenceShader,
  sequenceTiling,
  type SequenceVariant,
  sequenceVariantOf,
} from "../../kernels/methods/sequence.ts";
import { PLAN_STORAGE_BUDGET } from "../../kernels/gpu.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type MethodOptions } from "../../kernels/method.ts";
import { Problem, runMethod } from "../../kernels/problem.ts";
import { querySlots } from "../../kernels/reference.ts";
import { referenceOf, verdictProblems, verify } from "../../kernels/verify.ts";
import { FewShotRun } from "../../workloads/few_shot.ts";
import { ReasoningRun } from "../../workloads/reasoning.ts";
import { type Dtype, MODEL_SHAPES, type ModelShape } from "../../workloads/shapes.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import { IndexedTree, type Tree, treeFacts } from "../../workloads/tree.ts";

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
    const goal = target || DEFAULT_TARGET_WORKGROUPS;
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
  const split = plan(starTree(300, 5, 3), GQA4, "f16", { targetWorkgroups: 1000 }).plan;
  assert(!split.direct);
  assertEquals(split.dispatches.map((d) => d.kernel), ["sequence", "reduce"]);
});

Deno.test("planSequence() folds large grids within 65535 workgroups per dimension", () => {
  const { plan: p } = plan(starTree(300, 3000, 50), MODEL_SHAPES["llama3-8b"]!, "f16", {
    targetWorkgroups: 200_000,
  });
  assert(p.workgroups > 65535);
  const [x, y, z] = p.dispatches[0]!.workgroups;
  assert(x <= 65535 && y <= 65535 && z === 1);
  assert(x * y >= p.workgroups);
});

/** Variants that move every knob of the kernel (the perf script times some of them). */
/** The shape the reduced matrix checks the kernel variants with (GQA group 4, head dim 16). */
const VARIANT_STAND_IN = shape(8, 2, 16);

const VARIANTS: SequenceParams[] = [
  {},
  { threads: 256, blockKeys: 128 },
  { threads: 64, blockKeys: 32 },
  { lanes: 16, blockKeys: 64 },
  { lanes: 4, qPlacement: "workgroup" },
  { qPlacement: "registers", maxHeadsPerWorkgroup: 2 },
  { prefetchV: 1 },
  { blockKeys: 32, storageBudget: 16384 },
  // The `lanes` design: 8 lanes (software adapters' subgroups), 16 and 32 (GPUs'), 4 lanes with two
  // head blocks, one key per step, 256 threads.
  { design: "lanes", lanes: 8 },
  { design: "lanes", lanes: 16, threads: 64, unroll: 2 },
  { design: "lanes", lanes: 8, scatter: 1 },
  { design: "lanes", lanes: 16, scatter: 1, threads: 64, unroll: 8 },
  { design: "lanes", lanes: 4, scatter: 1, unroll: 2, maxHeadsPerWorkgroup: 2 },
  { design: "lanes", lanes: 32, threads: 64, unroll: 8 },
  { design: "lanes", lanes: 4, unroll: 1, maxHeadsPerWorkgroup: 2 },
  { design: "lanes", lanes: 8, threads: 256, unroll: 2 },
];

Deno.test("sequenceTiling() fits the workgroup-memory and thread budgets for every shape", () => {
  for (const overrides of VARIANTS) {
    const variant = sequenceVariantOf(overrides);
    for (const d of [4, 8, 32, 36, 64, 96, 128, 256]) {
      for (const [qh, kvh] of [[4, 4], [8, 2], [8, 1], [6, 2], [32, 2], [64, 8], [32, 32]]) {
        for (const dtype of ["f16", "f32"] as const) {
          const t = sequenceTiling(shape(qh!, kvh!, d), dtype, variant);
          const group = qh! / kvh!;
          const where = `${JSON.stringify(overrides)} ${qh}/${kvh}/${d}`;
          const b = t.keysPerTile;
          assertEquals(t.design, variant.design, where);
          assert(t.sharedBytes <= variant.storageBudget, where);
          assert(t.workgroupSize <= variant.threads && t.workgroupSize >= 64, where);
          assertEquals(t.keysPerPass * t.lanes, t.workgroupSize, where);
          assertEquals(b % t.keysPerPass, 0, where);
          assertEquals(t.quadsPerLane, Math.ceil(d / 4 / t.lanes), where);
          if (t.design === "lanes") {
            // Key groups of L lanes, U keys each per step; Q and the accumulators in registers.
            assertEquals(t.keyGroups * t.lanes, t.workgroupSize, where);
            assertEquals(b, t.keyGroups * variant.unroll, where);
            assert(t.qInRegisters, where);
            assert(t.lanes <= (variant.lanes || 16), where);
            assert(t.headsPerWorkgroup * t.quadsPerLane <= 16 || t.headsPerWorkgroup === 1, where);
          } else {
            assert(b >= 4 && (b & (b - 1)) === 0 && b <= t.workgroupSize, where);
            assert(t.keyGroups >= 1 && t.keyGroups * d / 4 <= t.workgroupSize, where);
          }
          assert(t.headsPerWorkgroup <= variant.maxHeadsPerWorkgroup, where);
          assertEquals(t.headBlocks * t.headsPerWorkgroup, group, where);
          if (variant.qPlacement !== "auto") {
            assertEquals(t.qInRegisters, variant.qPlacement === "registers", where);
          }
        }
      }
    }
  }
  // The paper's shapes keep the whole GQA group in one workgroup (KV read once per KV head).
  for (const s of Object.values(MODEL_SHAPES)) {
    const t = sequenceTiling(s, "f16");
    assertEquals(t.headBlocks, 1, s.name);
    assert(t.keysPerTile >= 64, s.name);
    assert(t.sharedBytes <= PLAN_STORAGE_BUDGET, s.name);
  }
  const llama = sequenceTiling(MODEL_SHAPES["llama3-8b"]!, "f16");
  assertEquals(
    [llama.workgroupSize, llama.keysPerTile, llama.lanes, llama.keyGroups, llama.qInRegisters],
    [128, 64, 8, 4, true],
  );
});

Deno.test("sequenceTiling() refuses scatter with fewer than 4 lanes per key", () => {
  const v = sequenceVariantOf({ design: "lanes", scatter: 1 });
  let threw = false;
  try {
    sequenceTiling(shape(8, 2, 8), "f16", v); // head dim 8: 2 lanes per key
  } catch (e) {
    threw = e instanceof RangeError && /at least 4 lanes/.test(e.message);
  }
  assert(threw);
  assertEquals(sequenceTiling(shape(8, 2, 16), "f16", v).lanes, 4);
});

Deno.test("planSequence() refuses the lanes design on a device whose subgroups are too small", () => {
  const ix = new IndexedTree(starTree(300, 4, 20));
  const layout = kvLayout(ix, "shuffled", 7);
  const input = (subgroups: boolean, subgroupSize: number, lanes: number) => ({
    ix,
    layout,
    shape: GQA4,
    dtype: "f16" as const,
    options: { ...DEFAULT_METHOD_OPTIONS, sequence: { design: "lanes" as const, lanes } },
    caps: {
      runtime: "deno" as const,
      matrix: null,
      subgroups,
      subgroupSize,
      workgroupStorage: 32768,
    },
  });
  for (const [subgroups, size, lanes] of [[false, 0, 8], [true, 8, 16]] as const) {
    let message = "";
    try {
      planSequence(input(subgroups, size, lanes));
    } catch (e) {
      message = e instanceof RangeError ? e.message : "";
    }
    assert(message.includes(`at least ${lanes} invocations`), message);
  }
  // Subgroups of 32, or of a size the device does not fix (0), plan; so does lanes=0 on 8 lanes.
  assertEquals(planSequence(input(true, 32, 16)).tiling.lanes, 16);
  assertEquals(planSequence(input(true, 0, 16)).tiling.lanes, 16);
  assertEquals(planSequence(input(true, 8, 0)).tiling.lanes, 8);
});

Deno.test("checkSequenceVariant() rejects impossible variants", () => {
  const bad: Partial<SequenceVariant>[] = [
    { threads: 96 },
    { threads: 512 },
    { threads: 32 },
    { lanes: 3 },
    { blockKeys: 2 },
    { blockKeys: 100 },
    { targetWorkgroups: 0 },
    { maxHeadsPerWorkgroup: 0 },
    { storageBudget: 100 },
    { qPlacement: "shared" as "auto" },
    { design: "rows" as "lanes" },
    { design: "lanes", lanes: 64 },
    { design: "lanes", unroll: 3 },
    { design: "lanes", unroll: 32 },
    { scatter: true }, // the block kernel has no scatter
    { prefetchV: true, design: "lanes" }, // nor the lanes kernel a V prefetch
  ];
  for (const b of bad) {
    let threw = false;
    try {
      checkSequenceVariant({ ...DEFAULT_SEQUENCE_VARIANT, ...b });
    } catch (e) {
      threw = e instanceof RangeError;
    }
    assert(threw, JSON.stringify(b));
  }
  assertEquals(sequenceVariantOf({ threads: 256 }).threads, 256);
  assertEquals(sequenceVariantOf({}), DEFAULT_SEQUENCE_VARIANT);
  // Named after what it changes; a field at its default changes nothing.
  assertEquals(
    sequenceVariantOf({ threads: 128, prefetchV: 1, blockKeys: 32 }).name,
    "prefetchV1-blockKeys32",
  );
  assertEquals(sequenceVariantOf({ prefetchV: 1 }).prefetchV, true);
  assertEquals(sequenceVariantOf({ design: "lanes", scatter: 1 }).name, "designlanes-scatter1");
  for (const b of [{ prefetchV: 2 as 1 }, { lanes: 3 }, { scatter: 2 as 1 }]) {
    let threw = false;
    try {
      sequenceVariantOf(b);
    } catch (e) {
      threw = e instanceof RangeError;
    }
    assert(threw, JSON.stringify(b));
  }
  assertEquals(sequence.name, "sequence");
});

Deno.test("planSequence() uses the variant's target and reports its geometry", () => {
  const tree = new FewShotRun({ prompt: 4000, branches: 50, generated: 400 }).snapshot(200);
  const s = MODEL_SHAPES["llama3-8b"]!;
  const ix = new IndexedTree(tree);
  const input = {
    ix,
    layout: kvLayout(ix, "shuffled", 1),
    shape: s,
    dtype: "f16" as const,
    options: DEFAULT_METHOD_OPTIONS,
  };
  const variant = (sequence: SequenceParams) =>
    planSequence({ ...input, options: { ...DEFAULT_METHOD_OPTIONS, sequence } });
  const small = variant({ targetWorkgroups: 400, threads: 256 });
  const big = variant({ targetWorkgroups: 4000 });
  assert(small.workgroups < big.workgroups);
  assertEquals(small.stats.workgroupSize, 256);
  assertEquals(small.variant.threads, 256);
  assertEquals(big.dispatches[0]!.workgroupSize, 128);
  // Padded work is never executed: the kernel skips keys past the chunk end.
  assertEquals(
    big.counts.flops - 2 * big.lists.entries.length * s.qHeads * s.headDim,
    4 * s.headDim * s.qHeads * treeFacts(ix).pathTokens,
  );
});

Deno.test("every kernel variant compiles a kernel of its own at the reduced matrix's shape", () => {
  for (const dtype of ["f32", "f16"] as const) {
    const sources = VARIANTS.map((o) =>
      sequenceShader(
        VARIANT_STAND_IN,
        dtype,
        sequenceTiling(VARIANT_STAND_IN, dtype, sequenceVariantOf(o)),
      )
    );
    assertEquals(new Set(sources).size, VARIANTS.length, dtype);
  }
});

Deno.test("sequenceShader() leaves no marked loop and no unspecialised constant", () => {
  for (const overrides of VARIANTS) {
    const variant = sequenceVariantOf(overrides);
    for (const s of [MODEL_SHAPES["llama3-8b"]!, shape(6, 2, 36), shape(16, 2, 256)]) {
      const src = sequenceShader(s, "f16", sequenceTiling(s, "f16", variant));
      assert(!/\{\s*\/\/ unroll\s*$/m.test(src));
      assert(src.startsWith("enable f16;"));
      assert(src.includes(`const D4: u32 = ${s.headDim / 4}u;`));
    }
  }
});

// Geometry corners the shared matrix does not reach: one chunk per query (direct output), GQA
// groups that are not a power of two, two head blocks per KV head (group 16), head dim 256 with
// group 8 (Q in workgroup memory, two P·V key groups), chunks of many blocks, and a tiny head dim
// (2 lanes per key, 64 P·V key groups of one key each). The reduced matrix (software adapters)
// keeps direct output, except through OpenGL (see CHECK_VARIANTS).
const corners: ConformanceCase[] = [];
for (const dtype of ["f32", "f16"] as const) {
  corners.push(
    {
      name: `direct output ${dtype}`,
      tree: internalQueriesTree,
      shape: GQA4,
      dtype,
      options: { targetWorkgroups: 1 },
      // A kernel of its own: in the reduced matrix only where kernel variants are checked.
      reduced: CHECK_VARIANTS,
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
      name: `head dim 256, GQA group 8, chunks of many blocks ${dtype}`,
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
conformanceSuite(sequence, corners);

// Every knob of the kernel on trees with split and direct chunks, blocks crossing node boundaries
// and partial last blocks, for head dims that L divides and does not, and head blocks. Each
// variant compiles its own shaders, up to a minute each on a CPU (Mesa's llvmpipe through OpenGL):
// the reduced matrix (software adapters) checks every variant on the speculative tree with the
// small shape {@linkcode VARIANT_STAND_IN} (a third of the compile time of head dim 128; each
// variant still compiles a kernel of its own there, see the test above), in one dtype, f16 where
// the adapter has it.
const speculative32 = () =>
  new SpeculativeRun({ prefix: 250, treeTokens: 32, steps: 4, seed: 1, topology: "medusa" })
    .snapshot(2);
for (const overrides of VARIANTS.slice(1)) {
  const cases: ConformanceCase[] = [];
  for (const dtype of ["f32", "f16"] as const) {
    cases.push({
      name: `speculative (prefix 250, Medusa tree of 32) ${dtype}`,
      tree: speculative32,
      shape: GQA4,
      dtype,
    });
  }
  const small = HAS_F16 ? "f16" : "f32";
  cases.push({
    name: `speculative (prefix 250, Medusa tree of 32), shape ${VARIANT_STAND_IN.name} ${small}`,
    tree: speculative32,
    shape: VARIANT_STAND_IN,
    dtype: small,
    reduced: "only",
  });
  cases.push(
    {
      name: "reasoning, GQA group 8, direct output f32",
      tree: () =>
        new ReasoningRun({
          prompt: 200,
          depth: 3,
          width: 4,
          thoughtMin: 20,
          thoughtMax: 70,
          seed: 3,
        })
          .snapshot(75),
      shape: shape(8, 1, 128),
      dtype: "f32",
      options: { targetWorkgroups: 1 },
    },
    {
      name: "head dim 36, GQA group 3 f16",
      tree: () => starTree(150, 4, 30),
      shape: shape(6, 2, 36),
      dtype: "f16",
    },
  );
  conformanceSuite(
    sequence,
    cases.map((c) => ({ ...c, options: { ...c.options, sequence: overrides } })),
    `sequence ${JSON.stringify(overrides)}`,
    { variant: true, ...(overrides.design === "lanes" ? { subgroupLanes: overrides.lanes } : {}) },
  );
}

// Logits that keep growing along the path move the running maximum by more than the kernel's
// threshold in later blocks (its rarely taken rescaling path), and push early keys to underflow.
// The reduced matrix (software adapters) checks the default kernel, on the shape of the shared
// matrix (whose shaders are compiled already).
for (
  const overrides of [
    {},
    { prefetchV: 1 },
    {
      threads: 128,
      qPlacement: "workgroup",
    },
    { design: "lanes", lanes: 8 },
    { design: "lanes", lanes: 8, scatter: 1 },
  ] as SequenceParams[]
) {
  for (const dtype of ["f32", "f16"] as const) {
    if (!inMatrix({ reduced: Object.keys(overrides).length === 0 })) continue;
    Deno.test({
      name: `sequence ${
        JSON.stringify(overrides)
      } rescales when late logits grow past the running max ${dtype}`,
      ignore: skipDtype(dtype) ||
        (overrides.design === "lanes" && subgroupsBelow(overrides.lanes ?? 16)),
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const gpu = await testGpu();
        const s = FULL_CONFORMANCE ? shape(8, 2, 64) : GQA4;
        const problem = Problem.create(gpu, starTree(1500, 3, 40), { shape: s, dtype, seed: 99 });
        try {
          growKeysAlongPaths(problem, 1500); // the 1500-token root is shared
          for (const targetWorkgroups of [1, 0]) {
            const { output } = await runMethod(problem, sequence, {
              targetWorkgroups,
              sequence: overrides,
            });
            const r = verify(output, referenceOf(problem), s, dtype);
            assert(r.passed, verdictProblems(r).join(", "));
          }
        } finally {
          problem.destroy();
        }
      },
    });
  }
}

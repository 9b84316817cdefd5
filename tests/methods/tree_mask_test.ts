import { FewShotRun } from "../../workloads/few_shot.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import type { Dtype, ModelShape } from "../../workloads/shapes.ts";
import { IndexedTree, type Tree, treeFacts } from "../../workloads/tree.ts";
import { GpuError } from "../../kernels/gpu.ts";
import { kvLayout } from "../../kernels/layout.ts";
import {
  DEFAULT_METHOD_OPTIONS,
  type KernelCaps,
  type MethodOptions,
} from "../../kernels/method.ts";
import { getMethod } from "../../kernels/methods/mod.ts";
import { WgslError } from "../../kernels/wgsl.ts";
import {
  MAX_INTERMEDIATE_BYTES,
  MIN_SPLIT_TOKENS,
  pvTile,
  qkTile,
  sliceDepth,
  specializeKernel,
  TILE_STORAGE_BUDGET,
  treeMask,
  type TreeMaskPlan,
  visiblePairs,
} from "../../kernels/methods/tree_mask.ts";
import {
  mmaGemmBytes,
  treeMaskMma,
  treeMaskMmaName,
  treeMaskPvSource,
  treeMaskQkSource,
} from "../../kernels/tree_mask_mma.ts";
import {
  conformanceSuite,
  GQA4,
  internalQueriesTree,
  shape,
  starTree,
  testGpu,
} from "../_conformance.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "../_assert.ts";

function plan(
  tree: Tree,
  shape: ModelShape = GQA4,
  dtype: Dtype = "f16",
  options: Partial<MethodOptions> = {},
  caps?: KernelCaps,
): TreeMaskPlan {
  const ix = new IndexedTree(tree);
  return treeMask.plan({
    ix,
    layout: kvLayout(ix, "shuffled", 7),
    shape,
    dtype,
    options: { ...DEFAULT_METHOD_OPTIONS, ...options },
    ...(caps ? { caps } : {}),
  });
}

/** A device with f16 subgroup matrices of m x n x k and subgroups of `sg` (an H200 under Dawn). */
function matrixCaps(m = 16, n = 16, k = 16, sg = 32): KernelCaps {
  return {
    runtime: "dawn",
    matrix: { componentType: "f16", resultComponentType: "f32", M: m, N: n, K: k },
    subgroups: true,
    subgroupSize: sg,
    workgroupStorage: 49152,
  };
}

Deno.test("treeMask is registered as tree-mask", () => {
  assertStrictEquals(getMethod("tree-mask"), treeMask);
});

Deno.test("treeMask.plan() builds a mask whose visible pairs sum to ΣN_i", () => {
  for (
    const tree of [
      internalQueriesTree(),
      starTree(50, 9, 4),
      new FewShotRun({ prompt: 120, branches: 6, generated: 30 }).snapshot(11),
      new SpeculativeRun({ prefix: 70, treeTokens: 32, steps: 2, seed: 4, topology: "medusa" })
        .snapshot(1),
    ]
  ) {
    for (const dtype of ["f16", "f32"] as const) {
      const p = plan(tree, GQA4, dtype);
      const facts = treeFacts(tree);
      assertEquals(p.rowStride, Math.ceil(facts.treeTokens / 4) * 4);
      assertEquals(p.maskBits.length, facts.queries * p.rowStride);
      assertEquals(visiblePairs(p.maskBits), facts.pathTokens);
      assertEquals(p.stats.pathTokens, facts.pathTokens);
      // Every other entry is -inf in the storage dtype.
      const negInf = dtype === "f16" ? 0xfc00 : 0xff800000;
      assertEquals(
        p.maskBits.filter((x) => x !== 0 && x !== negInf).length,
        0,
      );
    }
  }
});

Deno.test("treeMask.plan() gathers every tree token once, nodes in DFS order", () => {
  const tree = internalQueriesTree();
  const ix = new IndexedTree(tree);
  const layout = kvLayout(ix, "shuffled", 3);
  const p = treeMask.plan({
    ix,
    layout,
    shape: GQA4,
    dtype: "f32",
    options: DEFAULT_METHOD_OPTIONS,
  });
  const expected: number[] = [];
  for (const v of ix.dfsOrder) {
    for (let t = 0; t < ix.tokens(v); t++) expected.push(layout.slotStart[v]! + t);
  }
  assertEquals([...p.tokenSlot], expected);
  // Query on node 7 (1 token, DFS after the 10 -> 3 -> {1, 2} subtree) sees root + itself.
  const q = tree.queries.findIndex((x) => x.node === 7);
  const row = [...p.maskBits.subarray(q * p.rowStride, (q + 1) * p.rowStride)];
  const visible = row.flatMap((x, j) => (x === 0 ? [j] : []));
  const start7 = 150 + 40 + 90 + 5;
  assertEquals(visible, [...Array.from({ length: 150 }, (_, j) => j), start7]);
});

Deno.test("treeMask.plan() reports the paper's Table 12 IO", () => {
  const tree = new FewShotRun({ prompt: 400, branches: 20, generated: 40 }).snapshot(20);
  const facts = treeFacts(tree);
  for (const dtype of ["f16", "f32"] as const) {
    const p = plan(tree, GQA4, dtype);
    const b = (dtype === "f16" ? 2 : 4) * GQA4.qHeads;
    const n = facts.treeTokens, ln = facts.queries, d = GQA4.headDim;
    assertEquals(p.counts.paper.kvBytes, 2 * d * n * b);
    assertEquals(p.counts.paper.maskBytes, ln * n * b);
    assertEquals(p.counts.paper.partialBytes, 8 * ln * n * b);
    assertEquals(p.counts.paper.totalBytes, (2 * d * n + 9 * ln * n) * b);
    assertEquals(p.counts.usefulFlops, 4 * d * facts.pathTokens * GQA4.qHeads);
    assertEquals(p.stats.intermediateElements, GQA4.qHeads * ln * Math.ceil(n / 4) * 4);
    // Executed work covers at least the dense products, and the real IO at least the paper's PA IO.
    assert(p.counts.flops >= 4 * d * GQA4.qHeads * ln * n);
    assert(p.counts.real.logitsBytes >= p.counts.paper.partialBytes);
    const r = p.counts.real;
    assertEquals(
      r.totalBytes,
      r.kvBytes + r.qBytes + r.maskBytes + r.metadataBytes + r.partialBytes + r.logitsBytes +
        r.outputBytes,
    );
  }
});

Deno.test("treeMask.plan() lists its unfused dispatches within the per-dimension limit", () => {
  const short = plan(starTree(100, 30, 5));
  assertEquals(short.dispatches.map((x) => x.kernel), [
    "tree-mask qk",
    "tree-mask scale",
    "tree-mask add-mask",
    "tree-mask softmax",
    "tree-mask pv",
  ]);
  assertEquals(short.splits, 1);
  // A long tree splits step 5 over its tokens and sums the partials.
  const long = plan(starTree(32 * MIN_SPLIT_TOKENS, 2, 1), {
    name: "4/1/64",
    qHeads: 4,
    kvHeads: 1,
    headDim: 64,
    layers: 1,
  });
  assert(long.splits > 1);
  assert(long.splits * long.splitTokens >= long.treeTokens);
  assert((long.splits - 1) * long.splitTokens < long.treeTokens);
  assertEquals(long.dispatches.at(-1)!.kernel, "tree-mask split-sum");
  assert(long.counts.real.partialBytes > 0);
  // Many rows: the softmax grid (qHeads x queries rows) folds over 65535.
  const wide = plan(starTree(4, 9000, 1), { ...GQA4, qHeads: 8, kvHeads: 8 }, "f16");
  for (const d of wide.dispatches) {
    for (const g of d.workgroups) assert(g >= 1 && g <= 65535, `${d.kernel} grid ${d.workgroups}`);
  }
  const softmax = wide.dispatches[3]!.workgroups;
  assert(softmax[0] * softmax[1] >= 8 * 9000);
});

Deno.test("treeMask.plan() rejects intermediates no device can bind", () => {
  const shape: ModelShape = { name: "256/1/128", qHeads: 256, kvHeads: 1, headDim: 128, layers: 1 };
  assertThrows(
    () => plan(starTree(600_000, 40, 1), shape, "f32"),
    RangeError,
    /maxStorageBufferBindingSize/,
  );
});

Deno.test({
  name: "treeMask.prepare() rejects a tree too large for maxStorageBufferBindingSize",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await testGpu();
    const limit = gpu.limit("maxStorageBufferBindingSize");
    const shape: ModelShape = { name: "256/1/64", qHeads: 256, kvHeads: 1, headDim: 64, layers: 1 };
    // qHeads x queries x N_tree x 4 bytes just over the device's limit (and under 4 GiB).
    const queries = 64;
    const tokens = Math.floor(limit / (256 * queries * 4)) + 1;
    const tree = starTree(tokens, queries, 1);
    if (256 * queries * (tokens + queries) * 4 > MAX_INTERMEDIATE_BYTES) {
      // A device that binds 4 GiB: the planner already rejects what it cannot bind.
      assertThrows(() => plan(tree, shape, "f32"), RangeError, /maxStorageBufferBindingSize/);
      return;
    }
    const p = plan(tree, shape, "f32");
    const dummy = gpu.buffer("dummy", 16);
    try {
      await assertRejects(
        () => treeMask.prepare(gpu, p, { q: dummy, k: dummy, v: dummy, out: dummy }),
        GpuError,
        /maxStorageBufferBindingSize/,
      );
    } finally {
      dummy.destroy();
    }
  },
});

Deno.test("qkTile() and pvTile() fit the workgroup-memory budget for every row count", () => {
  for (const rows of [1, 4, 16, 17, 32, 33, 64, 65, 1000, 65536]) {
    for (const tile of [qkTile(rows), pvTile(rows, 64), pvTile(rows, 128), pvTile(rows, 256)]) {
      assert(tile.bk >= 4 && tile.bk % 4 === 0, `slice depth ${tile.bk}`);
      assertEquals(tile.tx * tile.ty, 256);
      assert(tile.tm === 4 || tile.tm === 8);
    }
    assert(sliceDepth(qkTile(rows), "qk", TILE_STORAGE_BUDGET) === qkTile(rows).bk);
  }
  // A device with 16 KiB still fits every tile, at a shallower depth.
  assert(sliceDepth(qkTile(1000), "qk", 16384) >= 4);
  assert(sliceDepth(pvTile(1000, 256), "pv", 16384) >= 4);
});

Deno.test("specializeKernel() rewrites the storage dtype and tile constants", () => {
  const src = "alias ST = f32;\nconst TM: u32 = 4u;\nconst BK: u32 = 16u;\n";
  assertEquals(
    specializeKernel(src, "f16", { TM: 8, BK: 32 }),
    "enable f16;\nalias ST = f16;\nconst TM: u32 = 8u;\nconst BK: u32 = 32u;\n",
  );
  assertEquals(specializeKernel(src, "f32"), src);
  assertThrows(() => specializeKernel(src, "f32", { NOPE: 1 }), WgslError, /NOPE/);
});

Deno.test("treeMask.plan() runs its GEMMs on matrix units where the device and shape allow", () => {
  const tree = starTree(300, 20, 7);
  const caps = matrixCaps();
  const auto = plan(tree, GQA4, "f16", {}, caps);
  assert(auto.mma !== null);
  assertEquals(auto.kernelVariant, `${treeMaskMmaName(auto.mma!)}-unfused`);
  assertEquals(auto.stats.matrixUnits, 1);
  // Both GEMM dispatches run four subgroups; the elementwise steps keep their 256 threads.
  assertEquals(auto.dispatches[0]!.workgroupSize, 128);
  assertEquals(auto.dispatches[4]!.workgroupSize, 128);
  assertEquals(auto.dispatches[1]!.workgroupSize, 256);
  // 80 rows per KV head (20 queries x 4 heads) in 64-row step-1 tiles of 64 tokens.
  assertEquals(auto.dispatches[0]!.workgroups[0], 2 * 2 * Math.ceil(440 / 64));
  for (
    const [dtype, options, why] of [
      ["f16", { kernel: "fma" }, "kernel fma"],
      ["f32", {}, "f32 storage"],
    ] as const
  ) {
    const p = plan(tree, GQA4, dtype, options, caps);
    assertEquals(p.mma, null, why);
    assertEquals(p.kernelVariant, "fma-unfused-gemms");
  }
  assertEquals(plan(tree, GQA4, "f16").mma, null, "no device facts");
  // A head dim the fragments do not divide falls back under auto, and is refused under mma.
  assertEquals(plan(tree, shape(8, 2, 40), "f16", {}, caps).mma, null);
  assertThrows(
    () => plan(tree, shape(8, 2, 40), "f16", { kernel: "mma" }, caps),
    RangeError,
    /multiple of 16, got 40/,
  );
  assertThrows(() => plan(tree, GQA4, "f32", { kernel: "mma" }, caps), RangeError, /f16 storage/);
  assertThrows(
    () => plan(tree, GQA4, "f16", { kernel: "mma" }),
    RangeError,
    /f16 subgroup matrices/,
  );
  assertThrows(
    () => plan(tree, GQA4, "f16", { kernel: "mma" }, { ...caps, subgroupSize: 0 }),
    RangeError,
    /fixed subgroup size/,
  );
});

Deno.test("treeMaskMma() tiles cover the rows and the head dim within the workgroup memory", () => {
  for (
    const [caps, d] of [[matrixCaps(), 128], [matrixCaps(), 64], [
      matrixCaps(8, 8, 8, 8),
      128,
    ]] as const
  ) {
    const { M, N } = caps.matrix!;
    for (const rows of [1, 4, M, M + 1, 2 * M, 2 * M + 1, 64, 1000]) {
      const t = treeMaskMma(shape(8, 2, d), caps, rows);
      assertEquals(t.threads, 4 * caps.subgroupSize);
      for (const g of [t.qk, t.pv]) {
        assertEquals(g.sr * g.sc, 4);
        assertEquals(g.bm, g.sr * g.fm * M);
        assertEquals(g.bn, g.sc * g.fn * N);
      }
      // Few rows: one row block no larger than needed; many: 2 x 2 fragments in 2 x 2 subgroups.
      assertEquals(t.qk.bm, rows <= M ? M : rows <= 2 * M ? 2 * M : 4 * M);
      assertEquals(t.qk.bk, 32);
      assertEquals(treeMaskMma(shape(8, 2, 3 * M), caps, rows).qk.bk, M === 16 ? 16 : 8, "d = 3M");
      // Step 5 never tiles past the head dim, and its column tiles cover it exactly.
      assert(t.pv.bn <= d && d % t.pv.bn === 0, `pv columns ${t.pv.bn} for d = ${d}`);
      for (const step of ["qk", "pv"] as const) {
        assert(mmaGemmBytes(t, step) <= 20 * 1024, `${step} ${mmaGemmBytes(t, step)} bytes`);
      }
    }
  }
});

Deno.test("treeMaskQkSource() and treeMaskPvSource() unroll one product per fragment and slice", () => {
  const count = (s: string, x: string) => s.split(x).length - 1;
  for (const rows of [4, 256]) {
    const mma = treeMaskMma(GQA4, matrixCaps(), rows);
    const o = { shape: GQA4, mma, enables: "" };
    const qk = treeMaskQkSource(o);
    const pv = treeMaskPvSource(o);
    assertEquals(count(qk, "subgroupMatrixMultiplyAccumulate("), 2 * mma.qk.fm * mma.qk.fn);
    assertEquals(count(pv, "subgroupMatrixMultiplyAccumulate("), 2 * mma.pv.fm * mma.pv.fn);
    // Every result fragment leaves once, through its subgroup's staging.
    assertEquals(count(qk, "subgroupMatrixStore<row_major>(&o_sh"), mma.qk.fm * mma.qk.fn);
    assertEquals(count(pv, "subgroupMatrixStore<row_major>(&o_sh"), mma.pv.fm * mma.pv.fn);
    assert(
      qk.includes(`const BM: u32 = ${mma.qk.bm}u;`) &&
        pv.includes(`const BN: u32 = ${mma.pv.bn}u;`),
    );
    assert(
      qk.includes("vec4<f16>(vec4<f32>(o_sh[b]"),
      "S is rounded to f16 after f32 accumulation",
    );
  }
});

// Head dims the matrix tiles divide unevenly, with every kernel family the device runs: 48 (16-deep
// step-1 slices; three 16-wide fragments, so step 5 has two 32-column tiles, one half empty) and 80
// (five 16-wide or ten 8-wide fragments: a 64-column step-5 tile and a partial one on both kinds of
// device). Both are multiples of 16, so every matrix configuration takes them.
conformanceSuite(treeMask, [
  {
    name: "head dim 48, few-shot f16",
    tree: () => new FewShotRun({ prompt: 150, branches: 7, generated: 20 }).snapshot(9),
    shape: shape(8, 2, 48),
    dtype: "f16",
    reduced: true,
  },
  {
    name: "head dim 80, star f16",
    tree: () => starTree(200, 9, 5),
    shape: shape(8, 2, 80),
    dtype: "f16",
    reduced: true,
  },
]);

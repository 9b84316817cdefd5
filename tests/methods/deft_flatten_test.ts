import { FewShotRun } from "../../workloads/few_shot.ts";
import { ReasoningRun } from "../../workloads/reasoning.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import type { ModelShape } from "../../workloads/shapes.ts";
import { IndexedTree, type Tree } from "../../workloads/tree.ts";
import {
  FMA_ABLATIONS,
  fmaVariantName,
  GROUP_ROWS,
  groupAttentionSource,
  groupKernel,
  groupKernelConfig,
  type GroupKernelOptions,
  groupWorkgroupBytes,
  knockOutFma,
} from "../../kernels/group_attention.ts";
import { GpuError } from "../../kernels/gpu.ts";
import {
  MMA_ABLATIONS,
  mmaKernel,
  type MmaKernelOptions,
  mmaSource,
  mmaVariantName,
  mmaWorkgroupBytes,
} from "../../kernels/group_attention_mma.ts";
import { kvLayout } from "../../kernels/layout.ts";
import {
  DEFAULT_METHOD_OPTIONS,
  type KernelCaps,
  kernelCaps,
  type MethodOptions,
  type PlanInput,
} from "../../kernels/method.ts";
import {
  deftFlatten,
  type DeftFlattenPlan,
  flattenAttendedSlots,
  flattenBlocks,
  privateSuffixes,
  residentTiles,
  WAVE_MARGIN,
  waveCost,
} from "../../kernels/methods/deft_flatten.ts";
import { reductionIo } from "../../kernels/reduce.ts";
import { getPreset } from "../../workloads/presets.ts";
import { getMethod } from "../../kernels/methods/mod.ts";
import { Problem, runMethod } from "../../kernels/problem.ts";
import { querySlots } from "../../kernels/reference.ts";
import { referenceOf, verdictProblems, verify } from "../../kernels/verify.ts";
import {
  CHECK_VARIANTS,
  type ConformanceCase,
  conformanceSuite,
  expectConformant,
  GQA4,
  growKeysAlongPaths,
  HAS_F16,
  HAS_MATRIX,
  HEAVY_CASES,
  inMatrix,
  internalQueriesTree,
  skipDtype,
  SOFTWARE_ADAPTER,
  starTree,
  testGpu,
} from "../_conformance.ts";
import { assert, assertEquals, assertStrictEquals, assertThrows } from "../_assert.ts";
import { pick, propertySeed, randomTree, withSeed } from "../_arbitrary.ts";
import { levelGridTree, parseGridSpec } from "../../workloads/level_grid.ts";

const LLAMA3_8B: ModelShape = {
  name: "llama3-8b",
  qHeads: 32,
  kvHeads: 8,
  headDim: 128,
  layers: 32,
};

/** One layer of Llama-3-8B, for plans and kernel sources on matrix units. */
const LLAMA_LAYER: ModelShape = { ...LLAMA3_8B, layers: 1 };

/** What an H200 offers the matrix kernel through Dawn (16 x 16 x 16 f16 -> f32, subgroups of 32). */
const H200_MMA_CAPS: KernelCaps = {
  runtime: "dawn",
  matrix: { componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 },
  subgroups: true,
  subgroupSize: 32,
  workgroupStorage: 49152,
};

function input(tree: Tree, options: Partial<MethodOptions> = {}, shape = GQA4): PlanInput {
  const ix = new IndexedTree(tree);
  return {
    ix,
    layout: kvLayout(ix, "shuffled", 7),
    shape,
    dtype: "f16",
    options: { ...DEFAULT_METHOD_OPTIONS, ...options },
  };
}

const reasoning = () =>
  new ReasoningRun({ prompt: 200, depth: 3, width: 4, thoughtMin: 20, thoughtMax: 70, seed: 3 })
    .snapshot(75);
const speculative = (prefix: number, t: number) =>
  new SpeculativeRun({ prefix, treeTokens: t, steps: 1, seed: 2, topology: "medusa" }).snapshot(0);

Deno.test("flattenBlocks() concatenates node KV in DFS order and cuts equal blocks", () => {
  for (const tree of [internalQueriesTree(), reasoning(), speculative(60, 100)]) {
    const { ix, layout } = input(tree);
    const { groups, segNode } = flattenBlocks(ix, layout, 32);
    const walk: number[] = [];
    for (const v of segNode) if (walk.at(-1) !== v) walk.push(v);
    assertEquals(walk, Array.from(ix.dfsOrder));
    let total = 0;
    for (let v = 0; v < ix.nodeCount; v++) total += ix.tokens(v);
    assertStrictEquals(groups.count, Math.ceil(total / 32));
    for (let g = 0; g < groups.count - 1; g++) assertStrictEquals(groups.tokens[g], 32);
    assertStrictEquals(groups.tokens[groups.count - 1], total - 32 * (groups.count - 1));
    // Pieces of one node follow each other in token order.
    const next = new Map<number, number>();
    for (let s = 0; s < segNode.length; s++) {
      const v = segNode[s]!;
      assertStrictEquals(groups.segSlot[s], next.get(v) ?? layout.slotStart[v]);
      const g = groups.segOffset.findLastIndex((o, i) => i < groups.count && o <= s);
      const end = s + 1 < groups.segOffset[g + 1]!
        ? groups.segTokenStart[s + 1]!
        : groups.tokens[g]!;
      next.set(v, groups.segSlot[s]! + end - groups.segTokenStart[s]!);
    }
  }
});

Deno.test("flattenBlocks() puts every KV token in exactly one block", () => {
  const { ix, layout } = input(reasoning());
  const { groups } = flattenBlocks(ix, layout, 128);
  const seen = new Map<number, number>();
  for (let g = 0; g < groups.count; g++) {
    const s1 = groups.segOffset[g + 1]!;
    for (let s = groups.segOffset[g]!; s < s1; s++) {
      const len = (s + 1 < s1 ? groups.segTokenStart[s + 1]! : groups.tokens[g]!) -
        groups.segTokenStart[s]!;
      for (let t = 0; t < len; t++) {
        const slot = groups.segSlot[s]! + t;
        seen.set(slot, (seen.get(slot) ?? 0) + 1);
      }
    }
  }
  let expected = 0;
  for (let v = 0; v < ix.nodeCount; v++) {
    for (let t = 0; t < ix.tokens(v); t++) {
      assertStrictEquals(seen.get(layout.slotStart[v]! + t), 1);
      expected++;
    }
  }
  assertStrictEquals(seen.size, expected);
});

Deno.test("flattenBlocks() sets a mask bit iff the query's path contains the token's node", () => {
  let fullBlocks = 0;
  for (
    const [tree, block] of [
      [reasoning(), 128],
      [speculative(60, 100), 64],
      [speculative(300, 40), 64],
    ] as const
  ) {
    const { ix, layout } = input(tree);
    const { groups, segNode } = flattenBlocks(ix, layout, block);
    const paths = Array.from({ length: ix.queryCount }, (_, q) => new Set(ix.queryPath(q)));
    for (let g = 0; g < groups.count; g++) {
      const tokens = groups.tokens[g]!;
      const q0 = groups.queryOffset[g]!;
      const nq = groups.queryOffset[g + 1]! - q0;
      const s1 = groups.segOffset[g + 1]!;
      // No mask exactly where every query of the block sees every node of it.
      let full = true;
      for (let s = groups.segOffset[g]!; s < s1; s++) {
        for (let i = 0; i < nq; i++) full &&= paths[groups.queries[q0 + i]!]!.has(segNode[s]!);
      }
      if (full) {
        fullBlocks++;
        assertStrictEquals(groups.maskWords[g], 0, `block ${g} needs no mask`);
        continue;
      }
      assertStrictEquals(groups.maskWords[g], Math.ceil(nq / 32));
      for (let s = groups.segOffset[g]!; s < s1; s++) {
        const t1 = s + 1 < s1 ? groups.segTokenStart[s + 1]! : tokens;
        for (let t = groups.segTokenStart[s]!; t < t1; t++) {
          for (let i = 0; i < 32 * groups.maskWords[g]!; i++) {
            const word = groups.mask[groups.maskOffset[g]! + (i >>> 5) * tokens + t]!;
            const bit = (word >>> (i & 31)) & 1;
            const expected = i < nq && paths[groups.queries[q0 + i]!]!.has(segNode[s]!);
            assertStrictEquals(bit, expected ? 1 : 0, `block ${g} token ${t} query bit ${i}`);
          }
        }
      }
    }
  }
  // The 300-token prefix fills 4 blocks of 64 that all 40 queries see.
  assert(fullBlocks >= 4, `${fullBlocks} blocks without a mask`);
});

Deno.test("deft-flatten keeps more than 32 and more than 64 queries in one block", () => {
  for (const t of [40, 100]) {
    const p = deftFlatten.plan(input(speculative(60, t)));
    let tokens = 60 + t;
    assertStrictEquals(p.stats.blocks, Math.ceil(tokens / 128));
    // The first block holds the prefix, seen by every query.
    assertStrictEquals(p.groups.queryOffset[1]! - p.groups.queryOffset[0]!, t);
    assertStrictEquals(p.groups.maskWords[0], Math.ceil(t / 32));
    assertStrictEquals(p.stats.maskWordsPerToken, Math.ceil(t / 32));
    // Row tiles of 64 rows (query x q-head of one KV head), each a work item.
    assertStrictEquals(p.stats.maxQueriesPerGroup, t);
    tokens = 0;
    for (let i = 0; i < p.items.length; i += 2) if (p.items[i] === 0) tokens++;
    assertStrictEquals(tokens, Math.ceil((t * 4) / GROUP_ROWS));
  }
});

/** Every query of `plan` attends exactly the KV slots of its path, each once (`note` ends messages). */
function expectPathsAttended(inp: PlanInput, plan: DeftFlattenPlan, note = ""): void {
  for (let q = 0; q < inp.ix.queryCount; q++) {
    const got = flattenAttendedSlots(plan, q).sort((a, b) => a - b);
    const want = Array.from(querySlots(inp.ix, inp.layout, q)).sort((a, b) => a - b);
    assertEquals(got, want, `query ${q}${note}`);
  }
}

Deno.test("deft-flatten attends every query to exactly the KV of its path", () => {
  for (
    const tree of [internalQueriesTree(), reasoning(), speculative(60, 100), starTree(90, 40, 7)]
  ) {
    const inp = input(tree, { blockSize: 32 });
    expectPathsAttended(inp, deftFlatten.plan(inp));
  }
});

Deno.test("deft-flatten paper IO equals the Table 12 formulas (2d N_tree KV, N_tree mask)", () => {
  const inp = input(reasoning());
  const p = deftFlatten.plan(inp);
  let n = 0;
  for (let v = 0; v < inp.ix.nodeCount; v++) n += inp.ix.tokens(v);
  const perElement = GQA4.qHeads * 2;
  assertStrictEquals(p.counts.paper.kvBytes, 2 * GQA4.headDim * n * perElement);
  assertStrictEquals(p.counts.paper.maskBytes, n * perElement);
  assertStrictEquals(p.counts.paper.partialBytes, 0);
  assertStrictEquals(p.counts.paper.totalBytes, (2 * GQA4.headDim + 1) * n * perElement);
});

Deno.test("deft-flatten real IO loads a block's KV once per row tile and KV head", () => {
  const inp = input(speculative(60, 100));
  const p = deftFlatten.plan(inp);
  let kv = 0, tokens = 0, total = 0;
  for (let g = 0; g < p.groups.count; g++) {
    const nq = p.groups.queryOffset[g + 1]! - p.groups.queryOffset[g]!;
    const tiles = Math.ceil((nq * 4) / GROUP_ROWS);
    kv += tiles * p.groups.tokens[g]! * 2 * GQA4.headDim * GQA4.kvHeads * 2;
    tokens += tiles * p.groups.tokens[g]!;
    total += p.groups.tokens[g]!;
  }
  assertStrictEquals(p.counts.real.kvBytes, kv);
  assertStrictEquals(p.stats.kvLoadsPerToken, tokens / total);
  assert(p.counts.real.maskBytes > 0);
  assert(p.counts.flops >= p.counts.usefulFlops);
  const r = p.counts.real;
  assertStrictEquals(
    r.totalBytes,
    r.kvBytes + r.qBytes + r.maskBytes + r.metadataBytes + r.partialBytes + r.outputBytes,
  );
});

Deno.test("deft-flatten folds grids over 65535 workgroups", () => {
  const p = deftFlatten.plan(input(speculative(20000, 256), { blockSize: 16 }, LLAMA3_8B));
  const [x, y, z] = p.dispatches[0]!.workgroups;
  assert(p.stats.workgroups! > 65535);
  assert(x <= 65535 && y <= 65535 && z === 1);
  assert(x * y >= p.stats.workgroups!);
});

Deno.test("deft-flatten rejects a blockSize that is not a positive integer", () => {
  for (const blockSize of [0, -4, 1.5, NaN]) {
    assertThrows(
      () => deftFlatten.plan(input(starTree(10, 2, 1), { blockSize })),
      RangeError,
      /blockSize/,
    );
  }
});

Deno.test("deft-flatten is registered as deft-flatten", () => {
  assertStrictEquals(getMethod("deft-flatten"), deftFlatten);
});

// Shapes the shared matrix does not cover: MHA with 130 queries in a block (row tiles spanning mask
// words 0-1, 2-3 and 4), a GQA group of 3, head dims 36 (not a multiple of 32) and 256. Not in the
// reduced matrix (software adapters): each shape compiles its own shaders, seconds each on a CPU.
const extra: ConformanceCase[] = [
  {
    name: "MHA, 130 queries in one block",
    tree: () => starTree(100, 130, 2),
    shape: { name: "4/4/64", qHeads: 4, kvHeads: 4, headDim: 64, layers: 1 },
    dtype: "f32",
  },
  {
    name: "GQA group 3, head dim 36",
    tree: () => speculative(70, 40),
    shape: { name: "6/2/36", qHeads: 6, kvHeads: 2, headDim: 36, layers: 1 },
    dtype: "f32",
  },
  {
    name: "head dim 256",
    tree: () => starTree(150, 20, 9),
    shape: { name: "4/2/256", qHeads: 4, kvHeads: 2, headDim: 256, layers: 1 },
    dtype: "f16",
  },
];
conformanceSuite(deftFlatten, extra.map((c) => ({ ...c, name: `${c.name} ${c.dtype}` })));

Deno.test("options.fma re-tiles a plan: 128-row tiles read a 100-query block half as often", () => {
  const inp = input(speculative(60, 100));
  const base = deftFlatten.plan(inp);
  const wide = deftFlatten.plan(
    input(speculative(60, 100), { fma: { threads: 256, rows: 128, qResident: "none" } }),
  );
  assertEquals(wide.groups.queries, base.groups.queries);
  assertStrictEquals(wide.stats.blocks, base.stats.blocks);
  assertStrictEquals(wide.stats.rowsPerTile, 128);
  assertStrictEquals(wide.dispatches[0]!.workgroupSize, 256);
  // The first block holds 100 queries x 4 heads = 400 rows: 7 tiles of 64, 4 of 128.
  const tiles = (p: typeof base) => {
    let n = 0;
    for (let i = 0; i < p.items.length; i += 2) if (p.items[i] === 0) n++;
    return n;
  };
  assertStrictEquals(tiles(base), 7);
  assertStrictEquals(tiles(wide), 4);
  assert(wide.counts.real.kvBytes < base.counts.real.kvBytes);
  assertStrictEquals(wide.counts.usefulFlops, base.counts.usefulFlops);
  assertStrictEquals(wide.counts.paper.totalBytes, base.counts.paper.totalBytes);
});

Deno.test("group kernel Q IO: a resident Q is loaded once per row tile, a re-staged one per sub-tile", () => {
  const tree = starTree(300, 8, 4); // one block of 128 tokens per 4 sub-tiles of 32 keys
  const tile = { threads: 128, rows: 64, keys: 32 };
  const resident = deftFlatten.plan(input(tree, { fma: { ...tile, qResident: "auto" } }));
  const staged = deftFlatten.plan(input(tree, { fma: { ...tile, qResident: "none" } }));
  assertStrictEquals(resident.kernel.qType, "f16");
  assertStrictEquals(resident.stats.residentQBits, 16);
  assertStrictEquals(staged.kernel.qType, null);
  let once = 0, perTile = 0;
  for (let g = 0; g < resident.groups.count; g++) {
    const rows = 4 * (resident.groups.queryOffset[g + 1]! - resident.groups.queryOffset[g]!);
    once += rows;
    perTile += rows * Math.ceil(resident.groups.tokens[g]! / 32);
  }
  const perRow = GQA4.headDim * GQA4.kvHeads * 2;
  assertStrictEquals(resident.counts.real.qBytes, once * perRow);
  assertStrictEquals(staged.counts.real.qBytes, perTile * perRow);
  assertStrictEquals(staged.counts.real.kvBytes, resident.counts.real.kvBytes);
});

Deno.test("groupKernel() decides Q residency for a 32 KiB budget and rejects impossible tiles", () => {
  const auto = { threads: 128, rows: 64, keys: 32, qResident: "auto" } as const;
  // f16 storage stages K, V and P in f16 (changes 25 and 26); both re-stage Q by default.
  assertStrictEquals(groupKernel(GQA4, "f16").qType, null);
  assertStrictEquals(groupKernel(GQA4, "f16").kvHalf, true);
  assertStrictEquals(groupKernel(GQA4, "f16", { qResident: "f16" }).qType, "f16");
  assertStrictEquals(groupKernel(GQA4, "f32").qType, null);
  assertStrictEquals(groupKernel(GQA4, "f32").kvHalf, undefined);
  assertStrictEquals(groupKernel(GQA4, "f16", { qResident: "none" }).qType, null);
  assertStrictEquals(groupKernel(GQA4, "f16", auto).qType, "f16");
  assertStrictEquals(groupKernel(GQA4, "f32", auto).qType, null); // 64 rows x 128 dims of f32 = 32 KiB
  assertStrictEquals(groupKernel(GQA4, "f32", { qResident: "f32" }).qType, "f32");
  assertThrows(() => groupKernel(GQA4, "f32", { qResident: "f16" }), RangeError, /f16 storage/);
  assertThrows(() => groupKernel(GQA4, "f16", { threads: 96 }), RangeError, /threads/);
  assertThrows(() => groupKernel(GQA4, "f16", { rows: 48 }), RangeError, /rows/);
  assertThrows(() => groupKernel(GQA4, "f16", { keys: 48 }), RangeError, /keys/);
  const d256 = { ...GQA4, headDim: 256 };
  assertThrows(
    () => groupKernel(d256, "f16", { threads: 64, keys: 32 }),
    RangeError,
    /Head dim 256/,
  );
  // On an H200 (48 KiB) the resident-Q kernel runs whole K and V sub-tiles: 4 barriers each, in
  // 44,288 bytes with f32 staging and 31,744 with f16.
  const c = groupKernelConfig(
    LLAMA3_8B,
    "f16",
    groupKernel(LLAMA3_8B, "f16", { ...auto, kvHalf: 0 }),
    49152,
  );
  assertEquals([c.chunkV, c.vKeys, groupWorkgroupBytes(c)], [32, 32, 44288]);
  const h = groupKernelConfig(LLAMA3_8B, "f16", groupKernel(LLAMA3_8B, "f16", auto), 49152);
  assertEquals([h.chunkV, h.vKeys, groupWorkgroupBytes(h)], [32, 32, 31744]);
  // The 64-key tile: one K chunk and one V slice only with f16 staging; the f16 default (128
  // threads, 32 keys) in 23,552 bytes, two per 48 KiB.
  const t256 = { threads: 256, rows: 64, keys: 64, qResident: "f16" } as const;
  const d = groupKernelConfig(LLAMA3_8B, "f16", groupKernel(LLAMA3_8B, "f16", t256), 49152);
  assertEquals([d.chunkV, d.vKeys, groupWorkgroupBytes(d)], [32, 64, 46848]);
  const f = groupKernelConfig(
    LLAMA3_8B,
    "f16",
    groupKernel(LLAMA3_8B, "f16", { ...t256, qResident: "none", kvHalf: 0 }),
    49152,
  );
  assertEquals([f.chunkV, f.vKeys, groupWorkgroupBytes(f)], [8, 32, 46848]);
  const g = groupKernelConfig(LLAMA3_8B, "f16", groupKernel(LLAMA3_8B, "f16"), 49152);
  assertEquals([g.chunkV, g.vKeys, groupWorkgroupBytes(g)], [16, 32, 23552]);
  assertThrows(() => groupKernel(LLAMA3_8B, "f32", { kvHalf: 1 }), RangeError, /f16 storage/);
  assertThrows(() => groupKernel(LLAMA3_8B, "f16", { kvHalf: 2 }), RangeError, /kvHalf/);
  assertThrows(() => groupKernelConfig(LLAMA3_8B, "f16", c, 8192), GpuError, /workgroup memory/);
});

Deno.test("the FMA kernel's storage budget trades barriers for workgroups per SM", () => {
  const k = (o: Partial<GroupKernelOptions>) =>
    groupKernelConfig(LLAMA3_8B, "f16", groupKernel(LLAMA3_8B, "f16", o), 49152);
  // f32 staging with Q re-staged (the f16 defaults halve the bytes; tested above).
  const tile = { threads: 128, rows: 64, keys: 32, qResident: "none", kvHalf: 0 } as const;
  // The device's limit: 2 K chunks and one V slice in 44,288 bytes (one workgroup per 48 KiB).
  const full = k(tile);
  assertEquals([full.chunkV, full.vKeys, groupWorkgroupBytes(full)], [16, 32, 44288]);
  // 24 KiB: two per 48 KiB, with 4 K chunks and 4 V slices per sub-tile; 16 KiB: three, with 16
  // and 8.
  const half = k({ ...tile, storage: 24576 });
  assertEquals([half.chunkV, half.vKeys, groupWorkgroupBytes(half)], [8, 8, 23424]);
  const third = k({ ...tile, storage: 16384 });
  assertEquals([third.chunkV, third.vKeys, groupWorkgroupBytes(third)], [2, 4, 15168]);
  // A budget above the device's changes nothing; one too small for any staging is refused.
  assertEquals(k({ ...tile, storage: 1 << 20 }), { ...full, storage: 1 << 20 });
  assertThrows(() => k({ ...tile, storage: 8192 }), GpuError, /storage budget of 8192/);
  assertThrows(() => groupKernel(LLAMA3_8B, "f16", { storage: -1 }), RangeError, /storage/);
  assertEquals(
    fmaVariantName(groupKernel(LLAMA3_8B, "f16", { ...tile, storage: 24576 })),
    "fma-t128-r64-k32-qnone-s24576",
  );
  assertEquals(fmaVariantName(groupKernel(LLAMA3_8B, "f16")), "fma-t128-r64-k32-qnone-h");
  assertEquals(fmaVariantName(groupKernel(LLAMA3_8B, "f32")), "fma-t256-r64-k64-qnone");
});

// FMA kernel variants, options.fma (those tools/perf_group.ts times, and a 64-thread one whose whole K and V
// sub-tiles fit the software adapter's 32 KiB at head dim 128) on cases that stress their edges:
// row tiles spanning several mask words, GQA 3 and 16, head dims 36 and 256. A variant skips the
// shapes its geometry or the device cannot hold.
const VARIANTS: Partial<GroupKernelOptions>[] = [
  { qResident: "f32" },
  { qResident: "none" },
  { keys: 64, qResident: "none" },
  { threads: 256, rows: 128, qResident: "none" },
  { threads: 64, rows: 64, keys: 16 },
  { threads: 256, rows: 64, keys: 64 },
  // Staging cut to a small budget: several K chunks and V slices per sub-tile.
  { threads: 128, rows: 64, keys: 32, storage: 16384 },
  // K, V and P staged in f16 (change 25; f16 cases only): one chunk and one slice, Q re-staged or
  // resident, and several chunks and slices under a small budget.
  { threads: 256, rows: 64, keys: 64, kvHalf: 1 },
  { threads: 256, rows: 64, keys: 64, kvHalf: 1, qResident: "f16" },
  { threads: 128, rows: 64, keys: 32, storage: 10240, kvHalf: 1 },
  // The tile run 38's tune chose on the H200's Deno runtime (change 28).
  { threads: 128, rows: 64, keys: 64, storage: 24576 },
];
// The reduced matrix (software adapters) checks every variant on the speculative tree, in f16
// where the adapter has it.
const variantCases: ConformanceCase[] = [
  {
    name: `speculative t=100${HAS_F16 ? "" : " f32"}`,
    tree: () => speculative(60, 100),
    shape: GQA4,
    dtype: HAS_F16 ? "f16" : "f32",
    reduced: true,
  },
  {
    name: "MHA, 130 queries in one block",
    tree: () => starTree(100, 130, 2),
    shape: { name: "4/4/64", qHeads: 4, kvHeads: 4, headDim: 64, layers: 1 },
    dtype: "f32",
  },
  {
    name: "GQA group 3, head dim 36",
    tree: () => speculative(70, 40),
    shape: { name: "6/2/36", qHeads: 6, kvHeads: 2, headDim: 36, layers: 1 },
    dtype: "f32",
  },
  {
    name: "GQA group 16",
    tree: () => reasoning(),
    shape: { name: "16/1/128", qHeads: 16, kvHeads: 1, headDim: 128, layers: 1 },
    dtype: "f16",
  },
  {
    name: "head dim 256",
    tree: () => starTree(150, 20, 9),
    shape: { name: "4/2/256", qHeads: 4, kvHeads: 2, headDim: 256, layers: 1 },
    dtype: "f16",
  },
];
for (const v of VARIANTS) {
  for (const c of variantCases.filter((c) => inMatrix(c))) {
    Deno.test({
      name: `deft-flatten kernel ${JSON.stringify(v)} matches the float64 reference: ${c.name}`,
      ignore: skipDtype(c.dtype) || !CHECK_VARIANTS,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        let kernel;
        try {
          kernel = groupKernel(c.shape, c.dtype, v);
        } catch (e) {
          if (e instanceof RangeError) return; // geometry not available for this shape
          throw e;
        }
        const gpu = await testGpu();
        const storage = gpu.limit("maxComputeWorkgroupStorageSize");
        try {
          groupKernelConfig(c.shape, c.dtype, kernel, storage);
        } catch (e) {
          if (e instanceof GpuError) return; // does not fit this device
          throw e;
        }
        await expectConformant(deftFlatten, { ...c, options: { kernel: "fma", fma: v } });
      },
    });
  }
}

Deno.test("the FMA kernel's knock-outs (tools/profile_mma.ts --family fma) replace what they name once", () => {
  const source = (ablate?: string) =>
    groupAttentionSource(
      groupKernelConfig(
        LLAMA3_8B,
        "f16",
        groupKernel(LLAMA3_8B, "f16", ablate ? { ablate } : {}),
        49152,
      ),
    );
  const full = source();
  const count = (src: string, text: string) => src.split(text).length - 1;
  assertEquals(count(full, "knocked out"), 0);
  for (const part of FMA_ABLATIONS) {
    const knocked = source(part);
    assert(knocked !== full, part);
    assert(count(knocked, "knocked out") >= 1, part);
  }
  assert(full.includes("exp(s - m)") && !source("softmax").includes("exp(s - m)"));
  assert(!source("kv-load").includes("* DV + v;\n"));
  assert(source("loop").includes("let tiles = 0u * gr.tokens;"));
  // `stage` keeps each store function's name for a body that only compares the values.
  assertEquals(count(source("stage"), "_unused("), 3);
  assertEquals(count(source("scores+pv"), "knocked out"), 2);
  assertEquals(
    fmaVariantName(groupKernel(LLAMA3_8B, "f16", { ablate: "scores+pv" })),
    "fma-t128-r64-k32-qnone-h-without-scores+pv",
  );
  assertEquals(fmaVariantName(groupKernel(LLAMA3_8B, "f16")), "fma-t128-r64-k32-qnone-h");
  assertEquals(fmaVariantName(groupKernel(LLAMA3_8B, "f32")), "fma-t256-r64-k64-qnone");
  assertThrows(
    () => groupKernel(LLAMA3_8B, "f16", { ablate: "pv+nothing" }),
    RangeError,
    /nothing/,
  );
  // A text that is not in the source is an error, never a silent full kernel.
  assertThrows(() => knockOutFma("fn main() {}", ["pv"]), Error, /exactly once/);
  // No load of K, V or Q waits behind a branch (change 24): zeros are selected after it.
  assert(full.includes("return select(elem4(), x, slot >= 0);"));
  assert(!full.includes("if (slot < 0)"));
});

Deno.test("the matrix kernel's knock-outs (tools/profile_mma.ts) remove what they name and nothing else", () => {
  const source = (ablate?: string) =>
    mmaSource({
      shape: LLAMA_LAYER,
      kernel: mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, ablate ? { ablate } : {}),
      maskWords: 2,
      enables: "",
    });
  const count = (src: string, text: string) => src.split(text).length - 1;
  const full = source();
  const mma = "subgroupMatrixMultiplyAccumulate";
  // 16 MMAs per 16-key sub-tile of a row block: 8 for S (head dim / 16), 8 for O += P V.
  assertEquals(count(full, mma), 16);
  assertEquals(count(source("qk"), mma), 8);
  assertEquals(count(source("pv"), mma), 8);
  assertEquals(count(source("qk+pv"), mma), 0);
  // The load-only knock-outs keep every MMA and drop all but one fragment load per product.
  const loads = (src: string) => count(src, "subgroupMatrixLoad<subgroup_matrix_right");
  assertEquals(loads(full), 16);
  assertEquals(count(source("qk-loads"), mma), 16);
  assertEquals(loads(source("qk-loads")), 9);
  assertEquals(loads(source("pv-loads")), 9);
  assert(!source("softmax").includes("exp(sv0 - m_run)"));
  assert(!source("kv-load").includes("k_in[at]"));
  assert(full.includes("k_in[at]") && full.includes("exp(sv0 - m_run)"));
  // The loop knock-out runs no sub-tile; the output one writes no partial row but one value.
  assert(
    full.includes("(tokens + KT - 1u) / KT") && !source("loop").includes("(tokens + KT - 1u) / KT"),
  );
  assert(full.includes("partial_o[(orow * D + col) / 4u]"));
  assert(!source("output").includes("partial_o[(orow * D + col) / 4u]"));
  assertEquals(count(source("output"), mma), 16);
  assertEquals(
    mmaVariantName(mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { ablate: "qk+pv" })),
    "mma-16x16x16-r32-k16-without-qk+pv",
  );
  assertEquals(MMA_ABLATIONS.length, 9);
  // Padding (profiling only) adds an unused workgroup array of the given size, and names it.
  const padded = mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { padBytes: 4096 });
  assertEquals(mmaVariantName(padded), "mma-16x16x16-r32-k16-pad4096");
  assertEquals(
    mmaWorkgroupBytes(LLAMA_LAYER, padded, 2),
    mmaWorkgroupBytes(LLAMA_LAYER, mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS), 2) + 4096,
  );
  assert(
    mmaSource({ shape: LLAMA_LAYER, kernel: padded, maskWords: 2, enables: "" })
      .includes("var<workgroup> pad_sh: array<u32, 1024>;"),
  );
  assert(!full.includes("pad_sh"));
  assertThrows(() => mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { padBytes: 10 }), RangeError);
  assertThrows(
    () => mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { ablate: "qk+nothing" }),
    RangeError,
    /nothing/,
  );
});

// Matrix-kernel tiles beside the default one (which the shared matrix runs): the head-dim splits of
// change 8 (docs/performance.md) and a wide tile, on the masked speculative tree at head dim 32 and,
// in the full matrix on hardware GPUs only, GQA 16 at head dim 64 (a row tile of one query's heads;
// on lavapipe some of its tiles compile for about two minutes each). Small head dims: each tile
// compiles a kernel of its own (CI's Dawn step runs these, `[mma]` in the name); the paper's shapes
// run in the shared matrix. Ignored where the device has no matrix units.
const MMA_VARIANTS: Partial<MmaKernelOptions>[] = [
  { split: 2 },
  { split: 2, keys: 32 },
  { rows: 16, split: 4 },
  { rows: 64, keys: 32 },
  // Q staged in two rounds on an 8 x 8 x 8 device (change 10); no tile of a 16-wide one.
  { rows: 64, keys: 8 },
];
/**
 * Tiles checked on hardware GPUs, and on software adapters with `DEFT_HEAVY_CASES=1` only: the whole
 * output tile staged at once (change 9; it compiles for about two minutes in a `deno test` process
 * on lavapipe, in seconds under `tools/run_tests.ts`, which CI's Dawn step uses).
 */
const GPU_ONLY_MMA_VARIANTS: Partial<MmaKernelOptions>[] = [{ outRounds: 1 }];
const mmaVariantCases: (ConformanceCase & { gpuOnly?: boolean })[] = [
  {
    name: "speculative t=100, shape 8/2/32",
    tree: () => speculative(60, 100),
    shape: { name: "8/2/32", qHeads: 8, kvHeads: 2, headDim: 32, layers: 1 },
    dtype: "f16",
    reduced: true,
  },
  {
    name: "GQA group 16, shape 16/1/64",
    tree: () => reasoning(),
    shape: { name: "16/1/64", qHeads: 16, kvHeads: 1, headDim: 64, layers: 1 },
    dtype: "f16",
    gpuOnly: true,
  },
  // The paper's shape and a Table 14 star (a shared prompt over 64 one-token queries): hundreds of
  // workgroups of the full 64-row tile at once, where a race between subgroups would show.
  {
    name: "1500 + 64 x 1, llama3-8b",
    tree: () => starTree(1500, 64, 1),
    shape: LLAMA_LAYER,
    dtype: "f16",
    gpuOnly: true,
  },
];
Deno.test("the matrix kernel's head-dim split doubles the invocations and refuses splits that do not divide", () => {
  const one = mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { rows: 32, keys: 16 });
  const two = mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { rows: 32, keys: 32, split: 2 });
  assertEquals([one.threads, two.threads], [64, 128]);
  assertEquals(mmaVariantName(two), "mma-16x16x16-r32-k32-s2");
  for (const split of [3, 0, 16]) {
    assertThrows(
      () => mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, { split }),
      RangeError,
      /split/,
    );
  }
  // Head dim 32 has two 16-wide fragments: split 4 cannot divide them.
  const small = { ...LLAMA_LAYER, name: "8/2/32", qHeads: 8, kvHeads: 2, headDim: 32 };
  assertThrows(() => mmaKernel(small, "f16", H200_MMA_CAPS, { split: 4 }), RangeError, /split/);
});

for (const v of [...MMA_VARIANTS, ...GPU_ONLY_MMA_VARIANTS]) {
  const gpuOnlyTile = GPU_ONLY_MMA_VARIANTS.includes(v);
  for (const c of mmaVariantCases.filter((c) => inMatrix(c))) {
    Deno.test({
      name: `deft-flatten matrix kernel ${
        JSON.stringify(v)
      } matches the float64 reference: ${c.name} [mma]`,
      ignore: !HAS_MATRIX || !CHECK_VARIANTS ||
        ((c.gpuOnly === true || gpuOnlyTile) && SOFTWARE_ADAPTER !== null && !HEAVY_CASES),
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        const { gpuOnly: _, ...conformanceCase } = c;
        try {
          mmaKernel(c.shape, c.dtype, kernelCaps(await testGpu()), v);
        } catch (e) {
          if (e instanceof RangeError) return; // the tile does not fit this shape on this device
          throw e;
        }
        await expectConformant(deftFlatten, {
          ...conformanceCase,
          options: { kernel: "mma", mma: { fit: 0, ...v } },
        });
      },
    });
  }
}

// Logits that keep growing along the path move a row's maximum past the matrix kernel's threshold
// in later sub-tiles of a block: its rarely taken rescale of O (through workgroup memory, after the
// rescale flag's barrier), checked at the default tile and with the head-dim split.
for (const v of [{}, { split: 2 }] as Partial<MmaKernelOptions>[]) {
  Deno.test({
    name: `deft-flatten matrix kernel ${
      JSON.stringify(v)
    } rescales when late logits grow past the running max [mma]`,
    ignore: !HAS_MATRIX || (Object.keys(v).length > 0 && !CHECK_VARIANTS),
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const gpu = await testGpu();
      const s = { ...LLAMA_LAYER, name: "8/2/32", qHeads: 8, kvHeads: 2, headDim: 32 };
      const problem = Problem.create(gpu, starTree(600, 8, 40), {
        shape: s,
        dtype: "f16",
        seed: 7,
      });
      try {
        growKeysAlongPaths(problem, 600); // the 600-token root is shared
        const { output } = await runMethod(problem, deftFlatten, {
          kernel: "mma",
          blockSize: 256,
          targetWorkgroups: 1,
          mma: { fit: 0, ...v },
        });
        const r = verify(output, referenceOf(problem), s, "f16");
        assert(r.passed, verdictProblems(r).join(", "));
      } finally {
        problem.destroy();
      }
    },
  });
}

Deno.test("deft-flatten with the device's multiprocessors sizes its blocks to whole rounds of the tile's resident workgroups", () => {
  const plan = (tree: Tree, o: Partial<MethodOptions>, caps: KernelCaps = H200_MMA_CAPS) =>
    deftFlatten.plan({
      ...input(tree, { kernel: "mma", ...o }, LLAMA_LAYER),
      caps,
    });
  const wgs = (p: { items: Uint32Array }) => (p.items.length / 2) * LLAMA_LAYER.kvHeads;
  const table14 = starTree(4000, 64, 1);
  // 128-token blocks make 1024 workgroups of the 64-row tile (14.5 KiB: 3 per 48 KiB, 396 on 132
  // SMs), 2.6 rounds (3 of 8 sub-tiles + 2); 352-token blocks make 384, one round of 22 + 2.
  assertEquals(residentTiles(132, 49152, 14544), 396);
  assertEquals(residentTiles(132, 49152, 11728), 528);
  const base = plan(table14, { mma: { rows: 64, keys: 16 } });
  assertEquals([base.blockSize, wgs(base)], [128, 1024]);
  const sized = plan(table14, { mma: { rows: 64, keys: 16 }, multiprocessors: 132 });
  assertEquals([sized.blockSize, wgs(sized)], [352, 384]);
  assertEquals([sized.stats.residentWorkgroups, sized.stats.rounds], [396, 1]);
  assertEquals(base.stats.rounds, undefined);
  assertEquals(waveCost(1024, 128, 16, 396), 30);
  assertEquals(waveCost(384, 352, 16, 396), 24);
  // From the calibration (the device's caps) when the option is 0, and the same plan.
  const fromCaps = plan(table14, { mma: { rows: 64, keys: 16 } }, {
    ...H200_MMA_CAPS,
    residentWorkgroups: 132,
  });
  assertEquals(fromCaps.blockSize, 352);
  // The 32-row tile has 4 per SM: its rounds are of 528 (the few-shot tree picks r32 itself).
  const fewShot = new FewShotRun({ prompt: 4000, branches: 50, generated: 400 }).snapshot(200);
  const r32 = plan(fewShot, { multiprocessors: 132 });
  assertEquals(r32.mma?.rows, 32);
  assert(wgs(r32) <= 528 && wgs(r32) > 400, `${wgs(r32)} workgroups`);
  // A plan that already fits one round stays as it is; the FMA kernel ignores the option.
  const big = plan(table14, { mma: { rows: 64, keys: 16 }, multiprocessors: 1000 });
  assertEquals([big.blockSize, wgs(big)], [128, 1024]);
  assertEquals(
    plan(table14, { kernel: "fma", multiprocessors: 132 }).blockSize,
    plan(table14, { kernel: "fma" }).blockSize,
  );
});

Deno.test("deft-flatten's rounds model counts the reduction's reads, and changes change 18's choice only past its margin", () => {
  const plan = (tree: Tree, residentWorkgroups?: number) =>
    deftFlatten.plan({
      ...input(tree, { kernel: "mma", mma: { rows: 64, keys: 16 } }, LLAMA_LAYER),
      caps: { ...H200_MMA_CAPS, residentWorkgroups },
    });
  const wgs = (p: { items: Uint32Array }) => (p.items.length / 2) * LLAMA_LAYER.kvHeads;
  const partials = (p: DeftFlattenPlan) => p.lists.entries.length;
  const slots = 396; // the 64-row tile on 132 SMs
  const bytes = (p: DeftFlattenPlan) => reductionIo(p.lists, LLAMA_LAYER).partialReadBytes;
  // A late snapshot of the speculative t=256 preset (a 4562-token prefix under a 256-token tree,
  // 256 queries): 128-token blocks make 4736 workgroups (12 rounds of 8 + 2 sub-tiles) and 9454
  // partials (156 MB for the reduction, 13.5 rounds more); 864-token blocks make 2 rounds of 54 +
  // 2 and a sixth of the partials.
  const late = getPreset("speculative-t256").build(1).snapshot(832);
  const fixed = plan(late); // no calibration: the blocks as given
  assertEquals([fixed.blockSize, wgs(fixed), partials(fixed)], [128, 4736, 9454]);
  assertEquals(waveCost(wgs(fixed), 128, 16, slots), 120);
  assert(Math.abs(waveCost(wgs(fixed), 128, 16, slots, bytes(fixed)) - 133.5) < 0.1);
  const sized = plan(late, 132);
  assertEquals([sized.blockSize, wgs(sized), sized.stats.rounds], [864, 768, 2]);
  assert(partials(sized) < partials(fixed) / 6 + 1, `${partials(sized)} partials`);
  assert(
    waveCost(wgs(sized), 864, 16, slots, bytes(sized)) <
      WAVE_MARGIN * waveCost(wgs(fixed), 128, 16, slots, bytes(fixed)),
  );
  // An earlier snapshot of the same run: a 2-round plan of 592-token blocks is 2% cheaper with the
  // reduction than change 18's one round of 1264, inside the margin, so the round stays.
  const mid = plan(getPreset("speculative-t256").build(1).snapshot(499), 132);
  assertEquals([mid.blockSize, wgs(mid)], [1264, 384]);
});

Deno.test("deft-flatten on a GPU halves its blocks while a small tree leaves the device short of workgroups", () => {
  const small = (o: Partial<MethodOptions>) => ({
    ...input(starTree(3000, 4, 20), { blockSize: 512, ...o }, LLAMA_LAYER),
    caps: H200_MMA_CAPS,
  });
  const wgs = (p: { items: Uint32Array }) => (p.items.length / 2) * LLAMA_LAYER.kvHeads;
  // 3080 tokens in 512-token blocks: 7 blocks x 1 row tile x 8 KV heads = 56 workgroups.
  const auto = deftFlatten.plan(small({}));
  assert(auto.mma !== null);
  assertEquals(auto.blockSize, 64, "halved down to the smallest block");
  assert(wgs(auto) > wgs(deftFlatten.plan(small({ targetWorkgroups: 1 }))));
  // A reachable target stops the halving there. The FMA kernel halves as well on a GPU, and keeps
  // the block as given on a CPU adapter or without device facts.
  assertEquals(deftFlatten.plan(small({ targetWorkgroups: 100 })).blockSize, 256);
  assertEquals(deftFlatten.plan(small({ targetWorkgroups: 1 })).blockSize, 512);
  assertEquals(deftFlatten.plan(small({ kernel: "fma" })).blockSize, 64);
  const cpu = { ...small({ kernel: "fma" }), caps: { ...H200_MMA_CAPS, software: true } };
  assertEquals(deftFlatten.plan(cpu).blockSize, 512);
  const noCaps = { ...small({ kernel: "fma" }), caps: undefined };
  assertEquals(deftFlatten.plan(noCaps).blockSize, 512);
  // A tree that fills the device keeps its blocks: 20 000 tokens, 64 queries (8 row tiles).
  const big = deftFlatten.plan({
    ...input(starTree(20000, 64, 1), { blockSize: 512 }, LLAMA_LAYER),
    caps: H200_MMA_CAPS,
  });
  assertEquals(big.blockSize, 512);
  assert(wgs(big) >= 1024);
});

Deno.test("deft-flatten runs Flash-Decoding's plan where the tree shares (almost) nothing", () => {
  // The unshared batch: a 1-token root over 4 children of 300 tokens (reuse 100.3%).
  const unshared = deftFlatten.plan(input(starTree(1, 4, 300)));
  const delegate = unshared.delegate;
  if (!delegate) throw new Error("the unshared batch was not delegated");
  assert(unshared.kernelVariant?.startsWith("flash-decoding "));
  assertEquals(unshared.dispatches, delegate.dispatches);
  assertEquals(unshared.stats.fallbackToSequence, 1);
  // The paper's IO stays DeFT's (the tree's tokens); the real IO is what runs.
  assertEquals(unshared.counts.real, delegate.counts.real);
  // Off with fallbackReuse 0; never where the queries share (Table 14's shape: reuse ~6300%).
  assertEquals(
    deftFlatten.plan(input(starTree(1, 4, 300), { fallbackReuse: 0 })).delegate,
    undefined,
  );
  assertEquals(deftFlatten.plan(input(starTree(400, 8, 1))).delegate, undefined);
  // Just above and below the threshold: 2 queries over a 30-token root and 270-token leaves read
  // 600 of 570 tokens (105%); with 60-token roots, 660 of 600 (110%) is not below 110.
  assert(deftFlatten.plan(input(starTree(30, 2, 270))).delegate !== undefined);
  assertEquals(deftFlatten.plan(input(starTree(60, 2, 270))).delegate, undefined);
});

Deno.test("the matrix kernel's output pass adds no workgroup memory unless asked to", () => {
  const k = (o: Partial<MmaKernelOptions>) => mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, o);
  // A round stages [R][D / rounds + 4] floats in the score tiles' [R][keys + 4]: 128 / 8 + 4 = 20
  // for 16 keys, 128 / 4 + 4 = 36 for 32.
  assertEquals(k({ rows: 32, keys: 16 }).outRounds, 8);
  assertEquals(k({ rows: 32, keys: 32 }).outRounds, 4);
  assertEquals(k({ rows: 32, keys: 16, split: 2 }).outRounds, 4);
  const bytes = (o: Partial<MmaKernelOptions>) => mmaWorkgroupBytes(LLAMA_LAYER, k(o), 2);
  assertEquals(bytes({ rows: 32, keys: 16 }), bytes({ rows: 32, keys: 16, outRounds: 8 }));
  // Fewer rounds on request, named, and refused where they do not fit or do not divide.
  assertEquals(mmaVariantName(k({ rows: 32, keys: 16 })), "mma-16x16x16-r32-k16");
  assertEquals(mmaVariantName(k({ rows: 32, keys: 16, outRounds: 1 })), "mma-16x16x16-r32-k16-o1");
  assert(bytes({ rows: 32, keys: 16, outRounds: 1 }) > bytes({ rows: 32, keys: 16 }));
  assertThrows(() => k({ rows: 128, keys: 16, outRounds: 1 }), RangeError, /workgroup memory/);
  assertThrows(() => k({ rows: 32, keys: 16, outRounds: 3 }), RangeError, /outRounds/);
  // Q is staged in rounds that fit in the sub-tile loop's staging: 64 rows take what 32 take, plus
  // 64 rows of S and a few row arrays.
  assertEquals(bytes({ rows: 32, keys: 16 }), 11728);
  assertEquals(bytes({ rows: 64, keys: 16 }), 14544);
  const r64 = mmaSource({
    shape: LLAMA_LAYER,
    kernel: k({ rows: 64, keys: 16 }),
    maskWords: 2,
    enables: "",
  });
  assert(r64.includes("rb * M / 32u == 1u"));
});

Deno.test("the matrix kernel loads a sub-tile's K and V once, where it stages them", () => {
  const k = (o: Partial<MmaKernelOptions>) => mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, o);
  // No prefetch (change 16): one load per register, in the loop, from this sub-tile's own slots.
  const src = mmaSource({ shape: LLAMA_LAYER, kernel: k({}), maskWords: 2, enables: "" });
  assertEquals(src.match(/kr0 = select\(/g)?.length, 1);
  assert(src.includes("let s = slot_sh[(buf) * KT + e / DV];"));
  assert(!src.includes("slot_sh[(buf ^ 1u) * KT + e / DV]"));
  assert(src.includes("workgroupUniformLoad(&flag_sh[0])"));
});

Deno.test("the matrix kernel counts its live workgroups only when profiling asks", () => {
  const k = (o: Partial<MmaKernelOptions>) => mmaKernel(LLAMA_LAYER, "f16", H200_MMA_CAPS, o);
  const src = (o: Partial<MmaKernelOptions>) =>
    mmaSource({ shape: LLAMA_LAYER, kernel: k(o), maskWords: 2, enables: "" });
  assert(!src({}).includes("@binding(6)"));
  const counted = src({ occupancy: 1 });
  assert(counted.includes("@binding(6) var<storage, read_write> occ: array<atomic<u32>, 4>;"));
  assert(counted.includes("atomicSub(&occ[0], 1u)"));
  assertEquals(mmaVariantName(k({ occupancy: 1 })), "mma-16x16x16-r32-k16-occ");
  // Counting costs no workgroup memory.
  assertEquals(mmaWorkgroupBytes(LLAMA_LAYER, k({ occupancy: 1 }), 2), 11728);
});

Deno.test("privateSuffixes() routes exactly the nodes only one query sees, where its suffix is long enough", async () => {
  const seed = propertySeed();
  await withSeed(seed, (rng) => {
    for (let round = 0; round < 200; round++) {
      const ix = new IndexedTree(randomTree(rng, 30, { huge: false }));
      const min = pick(rng, [0, 1, 40, 200]);
      const nq = ix.queryCount;
      // Queries from DFS rank `cutoff` on are routed whole.
      const cutoff = pick(rng, [nq, nq, nq - 1, Math.floor(nq / 2)]);
      const s = privateSuffixes(ix, min, cutoff);
      const rank = new Uint32Array(nq);
      s.ranges.order.forEach((q, r) => (rank[q] = r));
      // Queries before the cutoff that see each node, by brute force.
      const seers = Array.from({ length: ix.nodeCount }, () => new Set<number>());
      for (let q = 0; q < nq; q++) {
        if (rank[q]! < cutoff) { for (const v of ix.queryPath(q)) seers[v]!.add(q); }
      }
      let tokens = 0, queries = 0;
      const routed = new Uint8Array(ix.nodeCount);
      for (let q = 0; q < nq; q++) {
        const path = ix.queryPath(q); // root first
        const n = ix.pathTokens[ix.queryNode[q]!]!;
        if (rank[q]! >= cutoff) {
          assertStrictEquals(s.from[q], 0, `query ${q} runs whole`);
          tokens += n;
          queries++;
          continue;
        }
        let i = path.length;
        while (i > 0 && seers[path[i - 1]!]!.size === 1) i--;
        const start = i > 0 ? ix.pathTokens[path[i - 1]!]! : 0;
        if (min > 0 && n - start >= min) {
          assertStrictEquals(s.from[q], start, `query ${q}`);
          tokens += n - start;
          queries++;
          for (const v of path.slice(i)) routed[v] = 1;
        } else {
          assertStrictEquals(s.from[q], n, `query ${q} keeps its whole path in the blocks`);
        }
      }
      // Nodes no query before the cutoff sees leave the blocks too (none when nothing is cut).
      for (let v = 0; v < ix.nodeCount; v++) {
        if (seers[v]!.size > 0) assertStrictEquals(s.node[v], routed[v], `node ${v}`);
        else if (cutoff === nq) assertStrictEquals(s.node[v], 0, `node ${v}`);
      }
      let skipped = 0;
      for (let v = 0; v < ix.nodeCount; v++) if (s.node[v] === 1) skipped += ix.tokens(v);
      assertStrictEquals(s.skipped, skipped);
      assertStrictEquals(s.tokens, tokens);
      assertStrictEquals(s.queries, queries);
      assertStrictEquals(s.cutoff, cutoff);
    }
  });
});

Deno.test("deft-flatten runs private suffixes as Flash-Decoding chunks after the blocks", () => {
  // A few-shot shape: a 300-token prompt and 12 branches of 100 tokens, a query on each.
  const tree = starTree(300, 12, 100);
  // targetWorkgroups 1: the tree counts as filling the device (a GPU aims for 1024 workgroups).
  const inp = input(tree, { blockSize: 64, targetWorkgroups: 1 });
  const p = deftFlatten.plan(inp);
  const tail = p.suffix;
  if (!tail) throw new Error("the branches were not routed");
  // Only the prompt is flattened: 5 blocks, every one with all 12 queries.
  assertStrictEquals(p.groups.count, 5);
  for (let g = 0; g < 5; g++) {
    assertStrictEquals(p.groups.queryOffset[g + 1]! - p.groups.queryOffset[g]!, 12);
  }
  assertStrictEquals(p.stats.privateQueries, 12);
  assertStrictEquals(p.stats.privateTokens, 1200);
  // The chunks cover each branch: path positions 300 .. 400 of their query.
  for (let c = 0; c < tail.plan.chunkMeta.length / 4; c++) {
    assert(tail.plan.chunkMeta[4 * c + 2]! >= 300 && tail.plan.chunkMeta[4 * c + 3]! <= 400);
  }
  assert(!tail.plan.direct, "the chunks write partials, never the output");
  // Their partials start at an aligned index after the blocks' 60, and each query's list holds
  // its 5 block partials, then its chunks'.
  assert(tail.base >= p.groups.queries.length && (tail.base * 8 * 4) % 256 === 0);
  for (let q = 0; q < 12; q++) {
    const list = Array.from(p.lists.entries.subarray(p.lists.offsets[q]!, p.lists.offsets[q + 1]!));
    assertStrictEquals(list.filter((e) => e < tail.base).length, 5);
    const own = list.filter((e) => e >= tail.base).map((e) => e - tail.base);
    assert(own.length > 0);
    for (const c of own) assertStrictEquals(tail.plan.chunkQuery[c], q);
  }
  // Dispatches: blocks, chunks, one reduction; the variant names both kernels.
  assertEquals(p.dispatches.map((d) => d.kernel), ["group-attention", "sequence", "reduce"]);
  assert(p.kernelVariant!.includes(" + flash-decoding "));
  // Real IO: the blocks read the prompt (once per row tile and KV head), the chunks each branch
  // once per KV head (and head block).
  const blocksOnly = deftFlatten.plan(
    input(tree, { blockSize: 64, targetWorkgroups: 1, privateMin: 0 }),
  );
  assertStrictEquals(blocksOnly.suffix, undefined);
  const perToken = 2 * GQA4.headDim * 2 * GQA4.kvHeads;
  assertStrictEquals(
    p.counts.real.kvBytes,
    (300 * 1 + 1200 * tail.plan.tiling.headBlocks) * perToken,
  );
  // In the blocks, a branch's rows fill a fraction of a row tile; the chunks run its 4 rows only.
  assert(blocksOnly.counts.flops > p.counts.flops);
  assertEquals(p.counts.paper, blocksOnly.counts.paper);
  assertStrictEquals(p.counts.usefulFlops, blocksOnly.counts.usefulFlops);
  const r = p.counts.real;
  assertStrictEquals(
    r.totalBytes,
    r.kvBytes + r.qBytes + r.maskBytes + r.metadataBytes + r.partialBytes + r.outputBytes,
  );
  assertStrictEquals(r.outputBytes, 12 * GQA4.qHeads * GQA4.headDim * 4);
  // Suffixes shorter than privateMin stay in the blocks.
  const at = (o: Partial<MethodOptions>) =>
    deftFlatten.plan(input(tree, { targetWorkgroups: 1, ...o }));
  assertStrictEquals(at({ privateMin: 101 }).suffix, undefined);
  assertStrictEquals(at({ privateMin: 100 }).stats.privateQueries, 12);
  // Only where the tree fills the device with every token in the blocks: a target of that
  // plan's stage-1 workgroups routes, one more does not (nor does the GPU's 1024).
  const whole = at({ privateMin: 0 }).stats.workgroups!;
  assertStrictEquals(at({ targetWorkgroups: whole }).stats.privateQueries, 12);
  assertStrictEquals(at({ targetWorkgroups: whole + 1 }).suffix, undefined);
  assertStrictEquals(deftFlatten.plan(input(tree)).suffix, undefined);
});

Deno.test("deft-flatten with private suffixes attends every query to exactly the KV of its path", async () => {
  const seed = propertySeed();
  await withSeed(seed, (rng) => {
    for (let round = 0; round < 60; round++) {
      const inp = input(randomTree(rng, 25, { huge: false }), {
        blockSize: pick(rng, [16, 64, 128]),
        privateMin: pick(rng, [1, 30, 100]),
        fallbackReuse: 0,
        targetWorkgroups: 1,
      });
      const p = deftFlatten.plan(inp);
      expectPathsAttended(inp, p);
    }
  });
});

// Plans with private suffixes on the GPU, on both kernel families: few-shot branches, leaves of 7
// tokens (privateMin 1), and queries on internal nodes whose suffixes are partly routed
// (targetWorkgroups 1: these small trees count as filling the device).
conformanceSuite(deftFlatten, [
  {
    name: "private suffixes: few-shot (prompt 300, 12 branches of 80) f16",
    tree: () => new FewShotRun({ prompt: 300, branches: 12, generated: 100 }).snapshot(79),
    shape: GQA4,
    dtype: "f16",
    options: { targetWorkgroups: 1, privateMin: 64 },
    reduced: true,
  },
  {
    name: "private suffixes of 7 tokens (privateMin 1) f32",
    tree: () => starTree(90, 40, 7),
    shape: GQA4,
    dtype: "f32",
    options: { privateMin: 1, blockSize: 32, targetWorkgroups: 1 },
    reduced: true,
  },
  {
    name: "private suffixes below internal queries (privateMin 20) f16",
    tree: internalQueriesTree,
    shape: GQA4,
    dtype: "f16",
    options: { privateMin: 20, targetWorkgroups: 1 },
    reduced: true,
  },
  // Change 31: the last queries routed whole (18 branches: 2 past a 16-query tile on the FMA
  // kernel, 2 past 8 on a 32-row matrix tile), with and without the others' suffixes.
  {
    name: "tail queries routed whole: few-shot (prompt 300, 18 branches of 80) f16",
    tree: () => new FewShotRun({ prompt: 300, branches: 18, generated: 100 }).snapshot(79),
    shape: GQA4,
    dtype: "f16",
    options: { targetWorkgroups: 1, privateMin: 64, tailQueries: 2 },
    reduced: true,
  },
  {
    name: "tail queries routed whole, no suffixes (20 leaves of 30 over 200) f32",
    tree: () => starTree(200, 20, 30),
    shape: GQA4,
    dtype: "f32",
    options: { targetWorkgroups: 1, privateMin: 0, tailQueries: 4, blockSize: 64 },
    reduced: true,
  },
]);

Deno.test("the matrix tile's rows follow the blocks: halved where most tiles would be mostly empty", () => {
  const plan = (tree: Tree, o: Partial<MethodOptions> = {}) =>
    deftFlatten.plan({
      ...input(
        tree,
        { blockSize: 128, mma: { rows: 64, keys: 16 }, privateMin: 0, ...o },
        LLAMA_LAYER,
      ),
      caps: H200_MMA_CAPS,
    });
  // Table 14's shape: 256 rows per prompt block, 8 tiles of 32 against 4 of 64 (2x): 64 rows.
  assertEquals(plan(starTree(4000, 64, 1)).mma?.rows, 64);
  // 200 rows: 7 against 4 (1.75x): 64 rows. 80 rows: 3 against 2: 32 rows.
  assertEquals(plan(starTree(4000, 50, 1)).mma?.rows, 64);
  assertEquals(plan(starTree(4000, 20, 1)).mma?.rows, 32);
  // Sharing-4: every block serves 4 queries (16 rows): 32 rows, never 16 (MMA_MIN_ROWS).
  const sharing4 = levelGridTree(parseGridSpec("1x1,16x1000,64x1"));
  const p = plan(sharing4);
  assertEquals(p.mma?.rows, 32);
  assertEquals(p.kernelVariant, "mma-16x16x16-r32-k16");
  assertEquals(p.stats.rowsPerTile, 32);
  assertEquals(plan(sharing4, { mma: { rows: 128, keys: 16 } }).mma?.rows, 32);
  // 32 rows stay 32 (MMA_MIN_ROWS), and fit 0 keeps the rows as given.
  assertEquals(plan(sharing4, { mma: { rows: 32, keys: 16 } }).mma?.rows, 32);
  assertEquals(plan(sharing4, { mma: { rows: 64, keys: 16, fit: 0 } }).mma?.rows, 64);
});

Deno.test("mma.legacyMask (profiling) keeps every block's mask and reads mask words in the sub-tile", () => {
  const plan = (mma: Partial<MmaKernelOptions>) =>
    deftFlatten.plan({
      ...input(starTree(4000, 64, 1), { blockSize: 128, mma }, LLAMA_LAYER),
      caps: H200_MMA_CAPS,
    });
  const now = plan({ rows: 64, keys: 16 });
  const old = plan({ rows: 64, keys: 16, legacyMask: 1 });
  const masked = (p: typeof now) => p.groups.maskWords.filter((w) => w > 0).length;
  assertEquals(masked(now), 1); // the last block, with the 64 leaves
  assertEquals(masked(old), old.groups.count);
  assertEquals(old.kernelVariant, "mma-16x16x16-r64-k16-legacymask");
  const src = (p: typeof now) =>
    mmaSource({ shape: LLAMA_LAYER, kernel: p.mma!, maskWords: 2, enables: "" });
  assert(src(now).includes("next_mask") && !src(old).includes("next_mask"));
});

Deno.test("privateMin -1 (the default) routes suffixes with the FMA kernel only", () => {
  const tree = starTree(4000, 50, 200); // few-shot b=50's shape at iteration 200
  const at = (o: Partial<MethodOptions>, caps?: KernelCaps) =>
    deftFlatten.plan({ ...input(tree, { blockSize: 128, ...o }, LLAMA_LAYER), caps });
  assertEquals(at({ kernel: "fma" }, H200_MMA_CAPS).stats.privateQueries, 50);
  assertEquals(at({}, H200_MMA_CAPS).suffix, undefined); // the matrix kernel
  assertEquals(at({ privateMin: 64 }, H200_MMA_CAPS).stats.privateQueries, 50);
  // Without suffixes, the FMA kernel still routes the 2 queries past 3 whole 64-row tiles (change
  // 31); with neither, nothing runs as Flash-Decoding.
  assertEquals(at({ kernel: "fma", privateMin: 0 }, H200_MMA_CAPS).stats.tailQueries, 2);
  assertEquals(
    at({ kernel: "fma", privateMin: 0, tailQueries: 0 }, H200_MMA_CAPS).suffix,
    undefined,
  );
});

Deno.test("tailQueries routes the last queries whole where they would leave the shared blocks' last row tile nearly empty", () => {
  const at = (tree: Tree, o: Partial<MethodOptions>, caps = H200_MMA_CAPS) =>
    deftFlatten.plan({ ...input(tree, { blockSize: 128, ...o }, LLAMA_LAYER), caps });
  // Few-shot b=50's shape: 200 rows per prompt block, 3 x 64 + 8 with the FMA kernel's 64-row
  // tile, 16 queries a tile: the last 2 queries (by DFS rank) run whole as Flash-Decoding.
  const b50 = starTree(4000, 50, 200);
  const p = at(b50, { kernel: "fma" });
  assertStrictEquals(p.stats.tailQueries, 2);
  assertStrictEquals(p.stats.privateQueries, 50); // 48 suffixes and 2 whole paths
  assertStrictEquals(p.stats.privateTokens, 48 * 200 + 2 * 4200);
  // Every block (the prompt; the branches are suffixes) lists 48 queries: 3 whole tiles.
  assertStrictEquals(p.groups.count, Math.ceil(4000 / p.blockSize));
  for (let g = 0; g < p.groups.count; g++) {
    assertStrictEquals(p.groups.queryOffset[g + 1]! - p.groups.queryOffset[g]!, 48);
  }
  const tail = p.suffix!.plan;
  const whole = new Set<number>();
  for (let c = 0; c < tail.chunkQuery.length; c++) {
    if (tail.chunkMeta[4 * c + 2] === 0) whole.add(tail.chunkQuery[c]!);
  }
  assertStrictEquals(whole.size, 2);
  for (const q of whole) assert(!Array.from(p.groups.queries).includes(q), `query ${q} in a block`);
  // 30 queries leave 14 in the last tile: more than half a tile, so none is routed, unless asked.
  const b30 = starTree(4000, 30, 200);
  assertStrictEquals(at(b30, { kernel: "fma" }).stats.tailQueries ?? 0, 0);
  assertStrictEquals(at(b30, { kernel: "fma", tailQueries: 14 }).stats.tailQueries, 14);
  assertStrictEquals(at(b30, { kernel: "fma", tailQueries: 13 }).stats.tailQueries ?? 0, 0);
  // Off with 0, and by default on the matrix kernel; asked for there, its tile's rows count (32
  // rows: 8 queries a tile, 50 = 6 x 8 + 2).
  assertStrictEquals(at(b50, { kernel: "fma", tailQueries: 0 }).stats.tailQueries ?? 0, 0);
  assertEquals(at(b50, {}).suffix, undefined);
  assertStrictEquals(at(b50, { tailQueries: 2, mma: { rows: 32, keys: 16 } }).stats.tailQueries, 2);
  // A prompt shorter than a block saves no tile: nothing is routed (sharing-4's 1-token root).
  assertStrictEquals(at(starTree(100, 50, 200), { kernel: "fma" }).stats.tailQueries ?? 0, 0);
  // Fewer queries than a tile: routing them all would leave no blocks.
  assertStrictEquals(
    at(starTree(4000, 6, 200), { kernel: "fma", tailQueries: 8 }).stats.tailQueries ?? 0,
    0,
  );
});

Deno.test("deft-flatten with queries routed whole attends every query to exactly the KV of its path", async () => {
  const seed = propertySeed();
  await withSeed(seed, (rng) => {
    for (let round = 0; round < 60; round++) {
      const inp = input(randomTree(rng, 25, { huge: false }), {
        blockSize: pick(rng, [16, 64]),
        privateMin: pick(rng, [0, 1, 30]),
        tailQueries: pick(rng, [1, 4, 15]),
        fma: { threads: 64, rows: 16, keys: 64 }, // 4 queries a tile on 8/2/128
        fallbackReuse: 0,
        targetWorkgroups: 1,
      });
      const p = deftFlatten.plan(inp);
      expectPathsAttended(inp, p, ` (tail ${p.stats.tailQueries ?? 0})`);
    }
  });
});

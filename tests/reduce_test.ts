import { TREE_LIMITS } from "../workloads/tree.ts";
import { GpuError } from "../kernels/gpu.ts";
import {
  alignedPartialBase,
  EMPTY_LSE,
  LLVMPIPE_LOOP_LIMIT,
  longestList,
  mergeLists,
  prepareReduction,
  type ReductionLists,
  reductionLists,
  reductionLoopIterations,
  reductionSource,
} from "../kernels/reduce.ts";
import { Rng } from "../workloads/rng.ts";
import { shape, testGpu } from "./_conformance.ts";
import { assert, assertEquals, assertRejects, assertStrictEquals } from "./_assert.ts";

Deno.test("reductionLists() groups the partials of each query in CSR form", () => {
  const lists = reductionLists(3, [2, 0, 2, 2, 0]);
  assertEquals(Array.from(lists.offsets), [0, 2, 2, 5]);
  assertEquals(Array.from(lists.entries), [1, 4, 0, 2, 3]);
  assertStrictEquals(longestList(lists), 3);
});

Deno.test("reductionLoopIterations() stays under llvmpipe's limit for one partial per node of the largest tree", () => {
  // deft-node gives a query one partial per node on its path: at most TREE_LIMITS.maxNodes.
  assert(reductionLoopIterations(TREE_LIMITS.maxNodes) <= LLVMPIPE_LOOP_LIMIT);
  assert(reductionLoopIterations(2 * TREE_LIMITS.maxNodes) > LLVMPIPE_LOOP_LIMIT);
});

/** The reduction on the CPU in float64: `[query][qHead][d]`. */
function cpuReduce(
  lists: ReductionLists,
  qHeads: number,
  d: number,
  partialO: Float32Array,
  partialLse: Float32Array,
): Float64Array {
  const queries = lists.offsets.length - 1;
  const out = new Float64Array(queries * qHeads * d);
  for (let q = 0; q < queries; q++) {
    const list = lists.entries.subarray(lists.offsets[q], lists.offsets[q + 1]);
    for (let h = 0; h < qHeads; h++) {
      let m = -Infinity;
      for (const p of list) {
        if (partialLse[p * qHeads + h]! > EMPTY_LSE) m = Math.max(m, partialLse[p * qHeads + h]!);
      }
      let total = 0;
      const o = (q * qHeads + h) * d;
      for (const p of list) {
        const lse = partialLse[p * qHeads + h]!;
        if (!(lse > EMPTY_LSE)) continue;
        const w = Math.exp(lse - m);
        total += w;
        for (let i = 0; i < d; i++) out[o + i]! += w * partialO[(p * qHeads + h) * d + i]!;
      }
      for (let i = 0; i < d; i++) out[o + i] = total > 0 ? out[o + i]! / total : 0;
    }
  }
  return out;
}

// Regression (issue 8, #16): with one loop iteration per partial, the reduction ended early on
// llvmpipe and lavapipe past about 13,000 partials per query (d = 64) or 10,000 (d = 128), so
// deft-node and deft-node-chunk left rows unwritten and others wrong on deep chains.
Deno.test({
  name: "the reduction merges lists of 20,000 partials, empty rows and short lists exactly",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = shape(2, 1, 128);
    // Query 0: 20,000 partials; query 1: none; query 2: 3, one of them empty (saw no key).
    const partialQuery = new Uint32Array(20_003);
    partialQuery.fill(2, 20_000);
    const lists = reductionLists(3, partialQuery);
    const rng = new Rng(7);
    const partialO = new Float32Array(partialQuery.length * s.qHeads * s.headDim)
      .map(() => rng.next() * 2 - 1);
    const partialLse = new Float32Array(partialQuery.length * s.qHeads).map(() => rng.next() * 8);
    partialLse[20_001 * s.qHeads] = EMPTY_LSE;
    const { got, want } = await runReduction(lists, s, partialO, partialLse);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    assert(worst < 1e-5, `largest error ${worst}`);
  },
});

/**
 * Runs the reduction of `lists` on the test GPU: its output, and `cpuReduce`'s over the partials with
 * non-finite values read as 0 (a partial that saw no key adds nothing, whatever its o holds).
 */
async function runReduction(
  lists: ReductionLists,
  s: ReturnType<typeof shape>,
  partialO: Float32Array,
  partialLse: Float32Array,
): Promise<{ got: Float32Array; want: Float64Array }> {
  const gpu = await testGpu();
  const queries = lists.offsets.length - 1;
  const bufO = gpu.buffer("partial o", partialO);
  const bufLse = gpu.buffer("partial lse", partialLse);
  const out = gpu.buffer("out", queries * s.qHeads * s.headDim * 4);
  const reduction = await prepareReduction(gpu, lists, s, bufO, bufLse, out);
  try {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    reduction.encode(pass);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
    const got = new Float32Array(await gpu.read(out));
    const clean = partialO.map((x) => (Number.isFinite(x) ? x : 0));
    return { got, want: cpuReduce(lists, s.qHeads, s.headDim, clean, partialLse) };
  } finally {
    reduction.destroy();
    for (const b of [bufO, bufLse, out]) b.destroy();
  }
}

// Lists around the kernel's round of 16 entries, a maximum that arrives in a later round (the sums
// so far are rescaled), lse values far apart (weights that underflow to 0), an empty partial whose
// o is NaN (it must add nothing), and head dims of one and two vec4s per lane.
Deno.test({
  name:
    "the reduction is exact across rounds, with a late maximum, spread lse and NaN in empty partials",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const d of [64, 128, 256]) {
      const s = shape(4, 2, d);
      const lengths = [1, 2, 15, 16, 17, 31, 32, 33, 40];
      const partialQuery: number[] = [];
      lengths.forEach((n, q) => partialQuery.push(...new Array(n).fill(q)));
      const lists = reductionLists(lengths.length, partialQuery);
      const rng = new Rng(d);
      const partialO = new Float32Array(partialQuery.length * s.qHeads * d)
        .map(() => rng.next() * 2 - 1);
      const partialLse = new Float32Array(partialQuery.length * s.qHeads);
      for (let p = 0; p < partialQuery.length; p++) {
        for (let h = 0; h < s.qHeads; h++) {
          // Head 0: rising with p (the maximum moves every round); head 1: spread over 200 nats;
          // the others random in [0, 8).
          partialLse[p * s.qHeads + h] = h === 0
            ? p * 0.7
            : h === 1
            ? rng.next() * 200 - 100
            : rng.next() * 8;
        }
      }
      // The second partial of the 17-entry list saw no key on head 2, and its o is NaN there.
      const empty = lists.entries[lists.offsets[4]! + 1]!;
      partialLse[empty * s.qHeads + 2] = EMPTY_LSE;
      partialO.fill(NaN, (empty * s.qHeads + 2) * d, (empty * s.qHeads + 3) * d);
      const { got, want } = await runReduction(lists, s, partialO, partialLse);
      let worst = 0;
      let nonFinite = 0;
      for (let i = 0; i < want.length; i++) {
        if (!Number.isFinite(got[i]!)) nonFinite++;
        else worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
      }
      assertStrictEquals(nonFinite, 0, `d=${d}: non-finite outputs`);
      assert(worst < 1e-5, `d=${d}: largest relative error ${worst}`);
    }
  },
});

Deno.test("reductionSource() unrolls every round and refuses a head dim past two vec4s per lane", () => {
  const src = reductionSource(shape(32, 8, 128));
  assert(!/for \(var \w+ = 0u;.*\/\/ unroll/.test(src), "no loop is left marked");
  assert(!src.includes("for (var u"), "no round loop is left");
  assert(src.includes("const U: u32 = 16u;"));
  let threw = false;
  try {
    reductionSource({ ...shape(4, 1, 128), headDim: 260 });
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
});

Deno.test({
  name: "prepareReduction() refuses on llvmpipe a list past the shader loop limit",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await testGpu();
    if (!gpu.info.description.includes("llvmpipe")) return; // hardware GPUs have no such limit
    const entries = 2_200_000;
    const lists = reductionLists(1, new Uint32Array(entries));
    const tiny = gpu.buffer("tiny", 16);
    try {
      await assertRejects(
        () => prepareReduction(gpu, lists, shape(4, 1, 64), tiny, tiny, tiny),
        GpuError,
        /2200000 partial results .* loop iterations/,
      );
    } finally {
      tiny.destroy();
    }
  },
});

Deno.test("mergeLists() lists each query's partials of both stages, the second shifted to its base", () => {
  const a = reductionLists(3, [2, 0, 2]);
  const b = reductionLists(3, [1, 2, 1]);
  const m = mergeLists(a, b, 8);
  assertEquals(Array.from(m.offsets), [0, 1, 3, 6]);
  assertEquals(Array.from(m.entries), [1, 8, 10, 0, 2, 9]);
  let threw = false;
  try {
    mergeLists(a, reductionLists(2, [0]), 4);
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw, "lists of different query counts are refused");
});

Deno.test("alignedPartialBase() starts a second stage where both partial buffers bind at 256 bytes", () => {
  for (const qHeads of [1, 3, 4, 8, 32, 40, 64]) {
    const s = shape(qHeads, 1, 64);
    for (const partials of [0, 1, 5, 63, 64, 65, 1000]) {
      const base = alignedPartialBase(partials, s);
      assert(base >= partials);
      assertStrictEquals((base * qHeads * 4) % 256, 0);
      assertStrictEquals((base * qHeads * 64 * 4) % 256, 0);
      // The smallest such index.
      if (base > partials) assert(((base - 1) * qHeads * 4) % 256 !== 0 || base - 1 < partials);
    }
  }
  assertStrictEquals(alignedPartialBase(61, shape(32, 8, 128)), 62);
});

import type { AttentionMethod } from "../kernels/method.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import { F16_MAX, f16LogitRange, logitLimitNote, maxAbsScore } from "../kernels/f16_logits.ts";
import { InvalidOutputError, Problem, runMethod } from "../kernels/problem.ts";
import { compareOutput, referenceAttention } from "../kernels/reference.ts";
import { chainTree, shape, skipDtype, testGpu } from "./_conformance.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";

const S = shape(4, 1, 64);

/**
 * A 16-token node and one query whose Q and K make every q·k = 63 x `base` + r_slot, with r_slot in
 * [0, 2) in steps of 1/8 (all exact in f16), and V = slot index + 1 in every dim: exact attention
 * weights differ by up to e^(2/8), so outputs move visibly when the logits are rounded.
 */
async function craftedProblem(base: number): Promise<Problem> {
  const gpu = await testGpu();
  const p = Problem.create(gpu, chainTree(1, 16), { shape: S, dtype: "f16", seed: 1 });
  const d = S.headDim;
  p.data.q.fill(1);
  for (let slot = 0; slot < p.data.slots; slot++) {
    const k = p.data.k.subarray(slot * d, (slot + 1) * d);
    k.fill(base);
    k[d - 1] = (slot % 16) / 8;
    p.data.v.subarray(slot * d, (slot + 1) * d).fill((slot % 16) + 1);
  }
  p.upload();
  return p;
}

Deno.test("f16LogitRange(): tree-mask overflows at 65504 / sqrt(d), radix at 65504, both round past 20", () => {
  const treeMask = getMethod("tree-mask"), radix = getMethod("radix");
  assertEquals(f16LogitRange(treeMask, 64), { overflow: F16_MAX / 8, accurate: 20.48 });
  assertEquals(f16LogitRange(radix, 128), { overflow: F16_MAX, accurate: 20.48 });
  for (
    const m of ["sequence", "deft-flatten", "deft-node", "deft-node-chunk", "cascade"] as const
  ) {
    assertEquals(f16LogitRange(getMethod(m), 128), null, m);
  }
});

// Regression (issue 8, #15): tree-mask returned an all-NaN output without an error once f16 q·k
// overflowed, and radix's failures from f16 logits did not say why.
Deno.test({
  name: "runMethod() refuses tree-mask's NaN output when f16 q·k overflows, and names the limit",
  ignore: skipDtype("f16"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const p = await craftedProblem(1040); // q·k = 63 x 1040 + r = 65520 + r > 65504
    try {
      const e = await runMethod(p, getMethod("tree-mask")).then(() => null, (e) => e);
      assert(e instanceof InvalidOutputError, `expected an InvalidOutputError, got ${e}`);
      assertMatch(e.message, /tree-mask wrote \d+ NaN or infinite output values/);
      assertMatch(e.message, /stores q·k before the 1\/sqrt\(d\) scale in f16/);
      assertMatch(e.message, /beyond the ±8188 at which the stored value passes f16's 65504/);
      assert(e.scan.nonFinite > 0);
      // Radix stores the scaled logits (about 8190): no overflow, a finite output.
      const { output } = await runMethod(p, getMethod("radix"));
      assert(output.every(Number.isFinite));
    } finally {
      p.destroy();
    }
  },
});

Deno.test({
  name:
    "logitLimitNote() names f16 rounding when radix and tree-mask miss the bound on large logits",
  ignore: skipDtype("f16"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const p = await craftedProblem(128); // logits 1008 + r / 8
    try {
      const expected = referenceAttention(p.ix, p.layout, p.data);
      const error = async (m: AttentionMethod) => {
        const { output } = await runMethod(p, m);
        return compareOutput(output, expected, S, p.ix.queryCount).maxRelError;
      };
      for (const name of ["radix", "tree-mask"] as const) {
        const m = getMethod(name);
        const e = await error(m);
        assert(e > 1e-2, `${name}: error ${e} should exceed the f16 bound on these logits`);
        const note = logitLimitNote(m, p.ix, p.layout, p.data) ?? "(none)";
        assertMatch(note, new RegExp(`^${name} stores .* in f16`));
        assertMatch(note, /the largest \|logit\| here is 1008; f16 rounds a stored logit/);
        assertMatch(note, /beyond about ±20\.5 the output can miss the 0\.01 bound/);
        assertEquals(
          logitLimitNote(m, p.ix, p.layout, p.data, undefined, { overflowOnly: true }),
          null,
        );
      }
      // A method with f32 logits is exact on the same data, and gets no note.
      const flatten = getMethod("deft-flatten");
      assert((await error(flatten)) < 1e-4);
      assertEquals(logitLimitNote(flatten, p.ix, p.layout, p.data), null);
      assertEquals(maxAbsScore(p.ix, p.layout, p.data), 63 * 128 + 15 / 8);
    } finally {
      p.destroy();
    }
  },
});

Deno.test({
  name: "logitLimitNote() is silent on f32 data and on logits within the range",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await testGpu();
    const p = Problem.create(gpu, chainTree(3, 20), { shape: S, dtype: "f32", seed: 2 });
    try {
      // Random data: |logit| < 8, and f32 has no such limit anyway.
      assertEquals(logitLimitNote(getMethod("radix"), p.ix, p.layout, p.data), null);
      assertEquals(
        logitLimitNote(getMethod("tree-mask"), p.ix, p.layout, { ...p.data, dtype: "f16" }),
        null,
      );
    } finally {
      p.destroy();
    }
  },
});

import { POISON_BITS } from "../kernels/reference.ts";
import {
  allRows,
  referenceOf,
  sampleRows,
  TOLERANCE,
  verdictProblems,
  verify,
} from "../kernels/verify.ts";
import { kvLayout, randomAttentionData } from "../kernels/layout.ts";
import { IndexedTree } from "../workloads/tree.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";

Deno.test("sampleRows() samples distinct seeded rows in output order, or all of them", () => {
  const all = sampleRows(2, 3, 10, 1);
  assertEquals(all, allRows(2, 3));
  assertEquals(all.length, 6);
  const some = sampleRows(100, 32, 64, 5);
  assertEquals(some.length, 64);
  assertEquals(new Set(some.map((r) => r.query * 32 + r.head)).size, 64);
  assertEquals(sampleRows(100, 32, 64, 5), some);
  assert(some.every((r) => r.query < 100 && r.head < 32));
  const order = some.map((r) => r.query * 32 + r.head);
  assertEquals(order, [...order].sort((a, b) => a - b));
});

Deno.test("verify() holds the error to the dtype's tolerance and counts bad values over the whole output", () => {
  assertEquals(TOLERANCE, { f32: 1e-4, f16: 1e-2 });
  const ix = new IndexedTree({
    nodes: [{ id: 0, parent: null, tokens: 5 }, { id: 1, parent: 0, tokens: 3 }],
    queries: [{ node: 0 }, { node: 1 }],
  });
  const shape = { name: "t", qHeads: 2, kvHeads: 1, headDim: 4, layers: 1 };
  const layout = kvLayout(ix);
  const data = randomAttentionData(shape, "f32", 2, layout.slots, 3);
  const full = referenceOf({ ix, layout, data });
  assertEquals(full.rows.length, 4);
  const exact = Float32Array.from(full.expected);
  assert(verify(exact, full, shape, "f32").passed);
  // 0.1% off: within f16's bound, not f32's.
  const off = exact.map((x, i) => (i === 5 ? x * 1.001 : x));
  const f32 = verify(off, full, shape, "f32");
  assert(!f32.passed && verify(off, full, shape, "f16").passed);
  assertEquals(f32.worst, { query: 0, head: 1 });
  assertMatch(
    verdictProblems(f32)[0]!,
    /^max relative error 0\.00100 > 0\.0001 over 4 rows \(worst row: query 0, head 1\)$/,
  );
  // Unwritten and NaN values outside the checked rows still fail the output.
  const one = referenceOf({ ix, layout, data }, [{ query: 0, head: 0 }]);
  const bad = Float32Array.from(exact);
  new Uint32Array(bad.buffer)[12] = POISON_BITS; // query 1, head 1
  bad[9] = NaN;
  const v = verify(bad, one, shape, "f32");
  assertEquals([v.rows, v.unwritten, v.nonFinite, v.passed], [1, 1, 1, false]);
  assertEquals(v.badRows, [{ query: 1, head: 0 }, { query: 1, head: 1 }]);
  assertEquals(verdictProblems(v), ["1 output values unwritten", "1 NaN or infinite values"]);
});

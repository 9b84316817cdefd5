import { assert, assertAllClose, assertEquals, assertThrows } from "./_assert.ts";
import { IndexedTree, type Tree } from "../workloads/tree.ts";
import type { ModelShape } from "../workloads/shapes.ts";
import { kvLayout, randomAttentionData } from "../kernels/layout.ts";
import {
  compareOutput,
  POISON_BITS,
  querySlots,
  referenceAttention,
  scanOutput,
} from "../kernels/reference.ts";
import { chainTree, internalQueriesTree } from "./_conformance.ts";

const shape: ModelShape = { name: "t", qHeads: 4, kvHeads: 2, headDim: 16, layers: 1 };
const seed = () => (Math.random() * 2 ** 31) >>> 0;

/** Ordinary causal attention of the last token over a flat list of K/V rows, written separately. */
function causalLastToken(q: number[], keys: number[][], values: number[][]): number[] {
  const d = q.length;
  const s = keys.map((k) => k.reduce((acc, x, i) => acc + x * q[i]!, 0) / Math.sqrt(d));
  const m = Math.max(...s);
  const w = s.map((x) => Math.exp(x - m));
  const z = w.reduce((a, b) => a + b, 0);
  return Array.from(
    { length: d },
    (_, i) => values.reduce((acc, v, j) => acc + w[j]! * v[i]!, 0) / z,
  );
}

Deno.test("random data is never zero, and f16 data is f16-representable", () => {
  const data = randomAttentionData(shape, "f16", 3, 50, seed());
  for (const a of [data.q, data.k, data.v]) {
    assert(a instanceof Float16Array);
    for (const x of a) assert(x !== 0 && Number.isFinite(x));
  }
  const f32 = randomAttentionData(shape, "f32", 3, 50, 9);
  assertEquals(f32.q, randomAttentionData(shape, "f32", 3, 50, 9).q);
});

Deno.test("a chain equals ordinary causal attention of its last token", () => {
  const tree = chainTree(6, 9);
  const ix = new IndexedTree(tree);
  const layout = kvLayout(ix, "shuffled", 3);
  const data = randomAttentionData(shape, "f32", 1, layout.slots, seed());
  const out = referenceAttention(ix, layout, data);
  const d = shape.headDim;
  // Walk the chain's tokens in order, reading the pool through the layout.
  const tokens: number[] = [];
  for (let v = 0; v < 6; v++) for (let t = 0; t < 9; t++) tokens.push(layout.slotStart[v]! + t);
  for (let h = 0; h < shape.qHeads; h++) {
    const kvh = Math.floor(h / 2);
    const q = Array.from(data.q.subarray(h * d, (h + 1) * d));
    const row = (buf: Float32Array | Float16Array, slot: number) =>
      Array.from(
        buf.subarray((slot * shape.kvHeads + kvh) * d, (slot * shape.kvHeads + kvh + 1) * d),
      );
    const want = causalLastToken(
      q,
      tokens.map((s) => row(data.k, s)),
      tokens.map((s) => row(data.v, s)),
    );
    assertAllClose(out.subarray(h * d, (h + 1) * d), want, { atol: 1e-12, rtol: 1e-10 });
  }
});

Deno.test("permuting KV tokens within a path changes nothing", () => {
  const tree = internalQueriesTree();
  const ix = new IndexedTree(tree);
  const layout = kvLayout(ix, "id");
  const data = randomAttentionData(shape, "f32", ix.queryCount, layout.slots, seed());
  const before = referenceAttention(ix, layout, data);
  // Reverse the tokens of every node in place (K and V together).
  const row = shape.kvHeads * shape.headDim;
  const k = data.k.slice(), v = data.v.slice();
  for (let n = 0; n < ix.nodeCount; n++) {
    const s = layout.slotStart[n]!, len = ix.tokens(n);
    for (let t = 0; t < len; t++) {
      k.set(data.k.subarray((s + t) * row, (s + t + 1) * row), (s + len - 1 - t) * row);
      v.set(data.v.subarray((s + t) * row, (s + t + 1) * row), (s + len - 1 - t) * row);
    }
  }
  const after = referenceAttention(ix, layout, { ...data, k, v });
  assertAllClose(after, before, { atol: 1e-13, rtol: 1e-11 });
});

Deno.test("a query sees nothing outside its path, and everything on it", () => {
  const tree: Tree = internalQueriesTree();
  const ix = new IndexedTree(tree);
  const layout = kvLayout(ix, "shuffled", 5);
  const data = randomAttentionData(shape, "f32", ix.queryCount, layout.slots, seed());
  const before = referenceAttention(ix, layout, data);
  const q = 2; // on node 2 (path 10 -> 3 -> 2)
  const onPath = new Set(querySlots(ix, layout, q));
  const row = shape.kvHeads * shape.headDim;
  const outside = data.v.slice();
  for (let s = 0; s < layout.slots; s++) {
    if (!onPath.has(s)) { for (let i = 0; i < row; i++) outside[s * row + i] = 1000; }
  }
  const afterOutside = referenceAttention(ix, layout, { ...data, v: outside });
  const d = shape.headDim;
  const span = (a: Float64Array) => a.subarray(q * shape.qHeads * d, (q + 1) * shape.qHeads * d);
  assertAllClose(span(afterOutside), span(before), { atol: 0, rtol: 0 });
  const inside = data.v.slice();
  const one = [...onPath][0]!;
  for (let i = 0; i < row; i++) inside[one * row + i] = 1000;
  const afterInside = referenceAttention(ix, layout, { ...data, v: inside });
  assert(Math.abs(span(afterInside)[0]! - span(before)[0]!) > 1e-3);
});

Deno.test("GQA: query heads of one group read the same KV head", () => {
  const ix = new IndexedTree(chainTree(1, 20));
  const layout = kvLayout(ix);
  const data = randomAttentionData(shape, "f32", 1, layout.slots, seed());
  const d = shape.headDim;
  // Give heads 0 and 1 (group 0) the same query: their outputs must match; head 2 (group 1) differs.
  const q = data.q.slice();
  q.copyWithin(d, 0, d);
  q.copyWithin(2 * d, 0, d);
  const out = referenceAttention(ix, layout, { ...data, q });
  assertAllClose(out.subarray(d, 2 * d), out.subarray(0, d), { atol: 0, rtol: 0 });
  assert(Math.abs(out[2 * d]! - out[0]!) > 1e-6);
});

Deno.test("the softmax is stable for huge scores", () => {
  const ix = new IndexedTree(chainTree(1, 8));
  const layout = kvLayout(ix);
  const data = randomAttentionData(shape, "f32", 1, layout.slots, 1);
  const q = data.q.map((x) => x * 1e4);
  const out = referenceAttention(ix, layout, { ...data, q });
  assert(out.every(Number.isFinite));
});

Deno.test("referenceAttention() on selected rows equals the full computation", () => {
  const ix = new IndexedTree(internalQueriesTree());
  const layout = kvLayout(ix, "shuffled", 2);
  const data = randomAttentionData(shape, "f32", ix.queryCount, layout.slots, seed());
  const all = referenceAttention(ix, layout, data);
  const rows = [{ query: 4, head: 3 }, { query: 0, head: 1 }];
  const some = referenceAttention(ix, layout, data, rows);
  const d = shape.headDim;
  for (const [r, { query, head }] of rows.entries()) {
    const base = (query * shape.qHeads + head) * d;
    assertAllClose(some.subarray(r * d, (r + 1) * d), all.subarray(base, base + d), {
      atol: 0,
      rtol: 0,
    });
  }
  assertThrows(() => referenceAttention(ix, layout, data, [{ query: 99, head: 0 }]), RangeError);
});

Deno.test("compareOutput() finds unwritten, NaN and wrong elements", () => {
  const s = { qHeads: 1, headDim: 4 };
  const expected = new Float64Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const actual = new Float32Array(expected);
  assertEquals(compareOutput(actual, expected, s, 2).maxRelError, 0);
  new Uint32Array(actual.buffer)[1] = POISON_BITS;
  actual[6] = NaN;
  actual[4] = 5.5;
  const r = compareOutput(actual, expected, s, 2);
  assertEquals([r.unwritten, r.nonFinite], [1, 1]);
  assertEquals(r.worst, { query: 1, head: 0 });
  assert(Math.abs(r.maxRelError - 0.5 / 8) < 1e-9);
});

Deno.test("scanOutput() counts unwritten and NaN/infinite values over the whole output, by row", () => {
  const shape = { qHeads: 2, headDim: 4 };
  const out = new Float32Array(3 * 2 * 4).fill(0.5);
  const bits = new Uint32Array(out.buffer);
  bits[1] = POISON_BITS; // query 0, head 0
  bits[2] = POISON_BITS;
  out[13] = NaN; // query 1, head 1
  out[22] = -Infinity; // query 2, head 1
  const scan = scanOutput(out, shape);
  assertEquals(scan.unwritten, 2);
  assertEquals(scan.nonFinite, 2);
  assertEquals(scan.badRows, [{ query: 0, head: 0 }, { query: 1, head: 1 }, {
    query: 2,
    head: 1,
  }]);
  assertEquals(scanOutput(new Float32Array(8), shape), { unwritten: 0, nonFinite: 0, badRows: [] });
});

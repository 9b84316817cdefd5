import {
  markSlotRuns,
  mmaKernel,
  mmaSource,
  mmaVariantName,
  mmaWorkgroupBytes,
  SLOT_RUN_BIT,
} from "../kernels/group_attention_mma.ts";
import type { KernelCaps } from "../kernels/method.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

const H200: KernelCaps = {
  matrix: { M: 16, N: 16, K: 16 },
  subgroupSize: 32,
  workgroupStorage: 49152,
} as KernelCaps;
const shape = MODEL_SHAPES["llama3-8b"]!;

Deno.test("markSlotRuns marks exactly the tokens from which `keys` slots are consecutive", () => {
  const slots = new Uint32Array([5, 6, 7, 8, 20, 21, 22, 0, 1]);
  markSlotRuns(slots, 3);
  const marked = [...slots].map((s) => (s & SLOT_RUN_BIT) !== 0);
  assertEquals(marked, [true, true, false, false, true, false, false, false, false]);
  assertEquals([...slots].map((s) => s & 0x7fffffff), [5, 6, 7, 8, 20, 21, 22, 0, 1]);
  // Marking twice (or with another length) starts from the plain slots again.
  markSlotRuns(slots, 4);
  assertEquals([...slots].map((s) => (s & SLOT_RUN_BIT) !== 0), [
    true,
    false,
    false,
    false,
    false,
    false,
    false,
    false,
    false,
  ]);
});

Deno.test("the direct matrix kernel is a variant of its own, with the pool bindings and no K/V staging barrier", () => {
  const staged = mmaKernel(shape, "f16", H200, { rows: 64, keys: 16 });
  const direct = mmaKernel(shape, "f16", H200, { rows: 64, keys: 16, load: "direct" });
  assertEquals(mmaVariantName(staged), "mma-16x16x16-r64-k16");
  assertEquals(mmaVariantName(direct), "mma-16x16x16-r64-k16-direct");
  const src = mmaSource({ shape, kernel: direct, maskWords: 2, enables: "" });
  assert(src.includes("var<storage, read> k16: array<f16>"), "direct kernel binds K as f16");
  assert(/subgroupMatrixLoad<[^>]+>, col_major>\(&k16/.test(src), "K^T fragments from the pool");
  assert(!mmaSource({ shape, kernel: staged, maskWords: 2, enables: "" }).includes("read> k16"));
  // Its workgroup memory is below the staged kernel's (no mask or slot staging).
  assert(mmaWorkgroupBytes(shape, direct, 2) <= mmaWorkgroupBytes(shape, staged, 2));
  assertThrows(
    () => mmaKernel(shape, "f16", H200, { rows: 64, keys: 16, load: "cached" as "direct" }),
    RangeError,
    /load/,
  );
});

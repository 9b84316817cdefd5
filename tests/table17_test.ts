/**
 * The paper-accounting IO of the methods' own plans, summed over whole decoding runs and scaled to
 * the paper's 32 layers (Llama-3-8B: 32 query heads of 128 dims, fp16), reproduces the paper's
 * Table 17.
 */
import { assertAlmostEquals, assertEquals } from "./_assert.ts";
import { kvLayout } from "../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type MethodName } from "../kernels/method.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import { getPreset } from "../workloads/presets.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import { IndexedTree } from "../workloads/tree.ts";

const shape = MODEL_SHAPES["llama3-8b"]!;

/** Run totals of paper KV and mask bytes per method, whole model. */
function paperTotals(preset: string, methods: MethodName[], stride = 1) {
  const run = getPreset(preset).build(1);
  const totals = new Map(methods.map((m) => [m, { kv: 0, mask: 0, partial: 0 }]));
  for (let i = 0; i < run.iterations; i += stride) {
    const ix = new IndexedTree(run.snapshot(i));
    const layout = kvLayout(ix);
    const weight = Math.min(stride, run.iterations - i);
    for (const m of methods) {
      const plan = getMethod(m).plan({
        ix,
        layout,
        shape,
        dtype: "f16",
        options: DEFAULT_METHOD_OPTIONS,
      });
      const t = totals.get(m)!;
      t.kv += weight * plan.counts.paper.kvBytes * shape.layers;
      t.mask += weight * plan.counts.paper.maskBytes * shape.layers;
      t.partial += weight * plan.counts.paper.partialBytes * shape.layers;
    }
  }
  return totals;
}

const tb = (bytes: number) => Math.round(bytes / 1e10) / 100;

Deno.test("paper accounting of the plans reproduces Table 17 KV IO for few-shot prompting", () => {
  const cases: [string, number, number][] = [
    // preset, Radix/Flash-Decoding TB, DeFT-Flatten TB (paper Table 17)
    ["few-shot-b20", 17.62, 1.68],
    ["few-shot-b30", 26.43, 2.10],
    ["few-shot-b50", 44.05, 2.94],
  ];
  for (const [preset, seq, deft] of cases) {
    const t = paperTotals(preset, ["sequence", "radix", "deft-flatten", "deft-node", "tree-mask"]);
    assertEquals(tb(t.get("sequence")!.kv), seq, `${preset} sequence`);
    assertEquals(tb(t.get("radix")!.kv), seq, `${preset} radix`);
    assertEquals(tb(t.get("deft-flatten")!.kv), deft, `${preset} deft-flatten`);
    assertEquals(tb(t.get("deft-node")!.kv), deft, `${preset} deft-node`);
    assertEquals(tb(t.get("tree-mask")!.kv), deft, `${preset} tree-mask KV`);
    assertEquals(t.get("deft-flatten")!.partial, 0);
  }
});

Deno.test("Table 17: Medusa's partial results are 8·l_n·N_tree (b=20: 1.05 TB, b=50: 4.61 TB)", () => {
  const b20 = paperTotals("few-shot-b20", ["tree-mask"]).get("tree-mask")!;
  const b50 = paperTotals("few-shot-b50", ["tree-mask"]).get("tree-mask")!;
  assertAlmostEquals(b20.partial / 1e12, 1.05, 0.01); // within 1% of the paper
  assertAlmostEquals(b50.partial / 1e12, 4.61, 0.02);
});

Deno.test("Table 17: speculative decoding KV reductions of the plans (96.9% at t=32, 99.6% at t=256)", () => {
  for (const [preset, pct] of [["speculative-t32", 96.88], ["speculative-t256", 99.58]] as const) {
    const t = paperTotals(preset, ["sequence", "deft-flatten"], 10);
    const reduction = 100 * (1 - t.get("deft-flatten")!.kv / t.get("sequence")!.kv);
    assertAlmostEquals(reduction, pct, 0.1, 0, `${preset}: ${reduction}`);
  }
});

import { getPreset } from "../../workloads/presets.ts";
import { MODEL_SHAPES } from "../../workloads/shapes.ts";
import { IndexedTree } from "../../workloads/tree.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type PlanInput } from "../../kernels/method.ts";
import { treeMask } from "../../kernels/methods/tree_mask.ts";

// Large trees of the paper's workloads at their last iteration (the biggest snapshot of the run).
function input(preset: string): PlanInput {
  const run = getPreset(preset).build(1);
  const ix = new IndexedTree(run.snapshot(run.iterations - 1));
  return {
    ix,
    layout: kvLayout(ix, "shuffled", 1),
    shape: MODEL_SHAPES["llama3-8b"]!,
    dtype: "f16",
    options: DEFAULT_METHOD_OPTIONS,
  };
}

const fewShot = input("few-shot-b50");
const speculative = input("speculative-t256");

Deno.bench({
  name: "tree-mask plan: few-shot b50, last iteration (dense mask 50 x ~24k)",
  group: "tree-mask plan",
  baseline: true,
  fn: () => {
    treeMask.plan(fewShot);
  },
});

Deno.bench({
  name: "tree-mask plan: speculative t256, last iteration (dense mask 256 x ~5.5k)",
  group: "tree-mask plan",
  fn: () => {
    treeMask.plan(speculative);
  },
});

/**
 * Planning cost of `radix` on the paper's largest trees: few-shot b=50 with a 4000-token prompt
 * at its last iteration, and a speculative token tree of 256 on a 6000-token prefix.
 */
import { planRadix } from "../../kernels/methods/radix.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type PlanInput } from "../../kernels/method.ts";
import { FewShotRun } from "../../workloads/few_shot.ts";
import { MODEL_SHAPES } from "../../workloads/shapes.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import { IndexedTree, type Tree } from "../../workloads/tree.ts";

function input(tree: Tree): PlanInput {
  const ix = new IndexedTree(tree);
  return {
    ix,
    layout: kvLayout(ix, "shuffled", 1),
    shape: MODEL_SHAPES["llama3-8b"]!,
    dtype: "f16",
    options: DEFAULT_METHOD_OPTIONS,
  };
}

const fewShot = input(new FewShotRun({ prompt: 4000, branches: 50, generated: 400 }).snapshot(399));
const speculative = input(
  new SpeculativeRun({ prefix: 6000, treeTokens: 256, steps: 1, seed: 1, topology: "medusa" })
    .snapshot(0),
);

Deno.bench({
  name: "radix plan: few-shot b=50, prompt 4000, last iteration",
  group: "radix plan",
  baseline: true,
  fn: () => {
    planRadix(fewShot);
  },
});

Deno.bench({
  name: "radix plan: speculative t=256 on a 6000-token prefix",
  group: "radix plan",
  fn: () => {
    planRadix(speculative);
  },
});

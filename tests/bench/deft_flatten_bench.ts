import { getPreset } from "../../workloads/presets.ts";
import { MODEL_SHAPES } from "../../workloads/shapes.ts";
import { SpeculativeRun } from "../../workloads/speculative.ts";
import { IndexedTree, type Tree } from "../../workloads/tree.ts";
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type PlanInput } from "../../kernels/method.ts";
import { deftFlatten } from "../../kernels/methods/deft_flatten.ts";

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

// The largest snapshot (last iteration) of a preset run.
function last(preset: string): PlanInput {
  const run = getPreset(preset).build(1);
  return input(run.snapshot(run.iterations - 1));
}

const cases: [string, PlanInput][] = [
  [
    "20k-token tree, 256 queries (prefix 20000 + Medusa token tree of 256)",
    input(
      new SpeculativeRun({ prefix: 20000, treeTokens: 256, steps: 1, seed: 1, topology: "medusa" })
        .snapshot(0),
    ),
  ],
  ["few-shot b50, last iteration (4000 + 50 x 400 tokens)", last("few-shot-b50")],
  ["sorting (ToT), last iteration", last("sorting")],
  ["level grid 1, 2, ..., 128, 1024 nodes of 16 tokens", last("grid-binary-16")],
];

cases.forEach(([name, inp], i) => {
  Deno.bench({
    name: `deft-flatten plan: ${name}`,
    group: "deft-flatten plan",
    baseline: i === 0,
    fn: () => {
      deftFlatten.plan(inp);
    },
  });
});

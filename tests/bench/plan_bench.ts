/**
 * Planning cost of every method (`deno task bench:plan`) on the paper's largest trees. The DeFT
 * paper's Python rebuilds its metadata in about 1 ms per iteration on smaller trees; deft-flatten
 * must plan the 20k-token tree with 256 queries in well under that (speed is measured here, by `deno task bench:plan`, never asserted by a timed test).
 */
import { kvLayout } from "../../kernels/layout.ts";
import { DEFAULT_METHOD_OPTIONS, type PlanInput } from "../../kernels/method.ts";
import { METHODS } from "../../kernels/methods/mod.ts";
import { getPreset } from "../../workloads/presets.ts";
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

/** The largest snapshot (last iteration) of a preset run. */
function last(preset: string): PlanInput {
  const run = getPreset(preset).build(1);
  return input(run.snapshot(run.iterations - 1));
}

const speculative = (prefix: number, t: number) =>
  input(
    new SpeculativeRun({ prefix, treeTokens: t, steps: 1, seed: 1, topology: "medusa" }).snapshot(
      0,
    ),
  );

/**
 * `inp` planned for an H200 on Dawn (16 x 16 x 16 subgroup matrices, 48 KiB of workgroup memory, 132
 * resident workgroups from a calibration): deft-flatten's rounds model then plans several block sizes.
 */
function h200(inp: PlanInput): PlanInput {
  return {
    ...inp,
    caps: {
      runtime: "dawn",
      matrix: { componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 },
      subgroups: true,
      subgroupSize: 32,
      workgroupStorage: 49152,
      residentWorkgroups: 132,
    },
  };
}

const cases: [string, PlanInput][] = [
  ["20k-token tree, 256 queries (prefix 20000 + Medusa tree of 256)", speculative(20000, 256)],
  ["the same on an H200 (matrix units, 132 resident workgroups)", h200(speculative(20000, 256))],
  [
    "speculative t=256, step 832 (4562 + 256), on an H200",
    h200(input(
      getPreset("speculative-t256").build(1).snapshot(832),
    )),
  ],
  ["speculative t=256 on a 6000-token prefix", speculative(6000, 256)],
  ["few-shot b50, last iteration (4000 + 50 x 400 tokens)", last("few-shot-b50")],
  ["sorting (ToT), last iteration", last("sorting")],
  ["level grid of 1, 2, ..., 128, 1024 nodes of 16 tokens", last("grid-binary-16")],
];

for (const [name, method] of METHODS) {
  cases.forEach(([tree, inp], i) => {
    Deno.bench({
      name: `${name} plan: ${tree}`,
      group: `${name} plan`,
      baseline: i === 0,
      fn: () => {
        method.plan(inp);
      },
    });
  });
}

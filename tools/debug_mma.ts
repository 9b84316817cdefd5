/**
 * Debugs the matrix kernel against the FMA kernel on one small tree: both group-attention plans
 * of deft-flatten share their groups, so their partial results (o, lse) are numbered alike and can
 * be compared element by element. Prints where they differ (rows, dims) and the values.
 *
 *     deno run -A tools/debug_mma.ts [--runtime dawn] [--rows 64] [--keys 32] [--split 1] [--tokens 40] [--queries 4]
 *       [--shape llama3-8b|Q/KV/D]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Gpu, type RuntimeName } from "../kernels/gpu.ts";
import type { GroupPlan } from "../kernels/group_attention.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import { Problem } from "../kernels/problem.ts";
import { MODEL_SHAPES } from "../workloads/shapes.ts";
import type { Tree, TreeNode } from "../workloads/tree.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runtime: { type: "string", default: "dawn" },
    rows: { type: "string", default: "64" },
    keys: { type: "string", default: "32" },
    split: { type: "string", default: "1" },
    tokens: { type: "string", default: "40" },
    queries: { type: "string", default: "4" },
    shape: { type: "string", default: "llama3-8b" },
  },
});
const gpu = await Gpu.open({ runtime: values.runtime as RuntimeName });
console.log(gpu.info.description, JSON.stringify(gpu.matrixConfig()), gpu.info.subgroupMinSize);
// A named model shape, or Q/KV/D (e.g. 4/4/64).
const custom = /^(\d+)\/(\d+)\/(\d+)$/.exec(values.shape!);
const shape = custom
  ? {
    name: values.shape!,
    qHeads: Number(custom[1]),
    kvHeads: Number(custom[2]),
    headDim: Number(custom[3]),
    layers: 1,
  }
  : MODEL_SHAPES[values.shape!]!;
const nq = Number(values.queries);
const nodes: TreeNode[] = [{ id: 0, parent: null, tokens: Number(values.tokens) }];
for (let i = 1; i <= nq; i++) nodes.push({ id: i, parent: 0, tokens: 1 });
const tree: Tree = { nodes, queries: nodes.slice(1).map((n) => ({ node: n.id })) };
const problem = Problem.create(gpu, tree, { shape, dtype: "f16", seed: 3 });
const method = getMethod("deft-flatten");

async function partials(kernel: "fma" | "mma") {
  const plan = problem.plan(method, {
    kernel,
    blockSize: 64,
    mma: {
      rows: Number(values.rows),
      keys: Number(values.keys),
      split: Number(values.split),
      fit: 0,
    },
  }) as GroupPlan;
  const prepared = await method.prepare(gpu, plan, problem.buffers);
  // The partial buffers are the prepared method's own; find them through a second bind: simplest is
  // to run and read the final output plus re-derive partials with a copy hook.
  const bufs: GPUBuffer[] = [];
  const orig = gpu.buffer.bind(gpu);
  void orig;
  problem.poisonOutput();
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  prepared.encode(pass);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
  const out = new Float32Array(await gpu.read(problem.buffers.out));
  prepared.destroy();
  void bufs;
  return { plan, out };
}

const a = await partials("fma");
const b = await partials("mma");
console.log("variants", a.plan.kernelVariant, b.plan.kernelVariant);
const d = shape.headDim;
let bad = 0;
for (let q = 0; q < nq; q++) {
  for (let h = 0; h < shape.qHeads; h++) {
    const base = (q * shape.qHeads + h) * d;
    let rowBad = 0;
    let first = -1;
    for (let i = 0; i < d; i++) {
      const x = a.out[base + i]!, y = b.out[base + i]!;
      if (!(Math.abs(x - y) <= 1e-2 * (Math.abs(x) + 1e-3))) {
        rowBad++;
        if (first < 0) first = i;
      }
    }
    if (rowBad > 0) {
      bad++;
      if (bad <= 12) {
        console.log(
          `q${q} h${h}: ${rowBad}/${d} dims differ, first ${first}: fma ${
            a.out.slice(base + first, base + first + 4).join(",")
          } mma ${b.out.slice(base + first, base + first + 4).join(",")}`,
        );
      }
    }
  }
}
console.log(`${bad} of ${nq * shape.qHeads} rows differ`);
Deno.exit(0);

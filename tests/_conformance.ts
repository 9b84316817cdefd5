/**
 * The conformance suite every attention method runs (hono-style shared behavioural suite): each
 * method against the float64 reference on random, non-zero data drawn fresh per test, over trees of
 * every kind, GQA groups 1/4/8, head dims 64/128 and dtypes f16/f32, and every kernel variant of the
 * method's record the device can run: `fma` always, and `mma` (subgroup matrices) for f16 cases on
 * a device with an f16 x f16 -> f32 matrix configuration, for the methods that have it. The device
 * comes from `tests/_gpu.ts` (`DEFT_RUNTIME`, `DAWN_NODE`, `DEFT_REQUIRE_SUBGROUP_MATRIX`).
 *
 * On a software (CPU) adapter the suite runs a reduced matrix by default (see
 * {@linkcode FULL_CONFORMANCE}): every method and kernel variant still against the reference on
 * random data, on the cases marked `reduced` (fewer trees and shapes: on a CPU each new shader
 * takes seconds to a minute to compile). `DEFT_FULL_CONFORMANCE=1` (set by CI) runs all of it.
 */

import { FewShotRun } from "../workloads/few_shot.ts";
import { ReasoningRun } from "../workloads/reasoning.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { Tree, TreeNode } from "../workloads/tree.ts";
import {
  type AttentionMethod,
  DEFAULT_METHOD_OPTIONS,
  kernelCaps,
  type MethodOptions,
  type MethodRecord,
  type Plan,
} from "../kernels/method.ts";
import { type DeviceOffer, deviceOffer, missingNeeds } from "../kernels/options.ts";
import { REQUIRE_SUBGROUP_MATRIX, TEST_RUNTIME, testGpu } from "./_gpu.ts";
import { isSoftwareAdapter } from "../kernels/gpu.ts";
import { Problem, runMethod } from "../kernels/problem.ts";
import { querySlots } from "../kernels/reference.ts";
import { referenceOf, type Verdict, verdictProblems, verify } from "../kernels/verify.ts";

export { testGpu };

/**
 * What the test device offers, or null when it cannot be opened (its tests then fail one by one
 * with the reason; with DEFT_REQUIRE_SUBGROUP_MATRIX=1 the suite fails to load instead).
 */
const DEVICE:
  | { hasF16: boolean; offer: DeviceOffer; software: string | null; subgroupMinSize: number }
  | null = await (async () => {
    try {
      const gpu = await testGpu();
      return {
        hasF16: gpu.hasF16,
        offer: deviceOffer(kernelCaps(gpu), gpu.hasF16),
        subgroupMinSize: gpu.hasSubgroups ? gpu.info.subgroupMinSize : 0,
        software: isSoftwareAdapter(gpu.info)
          ? gpu.info.description || gpu.info.vendor || "software adapter"
          : null,
      };
    } catch (e) {
      if (REQUIRE_SUBGROUP_MATRIX) throw e;
      console.warn(`warning: no test device on runtime ${TEST_RUNTIME}: ${(e as Error).message}`);
      return null;
    }
  })();

/** The software adapter the tests run on (its description), or null on a GPU or without one. */
export const SOFTWARE_ADAPTER: string | null = DEVICE?.software ?? null;

/**
 * `DEFT_HEAVY_CASES=1`: software adapters also run the cases otherwise left to GPUs (tiles that
 * compile for minutes in a `deno test` process on lavapipe; `tools/run_tests.ts` compiles them in
 * seconds, and CI's Dawn step runs them that way).
 */
export const HEAVY_CASES: boolean = Deno.env.get("DEFT_HEAVY_CASES") === "1";

/**
 * Whether the whole conformance matrix runs: on a GPU, or with `DEFT_FULL_CONFORMANCE=1` (CI sets
 * it). On a software adapter only the cases marked `reduced` run by default, so `deno task test`
 * ends in minutes on 2 CPU cores; tests/conformance_scope_test.ts says so once in the output.
 */
export const FULL_CONFORMANCE: boolean = fullConformance(
  Deno.env.get("DEFT_FULL_CONFORMANCE"),
  SOFTWARE_ADAPTER,
);

/** The rule of {@linkcode FULL_CONFORMANCE}: `DEFT_FULL_CONFORMANCE=1`, or no software adapter. */
export function fullConformance(env: string | undefined, software: string | null): boolean {
  return env === "1" || software === null;
}

/**
 * True when `c` runs in this test run's matrix: the full matrix runs every case but the stand-ins
 * marked `reduced: "only"`; the reduced one runs the cases marked `reduced`.
 */
export function inMatrix(
  c: { reduced?: boolean | "only" },
  full: boolean = FULL_CONFORMANCE,
): boolean {
  return full ? c.reduced !== "only" : c.reduced === true || c.reduced === "only";
}

/**
 * Whether the test device offers `shader-f16`. Without it (Mesa's llvmpipe through OpenGL on a
 * fresh machine) f16 kernel tests are reported as ignored, with a warning, unless
 * DEFT_REQUIRE_F16=1 (set by CI, which installs the Vulkan software adapter) makes them run.
 * Without a device at all nothing is ignored: every kernel test fails with the reason.
 */
export const HAS_F16: boolean = DEVICE?.hasF16 ?? true;
const REQUIRE_F16 = Deno.env.get("DEFT_REQUIRE_F16") === "1";

/**
 * Whether f16 kernel tests are ignored on this machine (no `shader-f16`, and DEFT_REQUIRE_F16 is
 * not set); tests/conformance_scope_test.ts says so once in the output.
 */
export const F16_IGNORED: boolean = !HAS_F16 && !REQUIRE_F16;

/**
 * The smallest matrix: a software adapter without `shader-f16` (Mesa's llvmpipe through OpenGL,
 * the only adapter of a fresh machine without a Vulkan driver), unless DEFT_FULL_CONFORMANCE=1.
 * There each new kernel compiles for 20 s to over a minute (Mesa's GLSL path through LLVM), so the
 * reduced matrix checks each method's default kernel only ({@linkcode CHECK_VARIANTS}), and the
 * methods whose kernels are specialised per tree ({@linkcode PER_TREE_KERNELS}) on one tree.
 * tests/conformance_scope_test.ts says so once in the output.
 */
export const OPENGL_MINIMAL: boolean = !FULL_CONFORMANCE && SOFTWARE_ADAPTER !== null &&
  !HAS_F16;

/**
 * Whether kernel variants other than a method's default (`--variant` parameters, the matrix
 * kernel's tiles) are checked: everywhere but in the {@linkcode OPENGL_MINIMAL} matrix.
 */
export const CHECK_VARIANTS: boolean = !OPENGL_MINIMAL;

/**
 * Methods whose kernels are compiled for each tree (tree-mask's GEMM tiles and softmax workgroup
 * follow the tree's size): the {@linkcode OPENGL_MINIMAL} matrix runs them on its first tree only.
 */
export const PER_TREE_KERNELS: ReadonlySet<string> = new Set(["tree-mask"]);

/**
 * Whether the test device runs the matrix kernels (an f16 x f16 -> f32 subgroup-matrix
 * configuration: Dawn on a GPU with matrix units, or on Mesa lavapipe >= 25.2).
 */
export const HAS_MATRIX: boolean = DEVICE?.offer.subgroupMatrix ?? false;

/**
 * The test device's smallest subgroup (0 without subgroups): kernel variants that shuffle within
 * groups of N lanes need at least N.
 */
export const SUBGROUP_MIN_SIZE: number = DEVICE?.subgroupMinSize ?? 0;

/** True when the test device's subgroups hold fewer than `lanes` invocations (or it has none). */
export function subgroupsBelow(lanes: number): boolean {
  return SUBGROUP_MIN_SIZE < lanes;
}

/** True when a test of `dtype` must be ignored on this machine (see {@linkcode HAS_F16}). */
export function skipDtype(dtype: Dtype): boolean {
  return dtype === "f16" && F16_IGNORED;
}

/** A chain of `n` nodes of `tokens` tokens with one query on the last node. */
export function chainTree(n: number, tokens: number): Tree {
  const nodes: TreeNode[] = [];
  for (let i = 0; i < n; i++) nodes.push({ id: i, parent: i === 0 ? null : i - 1, tokens });
  return { nodes, queries: [{ node: n - 1 }] };
}

/**
 * Scales K by 1 + 14 x (path position / path length) on every query's path (a node shared with an
 * earlier query's path, the first `shared` positions, is scaled once, by the first query) and
 * uploads it: logits keep growing along the path, so later blocks move each row's running maximum
 * past a kernel's rescale threshold, and early keys underflow.
 */
export function growKeysAlongPaths(problem: Problem, shared: number): void {
  const { ix, layout, data } = problem;
  const hd = data.shape.kvHeads * data.shape.headDim;
  for (let qi = 0; qi < ix.queryCount; qi++) {
    const slots = querySlots(ix, layout, qi);
    slots.forEach((slot, pos) => {
      if (qi > 0 && pos < shared) return;
      const f = 1 + (14 * pos) / slots.length;
      for (let e = 0; e < hd; e++) data.k[slot * hd + e] = data.k[slot * hd + e]! * f;
    });
  }
  problem.upload();
}

/** A root of `rootTokens` with `leaves` leaves of `leafTokens`, a query on every leaf. */
export function starTree(rootTokens: number, leaves: number, leafTokens: number): Tree {
  const nodes: TreeNode[] = [{ id: 0, parent: null, tokens: rootTokens }];
  for (let i = 1; i <= leaves; i++) nodes.push({ id: i, parent: 0, tokens: leafTokens });
  return { nodes, queries: nodes.slice(1).map((n) => ({ node: n.id })) };
}

/** A tree with queries on internal nodes too, node ids not in DFS order. */
export function internalQueriesTree(): Tree {
  return {
    nodes: [
      { id: 10, parent: null, tokens: 150 },
      { id: 3, parent: 10, tokens: 40 },
      { id: 7, parent: 10, tokens: 1 },
      { id: 1, parent: 3, tokens: 90 },
      { id: 2, parent: 3, tokens: 5 },
      { id: 5, parent: 7, tokens: 33 },
    ],
    queries: [{ node: 3 }, { node: 1 }, { node: 2 }, { node: 7 }, { node: 5 }, { node: 10 }],
  };
}

/** One case of the matrix. */
export interface ConformanceCase {
  name: string;
  tree: () => Tree;
  shape: ModelShape;
  dtype: Dtype;
  options?: Partial<MethodOptions>;
  /**
   * Part of the reduced matrix that a software adapter runs by default; `"only"`: a smaller
   * stand-in for full-matrix cases, run only in the reduced one (see {@linkcode inMatrix}).
   */
  reduced?: boolean | "only";
}

/** A one-layer test shape named `Q/KV/D`. */
export const shape = (qHeads: number, kvHeads: number, headDim: number): ModelShape => ({
  name: `${qHeads}/${kvHeads}/${headDim}`,
  qHeads,
  kvHeads,
  headDim,
  layers: 1,
});

/** The shape most cases use: GQA group 4, head dim 128. */
export const GQA4: ModelShape = shape(8, 2, 128);

/**
 * The matrix: trees x shapes x dtypes. The reduced one (software adapters by default) keeps the
 * trees that exercise the kernels' edges (a shared prompt with branches, a chain, blocks with more
 * than 64 queries, queries on internal nodes, small blocks) on one shape, GQA group 4 and head dim
 * 128; the other trees and shapes run with `DEFT_FULL_CONFORMANCE=1` and on GPUs.
 */
export function conformanceCases(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const both = (c: Omit<ConformanceCase, "dtype" | "name"> & { name: string }) => {
    for (const dtype of ["f32", "f16"] as const) {
      cases.push({ ...c, dtype, name: `${c.name} ${dtype}` });
    }
  };
  both({
    name: "few-shot (prompt 300, 12 branches, iteration 40)",
    tree: () => new FewShotRun({ prompt: 300, branches: 12, generated: 60 }).snapshot(40),
    shape: GQA4,
    reduced: true,
  });
  both({
    name: "reasoning (ToT, depth 3, width 4)",
    tree: () =>
      new ReasoningRun({ prompt: 200, depth: 3, width: 4, thoughtMin: 20, thoughtMax: 70, seed: 3 })
        .snapshot(75),
    shape: GQA4,
  });
  both({
    name: "speculative (prefix 250, Medusa tree of 32)",
    tree: () =>
      new SpeculativeRun({ prefix: 250, treeTokens: 32, steps: 4, seed: 1, topology: "medusa" })
        .snapshot(2),
    shape: GQA4,
  });
  both({ name: "single node", tree: () => chainTree(1, 77), shape: GQA4 });
  both({
    name: "long chain (40 nodes)",
    tree: () => chainTree(40, 37),
    shape: GQA4,
    reduced: true,
  });
  both({ name: "star of 300 leaves", tree: () => starTree(130, 300, 3), shape: GQA4 });
  both({
    name: "20k-token node beside 1-token nodes",
    tree: () => starTree(20000, 3, 1),
    shape: shape(4, 1, 64),
  });
  both({
    name: "blocks with more than 64 queries (speculative t=100)",
    tree: () =>
      new SpeculativeRun({ prefix: 60, treeTokens: 100, steps: 1, seed: 2, topology: "medusa" })
        .snapshot(0),
    shape: GQA4,
    reduced: true,
  });
  both({
    name: "queries on internal nodes",
    tree: internalQueriesTree,
    shape: GQA4,
    reduced: true,
  });
  both({
    name: "GQA group 1 (MHA), head dim 64",
    tree: () => new FewShotRun({ prompt: 180, branches: 5, generated: 9 }).snapshot(8),
    shape: shape(4, 4, 64),
  });
  both({
    name: "GQA group 8, head dim 128",
    tree: () =>
      new SpeculativeRun({ prefix: 140, treeTokens: 40, steps: 1, seed: 5, topology: "medusa" })
        .snapshot(0),
    shape: shape(8, 1, 128),
  });
  both({
    name: "small blocks (block/chunk 32) over 40 queries",
    tree: () => starTree(90, 40, 7),
    shape: GQA4,
    options: { blockSize: 32, chunkSize: 32 },
    reduced: true,
  });
  return cases;
}

/**
 * Appends one JSON line per case to the file named by DEFT_CONFORMANCE_LOG (if set), so a run on a
 * real GPU can report the adapter and the largest error per method.
 */
async function logCase(method: string, c: ConformanceCase, seed: number, maxRelError: number) {
  const path = Deno.env.get("DEFT_CONFORMANCE_LOG");
  if (!path) return;
  const gpu = await testGpu();
  const line = JSON.stringify({
    method,
    case: c.name,
    dtype: c.dtype,
    kernel: c.options?.kernel ?? DEFAULT_METHOD_OPTIONS.kernel,
    runtime: gpu.runtime.version,
    seed,
    maxRelError,
    adapter: gpu.info.description || gpu.info.vendor,
  });
  await Deno.writeTextFile(path, line + "\n", { append: true });
}

/** Runs one case of a method and returns the verdict on every row and the plan. */
export async function runCase(
  method: AttentionMethod,
  c: ConformanceCase,
  seed: number,
): Promise<Verdict & { plan: Plan }> {
  const gpu = await testGpu();
  const problem = Problem.create(gpu, c.tree(), { shape: c.shape, dtype: c.dtype, seed });
  try {
    const { output, plan } = await runMethod(problem, method, c.options ?? {});
    return { ...verify(output, referenceOf(problem), c.shape, c.dtype), plan };
  } finally {
    problem.destroy();
  }
}

/**
 * Runs one case on fresh data (a new seed per run, or DEFT_TEST_SEED to replay one) and throws
 * unless every output element is written, finite, and within the dtype's error bound.
 */
export async function expectConformant(method: AttentionMethod, c: ConformanceCase): Promise<void> {
  const fixed = Deno.env.get("DEFT_TEST_SEED");
  const seed = fixed ? Number(fixed) : (Math.random() * 2 ** 31) >>> 0;
  const r = await runCase(method, c, seed);
  await logCase(method.name, c, seed, r.maxRelError);
  if (!r.passed) {
    throw new Error(
      `${verdictProblems(r).join(", ")} (${method.name}, ${c.name}, seed ${seed})`,
    );
  }
}

/**
 * The kernel families of `record` that run `c` on a device offering `offer`: every variant whose
 * needs (adapter features, storage dtypes) the device meets, the method's first variant when none
 * does or there is no device (its test then fails with the reason). A case that pins
 * `options.kernel` runs as given (null).
 */
export function kernelFamiliesFor(
  record: MethodRecord,
  c: ConformanceCase,
  offer: DeviceOffer | null,
): ("fma" | "mma")[] | null {
  if (c.options?.kernel !== undefined) return null;
  const runs = offer
    ? record.variants.filter((v) => missingNeeds(v, offer, c.dtype).length === 0)
    : [];
  const families = (runs.length > 0 ? runs : record.variants.slice(0, 1)).map((v) => v.family);
  return [...new Set(families)];
}

/**
 * Tests whose full name (`<method> matches the float64 reference: <case>`) contains one of these
 * comma-separated texts (`DEFT_CONFORMANCE_SKIP`) are reported as ignored. CI's Dawn step skips
 * `deft-node matches the float64 reference: 20k-token`: with the matrix kernel's 16-key sub-tiles
 * one 20,000-token group needs about 101,000 shader loop iterations, past the 65,535 after which
 * llvmpipe silently ends a shader, so `prepare` refuses it there (it runs on GPUs).
 */
const SKIP_CASES = (Deno.env.get("DEFT_CONFORMANCE_SKIP") ?? "").split(",").filter((s) => s);

/**
 * Registers `cases` (the whole matrix by default; those {@linkcode inMatrix} keeps) as Deno tests of a method, named after `label`,
 * once per kernel variant of its record that the device can run ({@linkcode kernelFamiliesFor};
 * the family is named in the test, `[mma]`, when there are two); f16 cases are ignored on adapters
 * without shader-f16 (see {@linkcode skipDtype}). `tests/methods/conformance_test.ts` runs the
 * whole matrix for every method of the list; a method's own test file adds its own cases.
 * `o.variant`: the cases check a kernel variant other than the method's default, ignored where
 * {@linkcode CHECK_VARIANTS} is false; `o.subgroupLanes`: the variant shuffles within groups of
 * that many lanes, ignored where the device's subgroups are smaller ({@linkcode SUBGROUP_MIN_SIZE}).
 * In the {@linkcode OPENGL_MINIMAL} matrix a method of {@linkcode PER_TREE_KERNELS} runs only the
 * first case.
 */
export function conformanceSuite(
  record: MethodRecord,
  cases: ConformanceCase[] = conformanceCases(),
  label: string = record.name,
  o: { variant?: boolean; subgroupLanes?: number } = {},
): void {
  let run = cases.filter((c) => inMatrix(c));
  if (OPENGL_MINIMAL && PER_TREE_KERNELS.has(record.name)) run = run.slice(0, 1);
  const ignoreAll = (o.variant === true && !CHECK_VARIANTS) ||
    (o.subgroupLanes !== undefined && subgroupsBelow(o.subgroupLanes));
  for (const c of run) {
    const families = skipDtype(c.dtype)
      ? null
      : kernelFamiliesFor(record, c, DEVICE?.offer ?? null);
    const runs: ConformanceCase[] = families === null ? [c] : families.map((kernel) => ({
      ...c,
      name: families.length > 1 ? `${c.name} [${kernel}]` : c.name,
      options: { ...c.options, kernel },
    }));
    for (const r of runs) {
      Deno.test({
        name: `${label} matches the float64 reference: ${r.name}`,
        ignore: ignoreAll || skipDtype(r.dtype) ||
          SKIP_CASES.some((s) => `${label} matches the float64 reference: ${r.name}`.includes(s)),
        sanitizeResources: false,
        sanitizeOps: false,
        fn: () => expectConformant(record, r),
      });
    }
  }
}

/**
 * The layer rule, as a test. Data flows one way, and a module imports only from the layers it
 * reads from:
 *
 * ```text
 * workloads -> kernels -> results <- {bench, report} <- cli
 * ```
 *
 * - `workloads/`: the tree model, its formats, generators and presets. Imports nothing else.
 * - `kernels/`: the attention methods and GPU code. Imports `workloads/`.
 * - `results/`: the results document: its schema (owning its own record types, so
 *   `schema.ts` and `document.ts` import nothing from `kernels/`), parse and check, statistics
 *   (one bootstrap, one RNG) and files. Imports `kernels/` and `workloads/`.
 * - `bench/`: measurement, writing results documents; it reports progress through an event
 *   interface (`bench/progress.ts`) that `cli/` implements. Imports the three below it.
 * - `report/`: the HTML report, `compare` and `dashboard`: reads results documents only, plus the
 *   tree model and its one flattening (`workloads/tree.ts`) for drawing trees; its method order
 *   comes from the documents. Bench and report are siblings: neither imports the other.
 * - `cli/`: the command line, with terminal progress and tables. Imports everything below it.
 * - `mod.ts`, `tools/` and `tests/` sit on top; `deps/` (third-party gateways) is open to all.
 *
 * Every import counts, text imports (`.wgsl`, `.js`, `.css`) included; the test fails on any
 * import the rule does not allow.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";

/** A layer of the rule; `top` is mod.ts, tools/ and tests/. */
type Layer = "deps" | "workloads" | "kernels" | "results" | "bench" | "report" | "cli" | "top";

/** What each layer may import (besides itself). */
const MAY_IMPORT: Readonly<Record<Layer, readonly Layer[]>> = {
  deps: [],
  workloads: ["deps"],
  kernels: ["deps", "workloads"],
  results: ["deps", "workloads", "kernels"],
  bench: ["deps", "workloads", "kernels", "results"],
  report: ["deps", "workloads", "results"],
  cli: ["deps", "workloads", "kernels", "results", "bench", "report"],
  top: ["deps", "workloads", "kernels", "results", "bench", "report", "cli"],
};

/** The report's only module of `workloads/`: the tree model and its one geometry. */
const REPORT_WORKLOADS = ["workloads/tree.ts"];

/** The persisted document owns its record types: these import nothing from `kernels/`. */
const DOCUMENT_FILES = ["results/schema.ts", "results/document.ts"];

const ROOT = new URL("../", import.meta.url);
const SKIP = new Set(["node_modules", "out", "results/data"]);

/** Every .ts and .js file of the project, as a path relative to the root. */
async function sourceFiles(dir = "", out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(new URL(dir || ".", ROOT))) {
    const path = dir ? `${dir}/${e.name}` : e.name;
    if (SKIP.has(path) || e.name.startsWith(".")) continue;
    if (e.isDirectory) await sourceFiles(path, out);
    else if (e.isFile && /\.[tj]s$/.test(e.name)) out.push(path);
  }
  return out.sort();
}

/** The layer of a project path. */
export function layerOf(path: string): Layer {
  const [head, ...rest] = path.split("/");
  if (rest.length === 0 || head === "tools" || head === "tests") return "top";
  if (
    head === "deps" || head === "workloads" || head === "kernels" || head === "results" ||
    head === "bench" || head === "report" || head === "cli"
  ) return head;
  return "top";
}

/**
 * The relative import specifiers of a module: static imports and re-exports (`from "..."`,
 * `import "..."`) and dynamic `import("...")`, outside comments.
 */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|\s)\/\/.*$/gm, "$1");
  const found: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;
  for (const m of code.matchAll(re)) found.push(m[1]!);
  return found;
}

/** Resolves a relative specifier of `from` to a project path; null for packages. */
function resolve(from: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  const url = new URL(specifier, new URL(from, ROOT));
  const path = decodeURIComponent(url.pathname.slice(ROOT.pathname.length));
  return path.startsWith("node_modules/") ? null : path;
}

/** Why `from -> to` breaks the rule, or null when it is allowed. */
export function breach(from: string, to: string): string | null {
  const a = layerOf(from), b = layerOf(to);
  if (a === "top") return null;
  if (a !== b && !MAY_IMPORT[a].includes(b)) return `${a} may not import ${b}`;
  if (a === "report" && b === "workloads" && !REPORT_WORKLOADS.includes(to)) {
    return `report reads workloads/ only through ${REPORT_WORKLOADS.join(", ")}`;
  }
  if (DOCUMENT_FILES.includes(from) && b === "kernels") {
    return "the results document owns its types and imports nothing from kernels/";
  }
  return null;
}

/** Every `from -> to` import of a project module, to any project file (text imports too). */
async function importGraph(): Promise<[string, string][]> {
  const edges: [string, string][] = [];
  for (const from of await sourceFiles()) {
    const text = await Deno.readTextFile(new URL(from, ROOT));
    for (const s of importSpecifiers(text)) {
      const to = resolve(from, s);
      if (to !== null) edges.push([from, to]);
    }
  }
  return edges;
}

Deno.test("breach() allows imports down the layers and refuses them upwards and between siblings", () => {
  assertEquals(breach("kernels/problem.ts", "workloads/tree.ts"), null);
  assertEquals(breach("bench/run.ts", "results/schema.ts"), null);
  assertEquals(breach("cli/commands/bench.ts", "bench/run.ts"), null);
  assertEquals(breach("tests/x_test.ts", "cli/main.ts"), null);
  assertEquals(breach("workloads/tree.ts", "kernels/gpu.ts"), "workloads may not import kernels");
  assertEquals(breach("kernels/gpu.ts", "results/stats.ts"), "kernels may not import results");
  assertEquals(breach("bench/run.ts", "report/report.ts"), "bench may not import report");
  assertEquals(breach("report/report.ts", "bench/run.ts"), "report may not import bench");
  assertEquals(breach("report/common.ts", "kernels/method.ts"), "report may not import kernels");
  assertEquals(breach("results/stats.ts", "report/compare.ts"), "results may not import report");
  assertEquals(breach("bench/progress.ts", "cli/io.ts"), "bench may not import cli");
  assertEquals(breach("report/page.ts", "report/chart_runtime.js"), null);
  assertEquals(
    breach("report/page.ts", "kernels/wgsl/reduce.wgsl"),
    "report may not import kernels",
  );
  assertEquals(breach("report/compare.ts", "results/stats.ts"), null);
  assertEquals(breach("report/report.ts", "workloads/tree.ts"), null);
  assert(breach("report/compare.ts", "workloads/rng.ts") !== null);
  assert(breach("results/schema.ts", "kernels/method.ts") !== null);
  assertEquals(breach("results/roofline.ts", "kernels/method.ts"), null);
});

Deno.test("importSpecifiers() reads static, re-exported and dynamic imports, not comments", () => {
  const src = [
    'import { a } from "./a.ts";',
    'import type {\n  B,\n} from "../b.ts";',
    'export { c } from "./c.ts";',
    'import "./d.ts";',
    'const e = await import("./e.ts");',
    'import wgsl from "./f.wgsl" with { type: "text" };',
    '// import { no } from "./commented.ts";',
    '/** @example\n * import { x } from "./example.ts";\n */',
    'const url = "https://example.com/from";',
  ].join("\n");
  assertEquals(importSpecifiers(src), [
    "./a.ts",
    "../b.ts",
    "./c.ts",
    "./d.ts",
    "./e.ts",
    "./f.wgsl",
  ]);
});

Deno.test("no module imports from a layer above its own, nor from a sibling", async () => {
  const edges = await importGraph();
  // The parser must see the graph, or the rule passes vacuously.
  assert(edges.length > 200, `only ${edges.length} imports found`);
  assert(edges.some(([f, t]) => f === "cli/main.ts" && t === "cli/errors.ts"));
  assert(edges.some(([f, t]) => f === "report/page.ts" && t === "report/chart_runtime.js"));
  const breaches = edges.flatMap(([from, to]) => {
    const why = breach(from, to);
    return why === null ? [] : [`${from} -> ${to}: ${why}`];
  });
  assertEquals(breaches, [], "imports against the layer rule (see this file's module doc)");
});

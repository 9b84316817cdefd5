import { CHART_JS_SOURCE, CHART_JS_VERSION } from "../deps/chart_js.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url);
const SKIP = new Set(["node_modules", "out", ".git", ".gpu", "cov"]);

async function* sources(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    if (SKIP.has(e.name)) continue;
    const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* sources(url);
    else if (e.name.endsWith(".ts")) yield url;
  }
}

// Issue 8: the first `deno run -A cli/main.ts` of a fresh clone failed with "Module not found
// .../node_modules/chart.js/dist/chart.umd.min.js": Deno lays out node_modules/ only after it has
// loaded the module graph, so no module may import a file under it by path.
Deno.test("no module imports a file under node_modules/ by path", async () => {
  const offenders: string[] = [];
  for await (const url of sources(ROOT)) {
    const text = await Deno.readTextFile(url);
    if (/(?:from|import)\s*\(?\s*["'][^"']*node_modules\//.test(text)) {
      offenders.push(url.pathname.slice(ROOT.pathname.length));
    }
  }
  assertEquals(offenders, []);
});

Deno.test("the vendored chart.js bundle is the published UMD build with its licence", async () => {
  assertMatch(CHART_JS_VERSION, /^\d+\.\d+\.\d+$/);
  assert(CHART_JS_SOURCE.length > 100_000);
  assert(CHART_JS_SOURCE.includes("window.Chart="), "not the UMD build");
  const licence = await Deno.readTextFile(new URL("deps/chart.js/LICENSE.md", ROOT));
  assertMatch(licence, /^The MIT License/);
});

// Dawn's 49 MiB npm package is loaded lazily and never part of the default dependency graph. A run
// that falls back to `import("npm:webgpu@...")` writes it into deno.lock, and with
// `nodeModulesDir: "auto"` every later run (the GPU host's, with no registry, too) then installs it
// first; that happened once and cost a GPU call.
Deno.test("deno.lock and deno.json do not carry Dawn's npm package", async () => {
  for (const file of ["deno.lock", "deno.json"]) {
    const text = await Deno.readTextFile(new URL(file, ROOT));
    assert(!/\bwebgpu@/.test(text) && !text.includes("@webgpu/types"), `${file} lists npm webgpu`);
  }
});

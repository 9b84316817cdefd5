import { TUNABLES } from "../bench/tune.ts";
import { CHECK_VARIANTS } from "./_conformance.ts";
import { captureIo } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { DEFAULT_METHOD_OPTIONS, METHOD_NAMES } from "../kernels/method.ts";
import { getMethod, METHOD_LIST, METHOD_OPTIONS, METHODS } from "../kernels/methods/mod.ts";
import {
  badParamGroup,
  type DeviceOffer,
  missingNeeds,
  parseVariantParams,
} from "../kernels/options.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";

Deno.test("the method list is the one source of names, registry, options and defaults", () => {
  assertEquals(METHOD_NAMES, METHOD_LIST.map((m) => m.name));
  assertEquals(new Set(METHOD_NAMES).size, METHOD_NAMES.length);
  assertEquals([...METHODS.keys()], METHOD_NAMES);
  for (const m of METHOD_LIST) {
    assertEquals(getMethod(m.name), m);
    assert(m.description.length > 0, m.name);
    assert(m.variants.length > 0, `${m.name} has no kernel variant`);
    for (const o of m.options) assert(METHOD_OPTIONS.includes(o), `${m.name}: ${o.key}`);
  }
  assertEquals(new Set(METHOD_OPTIONS.map((o) => o.key)).size, METHOD_OPTIONS.length);
  assertEquals(
    new Set(METHOD_OPTIONS.map((o) => o.flag.split(" ")[0])).size,
    METHOD_OPTIONS.length,
  );
  // Results record the options in this order (the documents written before the list existed,
  // then the options added since).
  assertEquals(Object.keys(DEFAULT_METHOD_OPTIONS), [
    "blockSize",
    "chunkSize",
    "targetWorkgroups",
    "kernel",
    "fallbackReuse",
    "privateMin",
    "multiprocessors",
    "tailQueries",
  ]);
  for (const o of METHOD_OPTIONS) assertEquals(DEFAULT_METHOD_OPTIONS[o.key], o.default);
  assertThrows(() => getMethod("flash"), RangeError, /known methods: sequence, radix/);
});

Deno.test("every kernels module loads on its own: method modules import only types from method.ts", async () => {
  // methods/mod.ts reads the method modules while it loads, and method.ts re-exports it: a value
  // import of method.ts from a module that mod.ts loads would read a method before it exists.
  const root = new URL("../kernels/", import.meta.url);
  const files: string[] = [];
  for (const dir of ["", "methods/"]) {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      if (e.isFile && e.name.endsWith(".ts")) files.push(dir + e.name);
    }
  }
  const allowed = new Set(["method.ts", "problem.ts", "verify.ts"]);
  for (const f of files.filter((f) => !allowed.has(f))) {
    const src = await Deno.readTextFile(new URL(f, root));
    for (const m of src.matchAll(/^import\s+(type\s+)?[^;]*?from\s+"([^"]+)";/gms)) {
      if (!/(^|\/)method\.ts$/.test(m[2]!)) continue;
      assert(m[1] !== undefined, `${f} imports values from method.ts: ${m[0]}`);
    }
  }
});

Deno.test("kernel variants say what they need; the conformance suite and tune read it", () => {
  const all: DeviceOffer = { f16: true, subgroups: true, subgroupMatrix: true };
  const flatten = getMethod("deft-flatten");
  const [fma, mma] = flatten.variants;
  assertEquals([fma!.family, mma!.family], ["fma", "mma"]);
  assertEquals(missingNeeds(mma!, all, "f16"), []);
  assertEquals(missingNeeds(mma!, all, "f32"), ["f32 storage (it takes f16)"]);
  assertEquals(missingNeeds(mma!, { ...all, subgroupMatrix: false }, "f16"), ["subgroup-matrix"]);
  assertEquals(missingNeeds(fma!, { ...all, f16: false }, "f16"), ["shader-f16"]);
  assertEquals(missingNeeds(fma!, { ...all, f16: false }, "f32"), []);
  // Tunables come from the records: an option for the methods that read it, a variant's tile
  // for the methods that have the variant.
  const of = (option: string) => TUNABLES.find((t) => t.option === option)!.methods;
  assertEquals(of("blockSize"), ["deft-flatten"]);
  assertEquals(of("chunkSize"), ["deft-node-chunk", "cascade"]);
  assertEquals(of("kernel"), "all");
  assertEquals(of("mma"), ["deft-node", "deft-node-chunk", "deft-flatten", "cascade"]);
});

Deno.test("parseVariantParams() reads GROUP.PARAM=VALUE against the variants' parameters", () => {
  const variants = METHOD_LIST.flatMap((m) => m.variants);
  assertEquals(parseVariantParams("mma.rows=64, mma.keys=32,fma.qResident=f32", variants), {
    mma: { rows: 64, keys: 32 },
    fma: { qResident: "f32" },
  });
  assertEquals(parseVariantParams("sequence.prefetchV=1,sequence.lanes=0", variants), {
    sequence: { prefetchV: 1, lanes: 0 },
  });
  const bad: [string, RegExp][] = [
    ["", /needs GROUP\.PARAM=VALUE; known: .*mma\.rows/],
    ["rows=64", /must look like GROUP\.PARAM=VALUE/],
    ["mma.tile=8", /unknown parameter mma\.tile/],
    ["mma.rows=0", /mma\.rows must be an integer >= 1, got 0/],
    ["mma.rows=x", /mma\.rows must be an integer >= 1, got x/],
    ["sequence.prefetchV=2", /prefetchV must be an integer from 0 to 1/],
    ["fma.qResident=gpu", /must be one of auto, f16, f32, none/],
    ["mma.rows=32,mma.rows=64", /names mma\.rows twice/],
  ];
  for (const [text, re] of bad) {
    assertThrows(() => parseVariantParams(text, variants), RangeError, re);
  }
  const mmaParams = getMethod("cascade").variants[1]!.params!;
  assertEquals(badParamGroup(mmaParams, { rows: 64 }), null);
  assertEquals(
    badParamGroup(mmaParams, { rows: 0 }),
    "an object of rows (an integer >= 1), keys (an integer >= 1), split (an integer >= 1), outRounds (an integer >= 0), fit (an integer from 0 to 1)",
  );
});

const TREE = ["few-shot", "--prompt", "40", "--branches", "3", "--generated", "4"];
// A small head dim: each run compiles kernels of its own, slow on a CPU adapter through OpenGL.
const OPTS = ["--shape", "4/1/16", "--dtype", "f32", "--json"];

Deno.test({
  name: "run reaches every option and kernel variant of the records from the command line",
  // Each variant compiles kernels of its own: not in the OpenGL minimal matrix (_conformance.ts).
  ignore: !CHECK_VARIANTS,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const run = async (...args: string[]) => {
      const io = captureIo();
      const code = await main(["run", ...args, ...TREE, ...OPTS], io);
      return { code, io, outcome: code === 0 ? JSON.parse(io.stdout).outcomes[0] : null };
    };
    const seq = await run("sequence", "--variant", "sequence.threads=256,sequence.blockKeys=128");
    assertEquals(seq.code, 0, seq.io.stderr);
    assertMatch(seq.outcome.kernel, /^fma-threads256-blockKeys128-t256-k/);
    const target = await run("sequence", "--target-workgroups", "1");
    assertEquals(target.outcome.plan.stats.direct, 1);
    const flat = await run(
      "deft-flatten",
      "--kernel",
      "fma",
      "--variant",
      "fma.threads=128,fma.rows=64,fma.keys=32",
      "--block-size",
      "16",
    );
    assertEquals(flat.code, 0, flat.io.stderr);
    assertEquals(flat.outcome.kernel, "fma-t128-r64-k32-qnone");
    assertEquals(flat.outcome.plan.stats.blockSize, 16);
    for (
      const [args, re] of [
        [["deft-flatten", "--variant", "fma.lanes=4"], /unknown parameter fma\.lanes/],
        [["sequence", "--target-workgroups", "-1"], /--target-workgroups must be at least 0/],
      ] as const
    ) {
      const r = await run(...args);
      assertEquals(r.code, 2, r.io.stderr);
      assertMatch(r.io.stderr, re);
    }
  },
});

Deno.test("the README's worked example of adding a method is the code, line for line", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const section = readme.slice(
    readme.indexOf("### Adding a method"),
    readme.indexOf("## Workloads"),
  );
  const blocks = [...section.matchAll(/```ts ignore\n([^]*?)```/g)].map((m) => m[1]!);
  assertEquals(blocks.length, 2);
  const files = ["../kernels/methods/deft_node_chunk.ts", "../kernels/methods/mod.ts"];
  for (const [i, block] of blocks.entries()) {
    const source = (await Deno.readTextFile(new URL(files[i]!, import.meta.url))).split("\n");
    // Every line of the snippet appears in the file, in order (doc comments left out).
    let at = 0;
    for (const line of block.split("\n").filter((l) => l.trim() !== "")) {
      const found = source.indexOf(line, at);
      assert(found >= 0, `${files[i]}: README line not found in order: ${line}`);
      at = found + 1;
    }
  }
});

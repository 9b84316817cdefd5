import { type BenchConfig, type BenchDevice, kernelVariant, runBench } from "../bench/run.ts";
import { FakeClock, FakeTimer } from "../bench/timer.ts";
import { UsageError } from "../cli/errors.ts";
import { captureIo } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import {
  checkKernel,
  openRuntime,
  parseRuntimes,
  runtimeArgs,
  runtimeCalibrationPath,
} from "../cli/runtime_args.ts";
import {
  DAWN_FLAGS,
  dawnCacheFile,
  dawnFlags,
  type Gpu,
  GpuError,
  type RuntimeInfo,
} from "../kernels/gpu.ts";
import { DEFAULT_METHOD_OPTIONS, type Plan, zeroPlanCounts } from "../kernels/method.ts";
import { getMethod } from "../kernels/methods/mod.ts";
import type { DeviceOffer } from "../kernels/options.ts";
import { parseResults } from "../results/document.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { fakeRegistry, TINY_SHAPE } from "./_bench_fake.ts";
import { type ConformanceCase, GQA4, kernelFamiliesFor, starTree } from "./_conformance.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { testGpu } from "./_gpu.ts";

/** Dawn keeps threads and handles alive across tests: no sanitizers where it may load. */
const dawnTest = { sanitizeOps: false, sanitizeResources: false } as const;

Deno.test("parseRuntimes() and runtimeArgs() read --runtime and --dawn-node", () => {
  assertEquals(parseRuntimes("deno"), ["deno"]);
  assertEquals(parseRuntimes(" dawn , deno "), ["dawn", "deno"]);
  assertThrows(() => parseRuntimes("webkit"), UsageError, /Unknown runtime "webkit".*deno, dawn/);
  assertThrows(() => parseRuntimes("deno,deno"), UsageError, /names deno twice/);
  assertThrows(() => parseRuntimes(","), UsageError, /needs a runtime name/);
  assertEquals(runtimeArgs({ runtime: "deno" }), { runtimes: ["deno"], dawnNode: undefined });
  assertEquals(runtimeArgs({}).runtimes, [
    Deno.env.get("DEFT_RUNTIME") === "dawn" ? "dawn" : "deno",
  ]);
  assertEquals(runtimeArgs({ runtime: "deno,dawn", dawnNode: "/x/dawn.node" }), {
    runtimes: ["deno", "dawn"],
    dawnNode: "/x/dawn.node",
  });
  assertThrows(
    () => runtimeArgs({ runtime: "deno", dawnNode: "/x/dawn.node" }),
    UsageError,
    /--dawn-node has no effect without --runtime dawn/,
  );
});

Deno.test({
  name: "openRuntime() turns a Dawn that cannot be loaded into a usage error naming the runtime",
  ...dawnTest,
  fn: async () => {
    await assertRejects(
      () => openRuntime("dawn", { dawnNode: "/nonexistent/dawn.node" }),
      UsageError,
      /^--runtime dawn: Cannot load Dawn \(runtime dawn\) from \/nonexistent\/dawn\.node.*--dawn-node or DAWN_NODE, or use --runtime deno/,
    );
  },
});

Deno.test({
  name:
    "openRuntime('dawn') with DAWN_NODE: a device on Dawn, or a usage error that says what to do",
  ignore: !Deno.env.get("DAWN_NODE"),
  ...dawnTest,
  fn: async () => {
    let gpu: Gpu;
    try {
      gpu = await openRuntime("dawn");
    } catch (e) {
      // Without a Vulkan driver Dawn accepts (Debian 12's Mesa), there is no adapter.
      assert(e instanceof UsageError, String(e));
      const m = (e as UsageError).message;
      assert(/^--runtime dawn: No WebGPU adapter found \(runtime dawn\)/.test(m), m);
      assert(/lavapipe 25\.0 or newer/.test(m) && /--runtime deno/.test(m), m);
      assert(!/mesa-vulkan-drivers/.test(m), m);
      return;
    }
    try {
      assertEquals(gpu.runtime.name, "dawn");
      assertEquals(gpu.runtime.source, Deno.env.get("DAWN_NODE"));
      assert(gpu.runtime.flags.some((f) => f.includes("allow_unsafe_apis")));
      assert(gpu.hasSubgroups);
      assert(runtimeCalibrationPath(gpu, "cal").endsWith("-dawn.json"));
    } finally {
      gpu.destroy();
    }
  },
});

Deno.test({
  name: "the CLI exits 2 with one line, no stack, for a runtime it cannot load or a bad option",
  ...dawnTest,
  fn: async () => {
    const cases: [string[], RegExp][] = [
      [
        ["bench", "sorting", "--runtime", "dawn", "--dawn-node", "/nonexistent/dawn.node"],
        /--runtime dawn: Cannot load Dawn/,
      ],
      [["run", "all", "sorting", "--runtime", "dawn,deno,x"], /Unknown runtime "x"/],
      [
        ["calibrate", "--runtime", "deno", "--dawn-node", "/x/dawn.node"],
        /--dawn-node has no effect/,
      ],
      [
        ["calibrate", "--runtime", "deno,dawn", "-o", "c.json"],
        /--output names one file/,
      ],
      [["bench", "sorting", "--kernel", "tensor"], /--kernel/],
      [
        ["bench", "sorting", "--runtime", "deno,dawn", "--tuning", "t.json"],
        /--tuning names one file/,
      ],
      [["tune", "--runtime", "dawn", "--dawn-node", "/nonexistent/x.node"], /Cannot load Dawn/],
    ];
    const dir = await Deno.makeTempDir();
    for (const [args, re] of cases) {
      const io = captureIo();
      const out = args[0] === "bench" ? ["-o", dir] : [];
      assertEquals(await main([...args, ...out], io), 2, `${args.join(" ")}: ${io.stderr}`);
      assert(re.test(io.stderr), `${args.join(" ")}: ${io.stderr}`);
      assert(!/\n\s+at /.test(io.stderr), io.stderr); // no stack trace
    }
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("checkKernel() refuses --kernel mma without subgroup matrices or f16", async () => {
  const gpu = await testGpu();
  checkKernel(undefined, gpu, "f16");
  checkKernel("fma", gpu, "f32");
  checkKernel("auto", gpu, "f16");
  assertThrows(() => checkKernel("mma", gpu, "f32"), UsageError, /--kernel mma needs --dtype f16/);
  if (!gpu.matrixConfig()) {
    assertThrows(
      () => checkKernel("mma", gpu, "f16"),
      UsageError,
      new RegExp(`subgroup matrices.*runtime ${gpu.runtime.name}`),
    );
  } else {
    checkKernel("mma", gpu, "f16");
  }
});

Deno.test("kernelVariant() takes the plan's variant name, else the family asked for", () => {
  const plan = {
    method: "deft-flatten",
    shape: TINY_SHAPE,
    dtype: "f16",
    queries: 1,
    slots: 1,
    dispatches: [],
    counts: zeroPlanCounts(),
    stats: {},
  } as Plan;
  assertEquals(kernelVariant(plan, { ...DEFAULT_METHOD_OPTIONS, kernel: "fma" }), "fma");
  assertEquals(kernelVariant(plan, DEFAULT_METHOD_OPTIONS), "auto");
  const named = { ...plan, kernelVariant: "mma-16x16x16" } as Plan;
  assertEquals(kernelVariant(named, DEFAULT_METHOD_OPTIONS), "mma-16x16x16");
});

/**
 * The test device under another runtime's name: the same WebGPU device, so two "runtimes" can run
 * in one process without Dawn (methods, keys, totals and the document are what is tested here).
 */
function asRuntime(gpu: Gpu, runtime: RuntimeInfo): Gpu {
  return new Proxy(gpu, {
    get(target, p) {
      if (p === "runtime") return runtime;
      const v = Reflect.get(target, p, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

function config(over: Partial<BenchConfig> = {}): BenchConfig {
  const reg = fakeRegistry();
  return {
    workloads: [{ run: new FewShotRun({ prompt: 40, branches: 3, generated: 6 }) }],
    methods: [reg.get("sequence")!, reg.get("deft-flatten")!],
    shape: TINY_SHAPE,
    dtype: "f32",
    methodOptions: { ...DEFAULT_METHOD_OPTIONS },
    samplesPerRun: 3,
    seed: 7,
    scale: 1,
    scaleReason: null,
    verify: true,
    verifyRows: 8,
    timing: {
      warmupMs: 1,
      budgetMs: 20,
      minSamples: 3,
      maxSamples: 20,
      targetRelativeCi: 0.05,
      cold: false,
      interleaved: true,
    },
    calibration: null,
    command: ["bench", "test"],
    tickCheck: false,
    ...over,
  };
}

Deno.test("runBench() on two runtimes: keys, totals, speedups and options kept apart, order rotated", async () => {
  const g = await testGpu();
  // Both under a fixed name, whichever runtime the test device really is.
  const deno = asRuntime(g, { name: "deno", version: `deno ${Deno.version.deno}`, flags: [] });
  const dawn = asRuntime(g, {
    name: "dawn",
    version: "dawn (npm webgpu@0.6.2)",
    flags: ["backend=vulkan"],
    source: "/opt/dawn.node",
  });
  const clock = new FakeClock();
  // Case keys are `workload@iteration/method[@runtime]`; the clock guard's passes are others.
  const ns = (runtime: string) => (label: string) => {
    const method = label.split("/")[1]?.split("@")[0];
    const base = method ? ({ sequence: 3000, "deft-flatten": 1000 })[method] : 500;
    return base! * (runtime === "dawn" ? 0.5 : 1);
  };
  const order: string[] = [];
  const timer = (runtime: string) => {
    const t = new FakeTimer({ sample: ns(runtime), clock });
    const time = t.time.bind(t);
    t.time = (passes) => {
      const cases = passes.some((p) => p.label.includes("/"));
      if (cases && order.at(-1) !== runtime) order.push(runtime);
      return time(passes);
    };
    return t;
  };
  const flatten = { ...DEFAULT_METHOD_OPTIONS, blockSize: 64, kernel: "fma" as const };
  const devices: BenchDevice[] = [
    { gpu: deno, timer: timer("deno"), calibration: null },
    {
      gpu: dawn,
      timer: timer("dawn"),
      calibration: null,
      methodOptions: { "deft-flatten": flatten },
      tuning: {
        file: "t.json",
        tunedAt: "2026-01-01",
        applied: { "deft-flatten": { blockSize: 64 } },
      },
    },
  ];
  const doc = await runBench(devices, config(), { now: clock.now, probeHost: false });
  const parsed = parseResults(JSON.stringify(doc), "two.json");
  assertEquals(parsed.settings.runtimes, ["deno", "dawn"]);
  assertEquals(parsed.runtimes.map((r) => [r.name, r.version, r.source]), [
    ["deno", `deno ${Deno.version.deno}`, null],
    ["dawn", "dawn (npm webgpu@0.6.2)", "/opt/dawn.node"],
  ]);
  assertEquals(parsed.runtimes[1]!.tuning!.applied, { "deft-flatten": { blockSize: 64 } });
  // Each device kept and checked its own clock.
  for (const r of parsed.runtimes) assert(r.clock !== null && r.clock!.workingNs > 0);
  assertEquals(parsed.environment.clock, parsed.runtimes[0]!.clock);
  const w = parsed.workloads[0]!;
  for (const s of w.snapshots) {
    assertEquals(s.cases.map((c) => c.key), [
      `${w.name}@${s.iteration}/sequence`,
      `${w.name}@${s.iteration}/deft-flatten`,
      `${w.name}@${s.iteration}/sequence@dawn`,
      `${w.name}@${s.iteration}/deft-flatten@dawn`,
    ]);
    assertEquals(s.cases.map((c) => c.runtime), ["deno", "deno", "dawn", "dawn"]);
    for (const c of s.cases) {
      assertEquals(c.status, "ok");
      assert(c.verification.checked && c.verification.passed);
      // Tuned options on dawn's deft-flatten only; the kernel is the one asked for.
      const tuned = c.runtime === "dawn" && c.method === "deft-flatten";
      assertEquals(c.options.blockSize, tuned ? 64 : 128);
      assertEquals(c.kernel, tuned ? "fma" : "auto");
    }
  }
  const total = (m: string, r: string) => w.totals.find((t) => t.method === m && t.runtime === r)!;
  assertEquals(w.totals.length, 4);
  assertEquals(total("sequence", "deno").runNs, 6 * 3000);
  assertEquals(total("sequence", "dawn").runNs, 6 * 1500);
  // Speedups over sequence on the same runtime, not across runtimes.
  assertEquals(total("deft-flatten", "deno").speedupVsSequence, 3);
  assertEquals(total("deft-flatten", "dawn").speedupVsSequence, 3);
  // Snapshot by snapshot, the runtime that goes first alternates: deno dawn | dawn deno | deno
  // dawn, so runs of one runtime join across snapshots (a fixed order would give six runs).
  assertEquals(order, ["deno", "dawn", "deno", "dawn"]);
  await assertRejects(
    () => runBench([devices[0]!, devices[0]!], config(), { probeHost: false }),
    RangeError,
    /one device per runtime/,
  );
});

Deno.test("the conformance suite runs each variant of a method's record the device can run", () => {
  const offer: DeviceOffer = { f16: true, subgroups: true, subgroupMatrix: true };
  // A method with the matrix kernel, and one with FMA kernels only.
  const follows = getMethod("deft-flatten");
  const base = getMethod("sequence");
  const c: ConformanceCase = {
    name: "star",
    tree: () => starTree(20, 3, 2),
    shape: GQA4,
    dtype: "f16",
  };
  assertEquals(kernelFamiliesFor(follows, c, offer), ["fma", "mma"]);
  assertEquals(kernelFamiliesFor(base, c, offer), ["fma"]);
  assertEquals(kernelFamiliesFor(follows, { ...c, dtype: "f32" }, offer), ["fma"]);
  assertEquals(kernelFamiliesFor(follows, c, { ...offer, subgroupMatrix: false }), ["fma"]);
  assertEquals(kernelFamiliesFor(follows, c, null), ["fma"]);
  assertEquals(kernelFamiliesFor(follows, { ...c, options: { kernel: "auto" } }, offer), null);
});

Deno.test("DEFT_DAWN_TOGGLES adds Dawn device toggles to the enabled ones, and refuses malformed names", () => {
  assertEquals(dawnFlags(""), [...DAWN_FLAGS]);
  const flags = dawnFlags("disable_robustness, disable_workgroup_init");
  assertEquals(flags.length, DAWN_FLAGS.length);
  assert(
    flags[0]!.endsWith(",use_vulkan_memory_model,disable_robustness,disable_workgroup_init"),
    flags[0],
  );
  assertEquals(flags.slice(1), DAWN_FLAGS.slice(1));
  for (const bad of ["Bad Name", "a=b", "x,-y"]) {
    assertThrows(() => dawnFlags(bad), GpuError, /not a Dawn toggle name/);
  }
});

Deno.test("dawnCacheFile() keeps the npm fallback's addon in CI's cache, outside the project", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  assertEquals(
    dawnCacheFile(env({ HOME: "/home/u" }), "linux", "x86_64"),
    "/home/u/.cache/deft-bench/webgpu-0.6.2/dawn.node",
  );
  assertEquals(
    dawnCacheFile(env({ HOME: "/home/u", XDG_CACHE_HOME: "/xc" }), "linux", "x86_64"),
    "/xc/deft-bench/webgpu-0.6.2/dawn.node",
  );
  // DEFT_CACHE (as .ci/lavapipe.sh reads it) wins; other platforms get their dist folder's name.
  assertEquals(
    dawnCacheFile(env({ HOME: "/home/u", DEFT_CACHE: "/c" }), "darwin", "aarch64"),
    "/c/webgpu-0.6.2/darwin-arm64/dawn.node",
  );
  assertEquals(dawnCacheFile(env({}), "linux", "x86_64"), null);
});

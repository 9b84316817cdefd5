import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { exitCodeOf, isUsage, main } from "../cli/main.ts";
import { fromInput, UsageError } from "../cli/errors.ts";
import { OutputPathError } from "../results/files.ts";
import { TreeError } from "../workloads/tree.ts";
import { captureIo } from "../cli/io.ts";
import { parseRun, parseTree } from "../workloads/format.ts";

async function cli(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

Deno.test("--help lists every command, and each command has generated help", async () => {
  const top = await cli("--help");
  assertEquals(top.code, 0);
  for (const c of ["gen", "inspect"]) assertMatch(top.out, new RegExp(`\\n  ${c} `));
  const gen = await cli("gen", "--help");
  assertEquals(gen.code, 0);
  assertMatch(gen.out, /Usage: deft-bench gen \[options\] <workload>/);
  assertMatch(gen.out, /--snapshot <i>/);
  const inspect = await cli("inspect", "--help");
  assertMatch(inspect.out, /--shape <shape>/);
});

Deno.test("gen writes a deterministic run document or one snapshot", async () => {
  const a = await cli("gen", "speculative-t32", "--scale", "0.01", "--sample", "3", "--seed", "4");
  const b = await cli("gen", "speculative-t32", "--scale", "0.01", "--sample", "3", "--seed", "4");
  assertEquals(a.code, 0);
  assertEquals(a.out, b.out);
  const doc = parseRun(a.out);
  assertEquals(doc.snapshots.length, 3);
  assertEquals(doc.snapshots.reduce((s, x) => s + x.weight, 0), doc.iterations);
  const snap = await cli(
    "gen",
    "few-shot",
    "--prompt",
    "50",
    "--branches",
    "3",
    "--generated",
    "4",
    "--snapshot",
    "2",
  );
  assertEquals(snap.code, 0);
  const tree = parseTree(snap.out);
  assertEquals(tree.nodes.map((n) => n.tokens), [50, 3, 3, 3]);
});

Deno.test("gen -o writes atomically and refuses to overwrite without --force", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sub/t.json`;
  assertEquals((await cli("gen", "grid-4000-50x200", "-o", path)).code, 0);
  const first = await Deno.readTextFile(path);
  const again = await cli("gen", "grid-4000-50x200", "-o", path);
  assertEquals(again.code, 2);
  assertMatch(again.err, /already exists; pass --force/);
  assertEquals(await Deno.readTextFile(path), first);
  assertEquals((await cli("gen", "grid-4000-50x200", "-o", path, "--force")).code, 0);
  const leftovers = [...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name);
  assertEquals(leftovers, ["t.json"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("inspect prints facts, KV IO and the reduction; --json is machine-readable", async () => {
  const t = await cli("inspect", "few-shot-b20");
  assertEquals(t.code, 0);
  assertMatch(t.out, /few-shot-b20/);
  assertMatch(t.out, /17\.62 TB/);
  assertMatch(t.out, /1\.68 TB/);
  assertMatch(t.out, /90\.47 %/);
  const j = await cli("inspect", "speculative-t256", "few-shot-b50", "--json");
  const rows = JSON.parse(j.out).rows;
  assertEquals(rows.length, 2);
  assert(Math.abs(rows[0].kvIoReduction - 0.996) < 0.001);
  assert(Math.abs(rows[1].kvIoReduction - 0.9333) < 0.0002);
});

Deno.test("inspect reads tree and run files", async () => {
  const dir = await Deno.makeTempDir();
  await cli("gen", "few-shot-b20", "--scale", "0.05", "-o", `${dir}/run.json`);
  await cli("gen", "few-shot-b20", "--snapshot", "0", "-o", `${dir}/tree.json`);
  const r = await cli("inspect", `${dir}/run.json`, `${dir}/tree.json`, "--json");
  assertEquals(r.code, 0);
  const rows = JSON.parse(r.out).rows;
  assertEquals(rows[1].meanTreeTokens, 4020);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("bad input exits 2 with a message naming the problem, never a stack trace", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/bad.json`,
    JSON.stringify({
      format: "deft-bench/tree",
      version: 1,
      nodes: [{ id: 0, parent: null, tokens: 0 }],
    }),
  );
  await Deno.writeTextFile(`${dir}/broken.json`, "{ nodes: ");
  const cases: [string[], RegExp][] = [
    [["inspect", "nope"], /Unknown workload "nope"/],
    [["inspect", `${dir}/missing.json`], /does not exist/],
    [
      ["inspect", `${dir}/bad.json`],
      /bad\.json: nodes\[0\]\.tokens must be a positive integer, got 0/,
    ],
    [["inspect", `${dir}/broken.json`], /broken\.json: Not valid JSON/],
    [["inspect", "few-shot", "--prompt", "10"], /few-shot needs --branches/],
    [["inspect", "few-shot-b20", "--shape", "32/5/128"], /multiple of kvHeads/],
    [
      ["gen", "few-shot-b20", "--snapshot", "400"],
      /outside the run: few-shot-b20 has iterations 0 to 399/,
    ],
    [["gen", "few-shot-b20", "--scale", "2"], /--scale must be a number in \(0, 1\]/],
    [["gen", "few-shot-b20", "--seed", "-3"], /unknown option|non-negative integer/],
    [
      ["gen", "few-shot", "--prompt", "0", "--branches", "1", "--generated", "1"],
      /prompt must be an integer/,
    ],
    [["gen", "grid", "--levels", "3x10"], /exactly 1 node/],
    [["frobnicate"], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(...args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assertMatch(r.err, re);
    assert(!/\n\s+at /.test(r.err), `stack trace printed for ${args.join(" ")}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--sweep expands a generator into one named workload per value", async () => {
  const { parseSweep, resolveWorkloads } = await import("../cli/workload_args.ts");
  const sweep = parseSweep("prefix=100, 400");
  assertEquals(sweep, { parameter: "prefix", key: "prefix", values: [100, 400] });
  const runs = await resolveWorkloads("speculative", { treeTokens: 8, steps: 2 }, sweep);
  assertEquals(runs.map((r) => r.run.info.name), ["speculative-p100-t8", "speculative-p400-t8"]);
  assertEquals(runs.map((r) => r.sweep), [
    { parameter: "prefix", value: 100 },
    { parameter: "prefix", value: 400 },
  ]);
  const bad: [string, RegExp][] = [
    ["prefix", /must look like PARAM=V1,V2/],
    ["colour=1,2", /cannot vary "colour"/],
    ["prefix=1,1", /must differ/],
  ];
  for (const [spec, re] of bad) {
    let message = "";
    try {
      parseSweep(spec);
    } catch (e) {
      message = (e as Error).message;
    }
    assertMatch(message, re);
  }
  const preset = await cli("bench", "few-shot-b20", "--sweep", "prompt=1,2");
  assertEquals(preset.code, 2);
  assertMatch(preset.err, /must be few-shot, reasoning or speculative/);
});

Deno.test("exitCodeOf() makes a RangeError from inside the harness an internal error: exit 1, stack with --debug", () => {
  // A harness bug, not input: no user value reaches the WGSL unroller.
  const bug = new RangeError("Cannot unroll a loop bounded by NOPE: not a known constant");
  assertEquals(isUsage(bug), false);
  const plain = captureIo();
  assertEquals(exitCodeOf(bug, plain, false), 1);
  assertMatch(plain.stderr, /^internal error: Cannot unroll a loop bounded by NOPE/);
  assertMatch(plain.stderr, /run with --debug for the stack trace/);
  assert(!/\n\s+at /.test(plain.stderr), "stack trace printed without --debug");
  const debug = captureIo();
  assertEquals(exitCodeOf(bug, debug, true), 1);
  assertMatch(debug.stderr, /RangeError: Cannot unroll[^]*\n\s+at /);
  // Input errors keep exit 2 with the message alone.
  for (const e of [new UsageError("u"), new TreeError("t"), new OutputPathError("o")]) {
    const io = captureIo();
    assertEquals(exitCodeOf(e, io, true), 2, e.name);
    assertEquals(io.stderr, `error: ${e.message}\n`);
  }
  // fromInput() turns a RangeError from user input into a UsageError, and nothing else.
  const input = () => {
    throw new RangeError("Model shape headDim must be a positive integer, got 0");
  };
  assertEquals(isUsage(captured(() => fromInput(input))), true);
  const typeError = () => {
    throw new TypeError("x is not a function");
  };
  assertEquals(isUsage(captured(() => fromInput(typeError))), false);
});

Deno.test("bad options that lower layers check as RangeError still exit 2 with their message", async () => {
  const cases: [string[], RegExp][] = [
    [["bench", "few-shot-b20", "--block-size", "0"], /--block-size must be at least 1/],
    [["bench", "few-shot-b20", "--shape", "gpt"], /Unknown model shape "gpt"/],
    [["run", "deft-flatten", "few-shot-b20", "--chunk-size", "-3"], /--chunk-size/],
    [["run", "deft-flatten", "few-shot-b20", "--block-size", "0"], /--block-size/],
    [["run", "no-such-method", "few-shot-b20"], /no-such-method/],
    [["run", "deft-flatten", "few-shot-b20", "--shape", "32/5/128"], /multiple of kvHeads/],
    [["tune", "--shape", "32/8/130"], /headDim/],
    [["bench", "few-shot-b20", "--variant", "mma.tile=8"], /unknown parameter mma\.tile/],
    // A method's own limit, found when it plans this input, is bad input too.
    [
      [
        "run",
        "tree-mask",
        "speculative",
        "--prefix",
        "70000",
        "--tree-tokens",
        "1024",
        "--steps",
        "1",
        "--rows",
        "1",
        "--shape",
        "32/1/128",
      ],
      /tree-mask cannot run this input: .*intermediates of \d+ bytes/,
    ],
    [
      [
        "run",
        "deft-node",
        "few-shot",
        "--prompt",
        "30",
        "--branches",
        "2",
        "--generated",
        "2",
        "--shape",
        "4/1/64",
        "--dtype",
        "f32",
        "--kernel",
        "fma",
        "--variant",
        "fma.threads=96",
      ],
      /deft-node cannot run this input: Group kernel threads must be 64, 128 or 256/,
    ],
    [["inspect", "few-shot", "--prompt", "0", "--branches", "1", "--generated", "1"], /prompt/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(...args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assertMatch(r.err, re);
    assert(!/internal error|\n\s+at /.test(r.err), `not bad input: ${args.join(" ")}`);
  }
});

function captured(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

/**
 * Bad input, systematically: random valid trees, run documents and results documents must be
 * accepted and round-trip; the same documents with one field broken must be refused by the
 * parser and by the command line with exit 2 and a message naming the field. And whatever `bench`
 * accepts, its results must be accepted by every reader (`report`, `compare`, `dashboard`).
 * Seeded: a failure prints its seed, `DEFT_TEST_SEED` replays it.
 */

import { benchCommand } from "../cli/commands/bench.ts";
import { captureIo } from "../cli/io.ts";
import { main } from "../cli/main.ts";
import { Command } from "../deps/commander.ts";
import { parseResults, ResultsError } from "../results/document.ts";
import {
  parseRun,
  parseTree,
  parseWorkloadDocument,
  stringifyRun,
  stringifyTree,
} from "../workloads/format.ts";
import { FewShotRun } from "../workloads/few_shot.ts";
import { ReasoningRun } from "../workloads/reasoning.ts";
import type { Rng } from "../workloads/rng.ts";
import { SpeculativeRun } from "../workloads/speculative.ts";
import { TreeError, treeFacts } from "../workloads/tree.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  type Broken,
  brokenResults,
  brokenRun,
  brokenTree,
  pick,
  propertySeed,
  randomResults,
  randomRun,
  randomTree,
  withSeed,
} from "./_arbitrary.ts";
import { goodRegistry } from "./_bench_fake.ts";

const SEED = propertySeed();

async function cli(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

/** The refusal is bad input (exit 2), names every expected thing, and is no crash. */
function assertRefusal(r: { code: number; err: string }, b: Broken, where: string) {
  const ctx = `${where}: ${b.what}: ${r.err.trim()}`;
  assertEquals(r.code, 2, ctx);
  for (const re of b.expect) assert(re.test(r.err), `${ctx}\n  does not match ${re}`);
  assert(!r.err.includes("internal error") && !/\n\s+at /.test(r.err), `no crash: ${ctx}`);
}

/** The parser throws `cls` with a message matching every expected pattern. */
function assertParseRefusal(fn: () => unknown, cls: new (...a: never[]) => Error, b: Broken) {
  try {
    fn();
  } catch (e) {
    assert(e instanceof cls, `${b.what}: expected ${cls.name}, got ${e}`);
    for (const re of b.expect) {
      assert(re.test((e as Error).message), `${b.what}: ${(e as Error).message} !~ ${re}`);
    }
    return;
  }
  throw new Error(`${b.what}: accepted a broken document: ${b.text.slice(0, 200)}`);
}

Deno.test("property: random trees are accepted and round-trip; one broken field is refused by name (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withSeed(SEED, async (rng) => {
      for (let i = 0; i < 60; i++) {
        const tree = randomTree(rng);
        const text = stringifyTree(tree);
        const parsed = parseTree(text);
        assertEquals(parsed, tree);
        assertEquals(stringifyTree(parsed), text);
        const path = `${dir}/t${i}.json`;
        await Deno.writeTextFile(path, text);
        if (i % 6 === 0) {
          const r = await cli("inspect", path, "--json");
          assertEquals(r.code, 0, r.err);
          assertEquals(JSON.parse(r.out).rows[0].meanQueries, tree.queries.length);
        }
        const b = brokenTree(rng, tree);
        assertParseRefusal(() => parseTree(b.text), TreeError, b);
        await Deno.writeTextFile(path, b.text);
        if (i % 2 === 0) assertRefusal(await cli("inspect", path), b, "inspect");
        else assertRefusal(await cli("run", "sequence", path), b, "run");
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("property: random run documents are accepted and round-trip; one broken field is refused by name (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withSeed(SEED ^ 0x51, async (rng) => {
      for (let i = 0; i < 40; i++) {
        const run = randomRun(rng);
        const text = stringifyRun(run);
        const parsed = parseRun(text);
        assertEquals(parsed, run);
        assertEquals(stringifyRun(parsed), text);
        assertEquals(parseWorkloadDocument(text), run);
        const path = `${dir}/r${i}.json`;
        if (i % 8 === 0) {
          await Deno.writeTextFile(path, text);
          const r = await cli("inspect", path, "--json");
          assertEquals(r.code, 0, r.err);
          assertEquals(JSON.parse(r.out).rows[0].snapshots, run.snapshots.length);
        }
        const b = brokenRun(rng, run);
        assertParseRefusal(() => parseRun(b.text), TreeError, b);
        await Deno.writeTextFile(path, b.text);
        assertRefusal(
          await cli(...(i % 2 === 0 ? ["inspect", path] : ["gen", path, "--sample", "1"])),
          b,
          "inspect/gen",
        );
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("property: random results documents are accepted by every reader and round-trip; one broken field is refused by name (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withSeed(SEED ^ 0x7e, async (rng) => {
      for (let i = 0; i < 30; i++) {
        const doc = randomResults(rng);
        const text = JSON.stringify(doc);
        const path = `${dir}/res${i}.json`;
        const parsed = parseResults(text, path);
        assertEquals(parsed, JSON.parse(text));
        assertEquals(JSON.stringify(parsed), text);
        await Deno.writeTextFile(path, text);
        if (i % 6 === 0) {
          const report = await cli("report", path, "-o", `${dir}/res${i}.html`);
          assertEquals(report.code, 0, report.err);
          // Compared with itself: no change, but a failed case counts as failing in HEAD.
          const compare = await cli("compare", path, path, "--quiet");
          const failed = doc.workloads.some((w) =>
            w.snapshots.some((s) => s.cases.some((c) => c.status !== "ok"))
          );
          assertEquals(compare.code, failed ? 1 : 0, compare.err);
          const site = await cli("dashboard", path, "-o", `${dir}/site${i}`);
          assertEquals(site.code, 0, site.err);
          assert(!site.err.includes("skipped"), site.err);
        }
        const b = brokenResults(rng, doc, path);
        assertParseRefusal(() => parseResults(b.text, path), ResultsError, b);
        await Deno.writeTextFile(path, b.text);
        const reader = pick(rng, ["report", "compare"]);
        const r = reader === "report"
          ? await cli("report", path)
          : await cli("compare", path, path);
        assertRefusal(r, b, reader);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("property: generators place a query in every snapshot and their size arithmetic is exact", async () => {
  await withSeed(SEED ^ 0x33, (rng) => {
    for (let i = 0; i < 40; i++) {
      const kind = pick(rng, ["few-shot", "reasoning", "speculative"] as const);
      const run = kind === "few-shot"
        ? new FewShotRun({
          prompt: rng.int(1, 50),
          branches: rng.int(1, 6),
          generated: rng.int(1, 8),
        })
        : kind === "speculative"
        ? new SpeculativeRun({
          prefix: rng.int(1, 50),
          treeTokens: rng.int(1, 40),
          steps: rng.int(1, 6),
          seed: rng.int(0, 99),
          topology: pick(rng, ["medusa", "flat"] as const),
        })
        : (() => {
          const thoughtMin = rng.int(1, 6);
          return new ReasoningRun({
            prompt: rng.int(1, 50),
            depth: rng.int(1, 4),
            width: rng.int(1, 5),
            thoughtMin,
            thoughtMax: thoughtMin + rng.int(0, 8),
            seed: rng.int(0, 99),
          });
        })();
      const most = { nodes: 0, totalTokens: 0, queries: 0 };
      for (const s of run.snapshots()) {
        const f = treeFacts(s.tree);
        assert(f.queries > 0, `${run.info.name}@${s.iteration} has no queries`);
        most.nodes = Math.max(most.nodes, f.nodes);
        most.totalTokens = Math.max(most.totalTokens, f.treeTokens);
        most.queries = Math.max(most.queries, f.queries);
      }
      // The refusal of impossible sizes uses this arithmetic: it must be exact, never refusing
      // a run whose trees fit.
      if (run instanceof ReasoningRun) {
        const b = run.largestTree;
        assertEquals({ nodes: b.nodes, totalTokens: b.totalTokens, queries: b.queries }, most);
      }
    }
  });
});

/** One random `bench` invocation over small inputs; files are written under `dir`. */
async function randomBenchArgs(rng: Rng, dir: string, i: number): Promise<string[]> {
  const args: string[] = [];
  const kind = pick(rng, ["few-shot", "speculative", "reasoning", "grid", "none"] as const);
  const gen: Record<string, string[]> = {
    "few-shot": ["--prompt", String(rng.int(8, 40)), "--branches", String(rng.int(1, 3))]
      .concat(["--generated", String(rng.int(2, 4))]),
    speculative: ["--prefix", String(rng.int(5, 20)), "--tree-tokens", String(rng.int(2, 6))]
      .concat(["--steps", String(rng.int(2, 5))]),
    reasoning: ["--prompt", String(rng.int(5, 20)), "--depth", String(rng.int(1, 2))]
      .concat(["--width", "2", "--thought-min", "1", "--thought-max", String(rng.int(1, 3))]),
    grid: ["--levels", `1x${rng.int(5, 30)},${rng.int(1, 3)}x${rng.int(1, 9)}`],
    none: [],
  };
  if (kind !== "none") {
    const copies = rng.next() < 0.3 ? 2 : 1; // the same generator twice: names collide
    for (let c = 0; c < copies; c++) args.push(kind);
    args.push(...gen[kind]!);
    const sweepable: Record<string, string[]> = {
      "few-shot": ["prompt", "branches", "generated"],
      speculative: ["prefix", "tree-tokens", "steps"],
      reasoning: ["prompt", "depth", "thought-max"],
    };
    if (copies === 1 && sweepable[kind] && rng.next() < 0.5) {
      // Sweep values keep the other options valid: thought-max stays >= thought-min (1).
      args.push("--sweep", `${pick(rng, sweepable[kind]!)}=2,3`);
    }
  }
  if (!args.includes("--sweep")) {
    // Files: a tree and a run, sometimes two with one base name in different folders.
    const files = rng.int(kind === "none" ? 1 : 0, 2);
    for (let f = 0; f < files; f++) {
      const sub = `${dir}/in${i}/${rng.next() < 0.5 ? "a" : "b"}`;
      await Deno.mkdir(sub, { recursive: true });
      const path = `${sub}/${pick(rng, ["w", "x"])}.json`;
      // Small trees only: a node of millions of tokens exceeds a software adapter's buffers.
      const text = rng.next() < 0.5
        ? stringifyTree(randomTree(rng, 8, { huge: false }))
        : stringifyRun(randomRun(rng, { huge: false }));
      await Deno.writeTextFile(path, text);
      args.push(path);
      if (rng.next() < 0.2) args.push(path); // the same file twice
    }
  }
  return args;
}

Deno.test("property: whatever bench accepts, report, compare and dashboard accept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withSeed(SEED ^ 0xbe, async (rng) => {
      for (let i = 0; i < 8; i++) {
        const workloads = await randomBenchArgs(rng, dir, i);
        const out = `${dir}/out${i}`;
        const io = captureIo();
        const program = new Command().exitOverride().configureOutput({
          writeOut: io.out,
          writeErr: io.err,
        });
        program.addCommand(benchCommand(io, { methods: goodRegistry() }).exitOverride());
        const args = [
          "bench",
          ...workloads,
          "--shape",
          "4/2/16/2",
          "--dtype",
          "f32",
          "--samples",
          String(rng.int(1, 3)),
          "--budget-ms",
          "4",
          "--warmup-ms",
          "1",
          "--min-samples",
          "2",
          "--max-samples",
          "4",
          "--verify-rows",
          "2",
          "--no-calibrate",
          "--quiet",
          "-o",
          out,
        ];
        const what = args.join(" ");
        await program.parseAsync(args, { from: "user" }).catch((e) => {
          throw new Error(`bench refused valid input: ${what}: ${e} ${io.stderr}`);
        });
        const path = `${out}/results.json`;
        const doc = parseResults(await Deno.readTextFile(path), path);
        assert(doc.workloads.length > 0, what);
        const report = await cli("report", path, "-o", `${out}/again.html`);
        assertEquals(report.code, 0, `${what}: ${report.err}`);
        const compare = await cli("compare", path, path, "--quiet");
        assertEquals(compare.code, 0, `${what}: ${compare.err}`);
        const site = await cli("dashboard", path, "-o", `${out}/site`);
        assertEquals(site.code, 0, `${what}: ${site.err}`);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

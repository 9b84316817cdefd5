/**
 * Runs the `Deno.test` definitions of test files inside `deno run`, one after another, and prints
 * lines in `deno test`'s format (`name ... ok (12ms)`, then `ok | N passed | N failed | N ignored`),
 * so that `.ci/run` parses either.
 *
 *     deno run -A tools/run_tests.ts [--filter TEXT|/REGEX/] FILE...
 *
 * Why it exists: on Mesa's lavapipe, a `deno test` process compiles Dawn's subgroup-matrix kernels
 * about 50 times slower than a `deno run` process does. The same tree-mask case took 3 min 24 s
 * under `deno test` and 4.2 s under `deno run`, from the same cold shader cache. While it
 * compiles, one of Deno's worker threads is busy in Deno's own code. The cause is not known.
 * `.ci/run` runs its Dawn step through this file; on GPUs, and for every other test, `deno test`
 * is the runner.
 *
 * It covers what the project's tests use: every `Deno.test` call form, `ignore`, `only` (runs only
 * those, as `deno test` does), and a filter with `deno test --filter`'s meaning (a substring, or a
 * regular expression between slashes). Test steps and sanitizers are not supported: a test that
 * calls `t.step` fails with a message that says so.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** One registered test. */
interface TestDef {
  name: string;
  fn: (t: unknown) => void | Promise<void>;
  ignore: boolean;
  only: boolean;
}

type Fn = TestDef["fn"];
type Options = Partial<Omit<TestDef, "fn">> & { fn?: Fn };

/** Normalises every call form of `Deno.test` into a {@linkcode TestDef}. */
export function testDef(a: unknown, b?: unknown, c?: unknown): TestDef {
  let name: string | undefined;
  let fn: Fn | undefined;
  let opts: Options = {};
  if (typeof a === "string") {
    name = a;
    if (typeof b === "function") fn = b as Fn;
    else {
      opts = (b ?? {}) as Options;
      fn = c as Fn;
    }
  } else if (typeof a === "function") {
    fn = a as Fn;
    name = fn.name;
  } else {
    opts = (a ?? {}) as Options;
    fn = (typeof b === "function" ? b : opts.fn) as Fn | undefined;
    name = opts.name ?? fn?.name;
  }
  if (!name || typeof fn !== "function") {
    throw new TypeError("Deno.test needs a name and a function");
  }
  return { name, fn, ignore: opts.ignore === true, only: opts.only === true };
}

/** `deno test --filter`'s meaning: `/regex/` or a substring. */
export function matcher(filter: string | undefined): (name: string) => boolean {
  if (!filter) return () => true;
  const m = /^\/(.*)\/$/.exec(filter);
  if (m) {
    const re = new RegExp(m[1]!);
    return (name) => re.test(name);
  }
  return (name) => name.includes(filter);
}

const noSteps = {
  step() {
    throw new Error("tools/run_tests.ts does not support test steps; run this file with deno test");
  },
};

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { filter: { type: "string" } },
    allowPositionals: true,
  });
  if (positionals.length === 0) {
    console.error("usage: deno run -A tools/run_tests.ts [--filter TEXT|/REGEX/] FILE...");
    return 2;
  }
  const defs: TestDef[] = [];
  (Deno as unknown as { test: unknown }).test = (a: unknown, b?: unknown, c?: unknown) => {
    defs.push(testDef(a, b, c));
  };
  const started = performance.now();
  let passed = 0, failed = 0, ignored = 0, filtered = 0;
  for (const file of positionals) {
    const before = defs.length;
    await import(pathToFileURL(resolve(file)).href);
    const mine = defs.slice(before);
    const keep = matcher(values.filter);
    const only = mine.some((d) => d.only);
    const run = mine.filter((d) => keep(d.name) && (!only || d.only));
    filtered += mine.length - run.length;
    console.log(`running ${run.length} tests from ./${file}`);
    for (const d of run) {
      if (d.ignore) {
        console.log(`${d.name} ... ignored (0ms)`);
        ignored++;
        continue;
      }
      const t0 = performance.now();
      try {
        await d.fn(noSteps);
        console.log(`${d.name} ... ok (${Math.round(performance.now() - t0)}ms)`);
        passed++;
      } catch (e) {
        console.log(`${d.name} ... FAILED (${Math.round(performance.now() - t0)}ms)`);
        console.log(e instanceof Error ? e.stack ?? e.message : String(e));
        failed++;
      }
    }
  }
  const secs = Math.round((performance.now() - started) / 1000);
  console.log(
    `\n${failed ? "FAILED" : "ok"} | ${passed} passed | ${failed} failed | ${ignored} ignored | ` +
      `${filtered} filtered out (${Math.floor(secs / 60)}m${secs % 60}s)`,
  );
  return failed ? 1 : 0;
}

if (import.meta.main) {
  // Dawn's device keeps the process alive after the last test: end it.
  Deno.exit(await main());
}

import { main } from "../cli/main.ts";
import { captureIo } from "../cli/io.ts";
import { METHOD_NAMES } from "../kernels/method.ts";
import { assertEquals, assertMatch } from "./_assert.ts";

const TREE = ["few-shot", "--prompt", "40", "--branches", "3", "--generated", "4"];
// The shape and dtype of the conformance matrix's main cases (tests/_conformance.ts GQA4, f32): on
// a software adapter their kernels then compile once per test run (Mesa's shader cache), not
// again here (up to a minute each through OpenGL).
const OPTS = ["--shape", "8/2/128", "--dtype", "f32"];

// Issue 8, #16: unwritten values showed only with --json; the table showed a small error.
Deno.test({
  name: "run all prints, per method, the error and the unwritten and NaN/inf counts in its table",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const io = captureIo();
    const code = await main(["run", "all", ...TREE, ...OPTS], io);
    assertEquals(code, 0, io.stderr);
    assertMatch(io.stdout, /max rel error\s*│\s*unwritten\s*│\s*NaN\/inf\s*│\s*ok/);
    for (const m of METHOD_NAMES) {
      assertMatch(
        io.stdout,
        // method, runtime, kernel variant, then the error, unwritten and NaN/inf counts.
        new RegExp(`│ ${m}\\s*│ \\w+\\s*│ [^│]+│ \\d\\.\\d\\de-\\d+\\s*│ 0\\s*│ 0\\s*│ yes`),
        m,
      );
    }
    const json = captureIo();
    assertEquals(await main(["run", "deft-node", ...TREE, ...OPTS, "--json"], json), 0);
    const outcome = JSON.parse(json.stdout).outcomes[0];
    assertEquals([outcome.unwritten, outcome.nonFinite, outcome.note], [0, 0, null]);
  },
});

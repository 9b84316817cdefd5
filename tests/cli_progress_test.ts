import { createProgress, describeCase, formatDuration, formatNs } from "../cli/progress.ts";
import { captureIo } from "../cli/io.ts";
import { zeroPlanCounts } from "../kernels/method.ts";
import type { CaseResult } from "../results/schema.ts";
import { assert, assertEquals } from "./_assert.ts";

function okCase(key: string, medianNs: number): CaseResult {
  return {
    key,
    method: "deft-flatten",
    runtime: "deno",
    kernel: "fma",
    options: {},
    sourceHash: "0",
    status: "ok",
    message: null,
    counts: zeroPlanCounts(),
    stats: {},
    dispatches: 1,
    prepareMs: 0,
    planMs: 0,
    timing: {
      samplesNs: [medianNs, medianNs],
      medianNs,
      meanNs: medianNs,
      minNs: medianNs,
      maxNs: medianNs,
      madNs: 0,
      ci95Ns: [medianNs * 0.99, medianNs * 1.01],
      outliers: { lowSevere: 0, lowMild: 0, highMild: 0, highSevere: 0 },
    },
    roofline: null,
    verification: {
      checked: true,
      rows: 1,
      maxRelError: 0,
      tolerance: 1e-4,
      unwritten: 0,
      nonFinite: 0,
      passed: true,
    },
  };
}

Deno.test("plain-line mode prints one line per finished case and notes, no carriage returns", () => {
  const io = captureIo();
  let t = 0;
  const p = createProgress(io, { now: () => t });
  p.start(2);
  p.current("few-shot-b20@10");
  t = 1000;
  p.caseDone(okCase("few-shot-b20@10/deft-flatten", 1.5e6));
  p.note("warning: something");
  p.caseDone({
    ...okCase("few-shot-b20@10/radix", 1),
    status: "failed",
    message: "bad",
    timing: null,
  });
  p.finish();
  assertEquals(
    io.stderr,
    "[1/2] few-shot-b20@10/deft-flatten: 1.500 ms ±1.0% (2 samples)\n" +
      "warning: something\n" +
      "[2/2] few-shot-b20@10/radix: FAILED verification: bad\n",
  );
  assertEquals(io.stdout, "");
});

Deno.test("terminal mode redraws one line with the time left and clears it at the end", () => {
  const cap = captureIo();
  const tty = { out: cap.out, err: cap.err, errIsTerminal: true };
  let t = 0;
  const p = createProgress(tty, { now: () => t });
  p.start(4);
  p.current("sorting@100");
  t = 10_000;
  p.caseDone(okCase("sorting@100/deft-flatten", 1e6));
  assert(cap.stderr.includes("\r[1/4] sorting@100 (~30s left)"), JSON.stringify(cap.stderr));
  assert(!cap.stderr.includes("\n"));
  p.finish();
  assert(cap.stderr.endsWith("\r"));
});

Deno.test("silent mode prints nothing", () => {
  const io = captureIo();
  const p = createProgress(io, { silent: true });
  p.start(1);
  p.current("x");
  p.caseDone(okCase("x/y", 1));
  p.note("n");
  p.finish();
  assertEquals(io.stderr + io.stdout, "");
});

Deno.test("formatNs(), formatDuration() and describeCase()", () => {
  assertEquals(formatNs(512), "512 ns");
  assertEquals(formatNs(1500), "1.50 µs");
  assertEquals(formatNs(2.5e6), "2.500 ms");
  assertEquals(formatNs(3e9), "3.000 s");
  assertEquals(formatDuration(42_000), "42s");
  assertEquals(formatDuration(185_000), "3m05s");
  assertEquals(formatDuration(3_720_000), "1h02m");
  assertEquals(
    describeCase({ ...okCase("k", 1), status: "error", message: "lost", timing: null }),
    "k: error: lost",
  );
});

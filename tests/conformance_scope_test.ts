/**
 * Which conformance matrix this run checks (tests/_conformance.ts), said once in the test output:
 * the full one on a GPU or with `DEFT_FULL_CONFORMANCE=1` (CI), a reduced one on a software adapter,
 * and the smallest one through OpenGL; and whether f16 kernel tests and the browser tests are
 * ignored (each file of the run imports the helpers, so the notes live here, printed once).
 */

import {
  CHECK_VARIANTS,
  conformanceCases,
  F16_IGNORED,
  FULL_CONFORMANCE,
  fullConformance,
  inMatrix,
  OPENGL_MINIMAL,
  PER_TREE_KERNELS,
  SOFTWARE_ADAPTER,
} from "./_conformance.ts";
import { CHROMIUM_PATH, SKIP_BROWSER } from "./_browser.ts";
import { assert, assertEquals } from "./_assert.ts";

const all = conformanceCases();
const reduced = all.filter((c) => c.reduced === true);

if (SKIP_BROWSER) {
  console.warn(
    `warning: Chromium not found at ${CHROMIUM_PATH}; the report tests that open pages in a browser are ignored (install chromium, or set DEFT_CHROMIUM)`,
  );
}
if (F16_IGNORED) {
  console.warn(
    "warning: the WebGPU adapter has no shader-f16; f16 kernel tests are ignored (apt-get install -y mesa-vulkan-drivers adds an adapter with it)",
  );
}
if (OPENGL_MINIMAL) {
  console.warn(
    `note: through OpenGL each kernel compiles for 20 s to over a minute, so kernel variants other than each method's default are ignored here and ${
      [...PER_TREE_KERNELS].join(", ")
    } (kernels compiled per tree) runs one tree; lavapipe (apt-get install -y mesa-vulkan-drivers) or DEFT_FULL_CONFORMANCE=1 checks them all`,
  );
}
if (!FULL_CONFORMANCE) {
  console.warn(
    `note: on the software adapter ${SOFTWARE_ADAPTER} the kernel conformance tests run a reduced matrix (${reduced.length} of the ${all.length} shared cases per method, each kernel variant on fewer trees and shapes; every method and variant is still checked against the float64 reference): DEFT_FULL_CONFORMANCE=1 deno task test runs the full matrix (CI does)`,
  );
}

Deno.test("the full conformance matrix runs on a GPU or with DEFT_FULL_CONFORMANCE=1", () => {
  assertEquals(fullConformance(undefined, null), true);
  assertEquals(fullConformance("1", null), true);
  assertEquals(fullConformance(undefined, "llvmpipe (LLVM 15.0.6, 256 bits)"), false);
  assertEquals(fullConformance("0", "llvmpipe (LLVM 15.0.6, 256 bits)"), false);
  assertEquals(fullConformance("1", "llvmpipe (LLVM 15.0.6, 256 bits)"), true);
  assertEquals(
    FULL_CONFORMANCE,
    fullConformance(Deno.env.get("DEFT_FULL_CONFORMANCE"), SOFTWARE_ADAPTER),
  );
  assertEquals(
    all.filter((c) => inMatrix(c)).length,
    FULL_CONFORMANCE ? all.length : reduced.length,
  );
  // Stand-ins marked "only" replace full-matrix cases in the reduced matrix, and only there.
  const marks = [{}, { reduced: false }, { reduced: true }, { reduced: "only" as const }];
  assertEquals(marks.map((c) => inMatrix(c, true)), [true, true, true, false]);
  assertEquals(marks.map((c) => inMatrix(c, false)), [false, false, true, true]);
});

Deno.test("the reduced conformance matrix keeps both dtypes and the trees at the kernels' edges", () => {
  assert(reduced.length > 0 && reduced.length < all.length);
  for (const dtype of ["f32", "f16"] as const) {
    const names = reduced.filter((c) => c.dtype === dtype).map((c) => c.name);
    for (
      const kind of ["few-shot", "chain", "more than 64 queries", "internal nodes", "small blocks"]
    ) {
      assert(names.some((n) => n.includes(kind)), `${kind} ${dtype} in ${names.join(", ")}`);
    }
  }
  // Trees with shared prefixes and more than 64 queries in one block, not only tiny ones.
  const queries = reduced.map((c) => c.tree().queries.length);
  assert(Math.max(...queries) > 64, queries.join(", "));
});

Deno.test("kernel variants are ignored only in the OpenGL minimal matrix", () => {
  assertEquals(CHECK_VARIANTS, !OPENGL_MINIMAL);
  if (OPENGL_MINIMAL) assert(!FULL_CONFORMANCE && SOFTWARE_ADAPTER !== null && F16_IGNORED);
  if (FULL_CONFORMANCE || SOFTWARE_ADAPTER === null) assertEquals(OPENGL_MINIMAL, false);
});

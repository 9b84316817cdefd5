import { specializeWgsl, unrollWgsl, WgslError } from "../kernels/wgsl.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

Deno.test("specializeWgsl() rewrites constants by their declared type, aliases, and enables f16", () => {
  const src = [
    "alias KV4 = vec4<f32>; // storage",
    "const N: u32 = 4u;",
    "const S: f32 = 1.0;",
    "const R: bool = false;",
    "const T: f32 = 2.0;",
    "const M: u32 = N * 2u;",
  ].join("\n");
  const out = specializeWgsl(src, {
    consts: { N: 8, S: 0.125, R: true, T: "0.3333" },
    aliases: { KV4: "vec4<f16>" },
    f16: true,
  });
  assertEquals(
    out,
    [
      "enable f16;",
      "alias KV4 = vec4<f16>; // storage",
      "const N: u32 = 8u;",
      "const S: f32 = 0.125000000000;",
      "const R: bool = true;",
      "const T: f32 = 0.3333;",
      "const M: u32 = N * 2u;",
    ].join("\n"),
  );
  assertEquals(specializeWgsl(src, {}), src);
});

Deno.test("specializeWgsl() and unrollWgsl() throw WgslError, an internal error, for a source that lost what they rewrite", () => {
  const src = "alias ST = f32;\nconst TM: u32 = 4u;\n";
  assertThrows(
    () => specializeWgsl(src, { consts: { NOPE: 1 }, name: "x.wgsl" }),
    WgslError,
    /x\.wgsl has no constant NOPE/,
  );
  assertThrows(() => specializeWgsl(src, { aliases: { KV4: "f16" } }), WgslError, /alias KV4/);
  // Not a RangeError: the command line never reports a broken kernel source as bad input.
  let e: unknown = null;
  try {
    unrollWgsl("for (var i = 0u; i < M; i++) { // unroll\n}", {});
  } catch (x) {
    e = x;
  }
  assert(e instanceof WgslError && !(e instanceof RangeError), String(e));
  assertThrows(
    () => unrollWgsl("for (var i = 0u; i < 2u; i++) { // unroll\n  x = 1; }", {}),
    WgslError,
    /Unclosed unrolled loop/,
  );
});

Deno.test("unrollWgsl() repeats marked loops with constant indices, nested too", () => {
  const src = [
    "fn f() {",
    "  for (var i = 0u; i < N; i++) { // unroll",
    "    for (var j = 0u; j < 2u; j++) { // unroll",
    "      x[i * 2u + j] = 1.0;",
    "    }",
    "  }",
    "  for (var k = 0u; k < N; k++) {",
    "  }",
    "}",
  ].join("\n");
  const out = unrollWgsl(src, { N: 3 });
  assertEquals(out.match(/x\[i \* 2u \+ j\] = 1\.0;/g)?.length, 6);
  assertEquals(out.match(/const i = \d+u;/g), ["const i = 0u;", "const i = 1u;", "const i = 2u;"]);
  assert(!out.includes("// unroll"));
  assert(out.includes("for (var k = 0u; k < N; k++) {"), "unmarked loops stay");
});

import { matcher, testDef } from "../tools/run_tests.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

Deno.test("tools/run_tests.ts reads every Deno.test call form", () => {
  const fn = () => {};
  async function named() {}
  assertEquals(testDef("a", fn), { name: "a", fn, ignore: false, only: false });
  assertEquals(testDef("b", { ignore: true }, fn), { name: "b", fn, ignore: true, only: false });
  assertEquals(testDef({ name: "c", fn, only: true }), {
    name: "c",
    fn,
    ignore: false,
    only: true,
  });
  assertEquals(testDef({ ignore: true }, named).name, "named");
  assertEquals(testDef(named).name, "named");
  assertThrows(() => testDef({ name: "no function" }), TypeError, /name and a function/);
  assertThrows(() => testDef(() => {}), TypeError, /name and a function/);
});

Deno.test("tools/run_tests.ts filters as deno test --filter does", () => {
  const names = ["tree-mask matches: x [mma]", "deft-node matches: y", "cascade [mma]"];
  assertEquals(names.filter(matcher("[mma]")), [names[0], names[2]]);
  assertEquals(names.filter(matcher("/^(deft|cascade)/")), [names[1], names[2]]);
  assertEquals(names.filter(matcher(undefined)), names);
  assert(!matcher("/^mma/")("tree-mask [mma]"));
});

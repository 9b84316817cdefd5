/**
 * The conformance suite for every method of the list (`kernels/methods/mod.ts`), every kernel
 * variant of its record the test device can run (`[mma]` in the name for the matrix kernels) and
 * the test runtime (`DEFT_RUNTIME`: deno by default, dawn under `tools/with-lavapipe.sh`): a method
 * in the list cannot go without it. Each method's own test file adds the cases only it needs.
 */

import { METHOD_LIST } from "../../kernels/methods/mod.ts";
import { conformanceSuite } from "../_conformance.ts";

for (const record of METHOD_LIST) conformanceSuite(record);

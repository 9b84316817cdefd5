/**
 * The results document owns its record types (`results/schema.ts`), and `bench` fills them from
 * the kernels' live records (`GpuInfo`, `PlanCounts`, ...). This file checks at compile time that
 * the live records still fit the persisted ones field for field: a field a kernel record gains or
 * loses, or a runtime or kernel family the kernels gain, fails the type check of this file (and so
 * `deno test`) until the schema says what the format does with it.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import type { GpuInfo, RuntimeName, SubgroupMatrixConfig } from "../kernels/gpu.ts";
import { RUNTIME_NAMES } from "../kernels/gpu.ts";
import type { KernelChoice, MethodName, PaperIo, PlanCounts, RealIo } from "../kernels/method.ts";
import { KERNEL_CHOICES } from "../kernels/method.ts";
import {
  type AdapterRecord,
  type CaseResult,
  type CountsRecord,
  KERNEL_FAMILIES,
  type KernelFamily,
  type PaperIoRecord,
  type RealIoRecord,
  RESULTS_RUNTIMES,
  type ResultsRuntime,
  type SubgroupMatrixRecord,
} from "../results/schema.ts";

/** Exactly the same type (not merely mutually assignable through `any`). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;

/** A live value can be written where the document expects the persisted type. */
type Fits<Live, Persisted> = [Live] extends [Persisted] ? true : false;

/** The live record fits the persisted one and has the same fields, no more, no fewer. */
type Mirrors<Live, Persisted> = Fits<Live, Persisted> extends true
  ? Equal<keyof Live, keyof Persisted>
  : false;

// Each line fails to compile ("Type 'true' is not assignable to type 'false'") on drift.
const adapter: Mirrors<GpuInfo, AdapterRecord> = true;
const matrix: Mirrors<SubgroupMatrixConfig, SubgroupMatrixRecord> = true;
const counts: Mirrors<PlanCounts, CountsRecord> = true;
const paper: Mirrors<PaperIo, PaperIoRecord> = true;
const real: Mirrors<RealIo, RealIoRecord> = true;
const runtime: Fits<RuntimeName, ResultsRuntime> = true;
const kernel: Fits<KernelChoice, KernelFamily> = true;
const method: Fits<MethodName, CaseResult["method"]> = true;

// The check itself catches drift: a kernel record with one more field does not mirror the schema.
type GrownRealIo = RealIo & { l1Bytes: number };
// @ts-expect-error: a field the schema does not know
const grown: Mirrors<GrownRealIo, RealIoRecord> = true;
// @ts-expect-error: a runtime the schema does not know
const newRuntime: Fits<RuntimeName | "native", ResultsRuntime> = true;

Deno.test("the kernels' live records fit the results schema field for field (checked at compile time)", () => {
  assert([adapter, matrix, counts, paper, real, runtime, kernel, method].every((x) => x));
  assert(grown && newRuntime);
  // The runtime lists agree too: every runtime the kernels open can be recorded and read back.
  for (const name of RUNTIME_NAMES) assert(RESULTS_RUNTIMES.includes(name), name);
  for (const k of KERNEL_CHOICES) assert(KERNEL_FAMILIES.includes(k), k);
});

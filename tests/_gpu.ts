/**
 * The tests' WebGPU device, on the runtime the environment asks for:
 * - `DEFT_RUNTIME=deno` (default) or `dawn`; Dawn comes from `DAWN_NODE` when set, else the
 *   pinned npm package;
 * - `DEFT_REQUIRE_SUBGROUP_MATRIX=1` (with `dawn`): a device without subgroup matrices fails
 *   loudly instead of letting the `mma` kernels go untested.
 *
 * Dawn's objects keep a process alive and live across tests, so tests that touch the device turn
 * the op and resource sanitizers off.
 */

import { Gpu, type GpuOpenOptions, RUNTIME_NAMES, type RuntimeName } from "../kernels/gpu.ts";

/** The runtime the tests run on (`DEFT_RUNTIME`, default `deno`). */
export const TEST_RUNTIME: RuntimeName = (() => {
  const v = Deno.env.get("DEFT_RUNTIME") ?? "deno";
  if (!(RUNTIME_NAMES as readonly string[]).includes(v)) {
    throw new Error(`DEFT_RUNTIME must be one of ${RUNTIME_NAMES.join(", ")}, got ${v}`);
  }
  return v as RuntimeName;
})();

/** Whether the tests must find subgroup matrices (`DEFT_REQUIRE_SUBGROUP_MATRIX=1`). */
export const REQUIRE_SUBGROUP_MATRIX: boolean =
  Deno.env.get("DEFT_REQUIRE_SUBGROUP_MATRIX") === "1";

/** `Gpu.open` options of the test runtime. */
export function testGpuOptions(extra: GpuOpenOptions = {}): GpuOpenOptions {
  return {
    ...extra,
    runtime: TEST_RUNTIME,
    dawnNode: TEST_RUNTIME === "dawn" ? Deno.env.get("DAWN_NODE") || undefined : undefined,
  };
}

/**
 * Throws when subgroup matrices are required (`DEFT_REQUIRE_SUBGROUP_MATRIX=1`) and the device
 * has no f16 x f16 -> f32 configuration.
 */
export function checkRequirements(gpu: Gpu): void {
  if (!REQUIRE_SUBGROUP_MATRIX) return;
  if (gpu.runtime.name !== "dawn") {
    throw new Error(
      `DEFT_REQUIRE_SUBGROUP_MATRIX=1 needs DEFT_RUNTIME=dawn (subgroup matrices exist only there), got ${gpu.runtime.name}`,
    );
  }
  if (!gpu.matrixConfig()) {
    throw new Error(
      `DEFT_REQUIRE_SUBGROUP_MATRIX=1, but ${
        gpu.info.description || gpu.info.vendor
      } on ${gpu.runtime.version} offers no f16 x f16 -> f32 subgroup-matrix configuration (configs: ${
        JSON.stringify(gpu.info.subgroupMatrixConfigs)
      }; features: ${gpu.info.features.join(", ")})`,
    );
  }
}

/** A fresh device on the test runtime (the caller destroys it). */
export async function openTestGpu(extra: GpuOpenOptions = {}): Promise<Gpu> {
  const gpu = await Gpu.open(testGpuOptions(extra));
  try {
    checkRequirements(gpu);
  } catch (e) {
    gpu.destroy();
    throw e;
  }
  return gpu;
}

let shared: Promise<Gpu> | null = null;

/** One shared device per test process on the test runtime (never destroyed). */
export function testGpu(): Promise<Gpu> {
  shared ??= openTestGpu();
  return shared;
}

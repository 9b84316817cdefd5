/**
 * The storage dtype of a command that runs kernels: one check shared by `bench` and `run`, so the
 * same request gets the same answer (f16 without `shader-f16` is bad input, exit 2).
 *
 * @module
 */

import type { Dtype } from "../workloads/shapes.ts";
import { UsageError } from "./errors.ts";

/**
 * `requested`, or f16 when the adapter has `shader-f16` and f32 otherwise. Throws
 * {@linkcode UsageError} for `--dtype f16` on an adapter without `shader-f16`.
 */
export function chooseDtype(
  gpu: { hasF16: boolean; info: { description: string; vendor: string } },
  requested: Dtype | undefined,
): Dtype {
  if (requested === "f16" && !gpu.hasF16) {
    throw new UsageError(
      `--dtype f16 needs shader-f16, which ${
        gpu.info.description || gpu.info.vendor || "this adapter"
      } does not offer; use --dtype f32`,
    );
  }
  return requested ?? (gpu.hasF16 ? "f16" : "f32");
}

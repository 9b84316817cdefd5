/**
 * The storage dtype of a command that runs kernels: one check shared by `bench`, `run` and `tune`,
 * so the same request gets the same answer (f16 without `shader-f16` is bad input, exit 2, with the
 * kernels' one message, `f16Missing`).
 *
 * @module
 */

import { type DeviceFacts, f16Missing } from "../kernels/gpu.ts";
import type { Dtype } from "../workloads/shapes.ts";
import { UsageError } from "./errors.ts";

/**
 * `requested`, or f16 when the adapter has `shader-f16` and f32 otherwise. Throws
 * {@linkcode UsageError} for `--dtype f16` on an adapter without `shader-f16`.
 */
export function chooseDtype(gpu: DeviceFacts, requested: Dtype | undefined): Dtype {
  const missing = requested === "f16" ? f16Missing(gpu) : null;
  if (missing) throw new UsageError(missing);
  return requested ?? (gpu.hasF16 ? "f16" : "f32");
}

/**
 * The dtype of a run on several devices (one per runtime): `requested` when every device can
 * store it (else {@linkcode UsageError}), or f16 when every device has `shader-f16`, else f32.
 */
export function storageDtype(gpus: readonly DeviceFacts[], requested: Dtype | undefined): Dtype {
  const chosen = gpus.map((g) => chooseDtype(g, requested));
  return chosen.every((d) => d === "f16") ? "f16" : "f32";
}

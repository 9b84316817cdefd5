/**
 * The runtime options shared by `bench`, `run`, `calibrate` and `tune`: `--runtime deno|dawn|
 * deno,dawn`, `--dawn-node <path>` and `--kernel auto|fma|mma`, and opening one device per runtime
 * with the errors a user can act on: a runtime that cannot be loaded or finds no adapter is bad
 * input (exit 2) with a message naming the runtime and what to do.
 *
 * @module
 */

import { Option } from "../deps/commander.ts";
import { calibrationPath, loadCalibration } from "../bench/calibrate.ts";
import {
  Gpu,
  GpuError,
  type GpuOpenOptions,
  RUNTIME_NAMES,
  type RuntimeName,
} from "../kernels/gpu.ts";
import { KERNEL_CHOICES, kernelCaps, type KernelChoice } from "../kernels/method.ts";
import type { Dtype } from "../workloads/shapes.ts";
import type { ClockReferenceCalibration } from "../results/schema.ts";
import { UsageError } from "./errors.ts";

/** Parses `--runtime deno`, `dawn` or `deno,dawn` (order kept, each runtime once). */
export function parseRuntimes(spec: string): RuntimeName[] {
  const names = spec.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (names.length === 0) {
    throw new UsageError(`--runtime needs a runtime name (${RUNTIME_NAMES.join(", ")})`);
  }
  const out: RuntimeName[] = [];
  for (const n of names) {
    if (!(RUNTIME_NAMES as readonly string[]).includes(n)) {
      throw new UsageError(
        `Unknown runtime ${JSON.stringify(n)} in --runtime; available: ${
          RUNTIME_NAMES.join(", ")
        } (deno: Deno's built-in WebGPU; dawn: Chromium's Dawn from the npm package webgpu)`,
      );
    }
    if (out.includes(n as RuntimeName)) {
      throw new UsageError(`--runtime names ${n} twice`);
    }
    out.push(n as RuntimeName);
  }
  return out;
}

/** `--runtime`. */
export function runtimeOption() {
  return new Option(
    "--runtime <list>",
    "WebGPU runtime(s): deno (built in), dawn (Chromium's Dawn via the npm package webgpu; subgroup matrices), or deno,dawn (both in one run); default $DEFT_RUNTIME, else deno",
  );
}

/** `--dawn-node`. */
export function dawnNodeOption() {
  return new Option(
    "--dawn-node <path>",
    "path of Dawn's dawn.node addon (default: $DAWN_NODE, else the pinned npm package webgpu, downloaded on first use)",
  );
}

/** `--kernel`. */
export function kernelOption() {
  return new Option(
    "--kernel <family>",
    "kernel family: auto (the fastest the device offers), fma (plain FMA kernels) or mma (subgroup matrices; f16 on a device with them)",
  ).choices(KERNEL_CHOICES);
}

/** What the runtime options parse to. */
export interface RuntimeArgs {
  runtimes: RuntimeName[];
  dawnNode?: string;
}

/**
 * Reads `--runtime` (default: `DEFT_RUNTIME`, as `tools/with-lavapipe.sh` sets it, else `deno`)
 * and `--dawn-node`; `--dawn-node` without dawn is a usage error.
 */
export function runtimeArgs(opts: { runtime?: string; dawnNode?: string }): RuntimeArgs {
  const runtimes = parseRuntimes(opts.runtime ?? (Deno.env.get("DEFT_RUNTIME") || "deno"));
  if (opts.dawnNode !== undefined && !runtimes.includes("dawn")) {
    throw new UsageError("--dawn-node has no effect without --runtime dawn (or deno,dawn)");
  }
  return { runtimes, dawnNode: opts.dawnNode };
}

const DAWN_ADVICE =
  "Dawn needs a Vulkan driver it accepts: a GPU driver, or Mesa's lavapipe 25.0 or newer on a CPU (Debian 12's Mesa 22.3 is refused); use --runtime deno for Deno's built-in WebGPU";

/**
 * Opens a device on `runtime`. A Dawn that cannot be loaded, finds no adapter or refuses a device
 * is a {@linkcode UsageError} (exit 2) naming the runtime and what to do; errors of the built-in
 * runtime stay {@linkcode GpuError}s (exit 1).
 */
export async function openRuntime(
  runtime: RuntimeName,
  options: Omit<GpuOpenOptions, "runtime"> = {},
): Promise<Gpu> {
  try {
    return await Gpu.open({ ...options, runtime });
  } catch (e) {
    if (runtime === "dawn" && e instanceof GpuError) {
      // The built-in runtime's install hint does not fit Dawn: replace it.
      const m = e.message.replace(/\s*Install a GPU driver.*$/s, "").replace(/\.$/, "");
      throw new UsageError(
        `--runtime dawn: ${m}${
          /--runtime deno|DEFT_DAWN_TOGGLES/.test(m) ? "" : `. ${DAWN_ADVICE}`
        }`,
      );
    }
    throw e;
  }
}

/** Opens one device per runtime, in order; on a failure, closes those already open. */
export async function openRuntimes(
  args: RuntimeArgs,
  options: Omit<GpuOpenOptions, "runtime" | "dawnNode"> = {},
): Promise<Gpu[]> {
  const out: Gpu[] = [];
  try {
    for (const r of args.runtimes) {
      out.push(await openRuntime(r, { ...options, dawnNode: args.dawnNode }));
    }
    return out;
  } catch (e) {
    for (const g of out) g.destroy();
    throw e;
  }
}

/**
 * Throws a {@linkcode UsageError} when `--kernel mma` was asked for on a device or dtype without
 * subgroup matrices.
 */
export function checkKernel(kernel: KernelChoice | undefined, gpu: Gpu, dtype: Dtype): void {
  if (kernel !== "mma") return;
  const name = gpu.info.description || gpu.info.vendor || "the adapter";
  if (dtype !== "f16") {
    throw new UsageError("--kernel mma needs --dtype f16 (subgroup matrices take f16 inputs)");
  }
  if (!kernelCaps(gpu).matrix) {
    throw new UsageError(
      `--kernel mma needs subgroup matrices, which ${name} does not offer on runtime ${gpu.runtime.name} (they need --runtime dawn on an adapter with cooperative matrices); use --kernel fma or auto`,
    );
  }
}

/**
 * Where a device's calibration lives: `out/calibration/<adapter>.json` on Deno's built-in WebGPU
 * (as before runtimes existed), `<adapter>-<runtime>.json` on others (their ceilings differ: Dawn's
 * FMA code is faster on the same GPU).
 */
export function runtimeCalibrationPath(gpu: Gpu, dir = "out/calibration"): string {
  const path = calibrationPath(gpu.info, dir);
  return gpu.runtime.name === "deno" ? path : path.replace(/\.json$/, `-${gpu.runtime.name}.json`);
}

/**
 * Gives `gpu` the resident workgroups of its stored calibration (`bench` does the same with the
 * calibration it uses), so that `run` and `tune` plan as `bench` does; a missing or unreadable
 * calibration leaves them unknown (`bench` and `calibrate` say what is wrong with one). Returns the
 * calibration's clock reference, if it has one (`tune`'s clock guard takes its working speed).
 */
export async function useStoredResidency(
  gpu: Gpu,
  dir = "out/calibration",
): Promise<ClockReferenceCalibration | null> {
  const stored = await loadCalibration(runtimeCalibrationPath(gpu, dir), gpu.info).catch(() =>
    null
  );
  gpu.residentWorkgroups = stored?.calibration.residentWorkgroups ?? null;
  return stored?.calibration.reference ?? null;
}

/** `deno` / `dawn` label of a device, with its adapter: `dawn (NVIDIA H200)`. */
export function deviceLabel(gpu: Gpu): string {
  return `${gpu.runtime.name} (${gpu.info.description || gpu.info.vendor || "unknown adapter"})`;
}

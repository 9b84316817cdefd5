import {
  adapterKey,
  calibrate,
  CALIBRATION_FORMAT,
  calibrationPath,
  fmaWgsl,
  loadCalibration,
  measureResidentWorkgroups,
  saveCalibration,
} from "../bench/calibrate.ts";
import { REFERENCE_KERNEL } from "../bench/clock.ts";
import { createTimer } from "../bench/timer.ts";
import { type GpuInfo, isSoftwareAdapter } from "../kernels/gpu.ts";
import { openTestGpu } from "./_gpu.ts";
import { runtimeCalibrationPath, useStoredResidency } from "../cli/runtime_args.ts";
import { kernelCaps } from "../kernels/method.ts";
import { FileExistsError } from "../results/files.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";

const info = (description: string): GpuInfo => ({
  vendor: "NVIDIA",
  architecture: "hopper",
  device: "0x2330",
  description,
  isFallbackAdapter: false,
  features: [],
  limits: {},
  subgroupMinSize: 32,
  subgroupMaxSize: 32,
  subgroupMatrixConfigs: [],
});

Deno.test("adapterKey() is a file-name-safe slug of vendor, architecture and description", () => {
  assertEquals(adapterKey(info("NVIDIA H100 80GB HBM3")), "nvidia-hopper-nvidia-h100-80gb-hbm3");
  assertEquals(adapterKey({ ...info(""), vendor: "", architecture: "" }), "0x2330");
  assertEquals(
    adapterKey({ ...info(""), vendor: "", architecture: "", device: "" }),
    "unknown-adapter",
  );
  assertEquals(calibrationPath(info("x"), "cal/"), "cal/nvidia-hopper-x.json");
});

Deno.test("fmaWgsl() has 8 chains, unrolled 4 times", () => {
  const src = fmaWgsl("f16");
  assert(src.startsWith("\nenable f16;") || src.startsWith("enable f16;"));
  assertEquals(src.match(/a7 = fma/g)!.length, 4);
  assertEquals(src.match(/= fma\(/g)!.length, 32);
});

Deno.test("calibrate() measures every ceiling on the real adapter at tiny sizes", async () => {
  const gpu = await openTestGpu();
  const timer = createTimer(gpu);
  const steps: string[] = [];
  try {
    const c = await calibrate(gpu, timer, {
      readSizes: [1 << 16, 1 << 20, 2 ** 40], // the last one is cut at the binding limit
      l2Sizes: [1 << 16, 1 << 18, 1 << 20], // the first is below 64 tiles of 4 KiB: skipped
      l2TargetNs: 2e5,
      fmaTargetNs: 2e5,
      fmaMaxWorkgroups: 16,
      dispatches: 8,
      measure: { warmupMs: 5, budgetMs: 30, minSamples: 3, maxSamples: 20, targetRelativeCi: 0.1 },
      onStep: (s) => steps.push(s),
    });
    assertEquals(c.adapterKey, adapterKey(gpu.info));
    assertEquals(c.readBandwidth.map((r) => r.bytes), [
      1 << 16,
      1 << 20,
      Math.min(gpu.limit("maxStorageBufferBindingSize"), gpu.limit("maxBufferSize")),
    ]);
    for (const r of c.readBandwidth) assert(r.bytesPerS > 0 && Number.isFinite(r.bytesPerS));
    assertEquals(c.peakReadBytesPerS, Math.max(...c.readBandwidth.map((r) => r.bytesPerS)));
    assert(c.f32FlopsPerS > 1e6, `f32 ${c.f32FlopsPerS}`);
    if (gpu.hasF16) assert(c.f16FlopsPerS! > 1e6);
    else assertEquals(c.f16FlopsPerS, null);
    assert(c.dispatchNs > 0);
    assert(c.extraDispatchNs >= 0);
    assertEquals(c.l2ReadBandwidth!.map((r) => r.bytes), [1 << 18, 1 << 20]);
    for (const r of c.l2ReadBandwidth!) assert(r.bytesPerS > 0 && Number.isFinite(r.bytesPerS));
    assertEquals(c.l2ReadBytesPerS, Math.max(...c.l2ReadBandwidth!.map((r) => r.bytesPerS)));
    assertEquals(c.reference!.kernel, REFERENCE_KERNEL);
    assertEquals(c.reference!.timingMode, timer.mode);
    assert(c.reference!.nsPerDispatch > 0 && c.reference!.iterations >= 16);
    assertEquals(steps.slice(0, 3), ["clock reference", "read bandwidth", "L2 read bandwidth"]);
    assertEquals(steps.slice(-2), ["dispatch overhead", "resident workgroups"]);
    // One per SM on a GPU; a software adapter is not measured (more workgroups buy it nothing).
    if (isSoftwareAdapter(gpu.info)) assertEquals(c.residentWorkgroups, null);
    else assert(c.residentWorkgroups! >= 1, `${c.residentWorkgroups}`);

    const dir = await Deno.makeTempDir();
    const path = calibrationPath(gpu.info, dir);
    const doc = {
      format: CALIBRATION_FORMAT,
      version: 1,
      adapter: gpu.info,
      timingMode: timer.mode,
      calibration: c,
    } as const;
    await saveCalibration(path, doc);
    assertEquals(await loadCalibration(path, gpu.info), JSON.parse(JSON.stringify(doc)));
    // `run` and `tune` take the stored resident workgroups (as `bench` does), or none.
    const runtimePath = runtimeCalibrationPath(gpu, dir);
    await saveCalibration(runtimePath, {
      ...doc,
      calibration: { ...c, residentWorkgroups: 7 },
    }, { force: true });
    await useStoredResidency(gpu, dir);
    assertEquals(gpu.residentWorkgroups, 7);
    assertEquals(kernelCaps(gpu).residentWorkgroups, 7);
    await useStoredResidency(gpu, `${dir}/missing`);
    assertEquals(gpu.residentWorkgroups, null);
    assertEquals(kernelCaps(gpu).residentWorkgroups, undefined);
    await assertRejects(() => saveCalibration(path, doc), FileExistsError);
    await saveCalibration(path, doc, { force: true });
    await assertRejects(
      () => loadCalibration(path, info("other")),
      SyntaxError,
      /not on this adapter/,
    );
    assertEquals(await loadCalibration(`${dir}/none.json`), null);
    await Deno.writeTextFile(`${dir}/bad.json`, `{"format":"x"}`);
    await assertRejects(() => loadCalibration(`${dir}/bad.json`), SyntaxError);
    await Deno.remove(dir, { recursive: true });
  } finally {
    timer.destroy();
    gpu.destroy();
  }
});

Deno.test("measureResidentWorkgroups() counts the whole-storage workgroups live at once", async () => {
  const gpu = await openTestGpu();
  try {
    // Forced on any adapter with few short workgroups: at least one, at most all of them live.
    const n = await measureResidentWorkgroups(gpu, { workgroups: 8, spin: 50, software: true });
    assert(n !== null && n >= 1 && n <= 8, `${n}`);
    if (isSoftwareAdapter(gpu.info)) assertEquals(await measureResidentWorkgroups(gpu), null);
  } finally {
    gpu.destroy();
  }
});

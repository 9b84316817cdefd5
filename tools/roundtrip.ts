/**
 * The host's round trip to the GPU on a runtime: the wall time of a submit of one small copy followed
 * by `mapAsync` of its destination, and of an empty submit followed by `onSubmittedWorkDone`,
 * `--count` times each (median and maximum). Deno's built-in WebGPU polls completion every ~10 ms
 * (`../shared/harness-notes.md`); this tells whether another runtime leaves the GPU idle longer
 * between a benchmark's batches.
 *
 *     deno run -A tools/roundtrip.ts [--runtime deno|dawn] [--count 40]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Gpu, RUNTIME_NAMES, type RuntimeName } from "../kernels/gpu.ts";
import { median } from "../results/stats.ts";

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runtime: { type: "string", default: "deno" },
      count: { type: "string", default: "40" },
    },
  });
  const count = Number(values.count);
  if (!Number.isSafeInteger(count) || count < 1) {
    console.error(`--count must be a positive integer, got ${values.count}`);
    Deno.exit(2);
  }
  if (!(RUNTIME_NAMES as readonly string[]).includes(values.runtime!)) {
    console.error(`--runtime must be one of ${RUNTIME_NAMES.join(", ")}, got ${values.runtime}`);
    Deno.exit(2);
  }
  const gpu = await Gpu.open({ runtime: values.runtime as RuntimeName });
  try {
    const d = gpu.device;
    const src = d.createBuffer({ size: 256, usage: GPUBufferUsage.COPY_SRC });
    const dst = d.createBuffer({
      size: 256,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const map: number[] = [], done: number[] = [];
    for (let i = 0; i < count; i++) {
      const enc = d.createCommandEncoder();
      enc.copyBufferToBuffer(src, 0, dst, 0, 256);
      let t0 = performance.now();
      d.queue.submit([enc.finish()]);
      await dst.mapAsync(GPUMapMode.READ);
      map.push(performance.now() - t0);
      dst.unmap();
      t0 = performance.now();
      d.queue.submit([d.createCommandEncoder().finish()]);
      await d.queue.onSubmittedWorkDone();
      done.push(performance.now() - t0);
    }
    src.destroy();
    dst.destroy();
    const f = (a: number[]) =>
      `median ${median(a).toFixed(2)} ms, max ${Math.max(...a).toFixed(2)}`;
    console.log(`${gpu.runtime.version} on ${gpu.info.description || gpu.info.vendor}`);
    console.log(`  submit + mapAsync:            ${f(map)}`);
    console.log(`  submit + onSubmittedWorkDone: ${f(done)}`);
  } finally {
    gpu.destroy();
  }
}

if (import.meta.main) await main();

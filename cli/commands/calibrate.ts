/**
 * `calibrate`: measures the device's ceilings (read bandwidth at several sizes, f32 and f16 FMA
 * rates, dispatch overhead) and stores them per adapter and runtime, where `bench` finds them for
 * rooflines.
 *
 * @module
 */

import { Command, InvalidArgumentError, Option } from "../../deps/commander.ts";
import { Table } from "../../deps/cli_table.ts";
import {
  calibrate,
  CALIBRATION_FORMAT,
  type CalibrationDocument,
  DEFAULT_READ_SIZES,
  parseCalibrationDocument,
  saveCalibration,
} from "../../bench/calibrate.ts";
import { createTimer, type Timer } from "../../bench/timer.ts";
import { type Gpu, GpuError } from "../../kernels/gpu.ts";
import { checkWritable } from "../../results/files.ts";
import { UsageError } from "../errors.ts";
import type { CliIo } from "../io.ts";
import { formatNs } from "../progress.ts";
import {
  dawnNodeOption,
  openRuntimes,
  runtimeArgs,
  runtimeCalibrationPath,
  runtimeOption,
} from "../runtime_args.ts";

const MiB = 1024 * 1024;

/** Parses `--sizes 16,64,256` (MiB). */
export function parseSizes(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  const out = parts.map((p) => {
    const x = Number(p);
    if (p === "" || !(x > 0) || !Number.isFinite(x)) {
      throw new InvalidArgumentError(`--sizes takes MiB values like 16,64,256; got "${v}"`);
    }
    // The read kernel loads vec4<f32>: anything under 16 bytes reads nothing and measures nothing.
    const bytes = Math.round(x * MiB);
    if (bytes < 16) {
      throw new InvalidArgumentError(
        `--sizes value ${p} MiB is ${bytes} bytes, below the smallest read of 16 bytes`,
      );
    }
    return bytes;
  });
  return out;
}

function gb(x: number): string {
  return `${(x / 1e9).toFixed(1)}`;
}

/** Builds the `calibrate` command. */
export function calibrateCommand(io: CliIo) {
  return new Command("calibrate")
    .description(
      "Measure the device's ceilings for the roofline: read bandwidth at several buffer sizes (DRAM), read bandwidth of a few-MiB working set read repeatedly (L2), vec4<f32> and vec4<f16> FMA throughput, the subgroup-matrix peak (Dawn with matrix units), the GPU time of an empty dispatch and of each extra dispatch, and the working speed of the clock reference kernel; store them per adapter and runtime (default out/calibration/<adapter>.json, <adapter>-dawn.json on Dawn), where bench reads them.",
    )
    .option(
      "-o, --output <file>",
      "calibration file (default out/calibration/<adapter>.json, <adapter>-dawn.json on Dawn)",
    )
    .option("--force", "overwrite an existing calibration")
    .addOption(
      new Option("--sizes <mib>", "read sizes in MiB, comma-separated (default 16,64,256,1024)")
        .argParser(
          parseSizes,
        ),
    )
    .option("--quick", "fewer samples (a rough calibration in seconds)")
    .addOption(
      new Option("--adapter <kind>", "adapter preference").choices(
        ["high-performance", "fallback"] as const,
      ),
    )
    .addOption(runtimeOption())
    .addOption(dawnNodeOption())
    .option("--json", "print the calibration as JSON (one document per line with several runtimes)")
    .option("--quiet", "no progress output")
    .action(async (opts) => {
      const rt = runtimeArgs(opts);
      if (rt.runtimes.length > 1 && opts.output) {
        throw new UsageError(
          "--output names one file, but --runtime calibrates several runtimes; each writes its own (out/calibration/<adapter>[-<runtime>].json)",
        );
      }
      const gpus = await openRuntimes(
        rt,
        opts.adapter === "fallback" ? { forceFallbackAdapter: true } : {},
      );
      const many = gpus.length > 1;
      try {
        for (const gpu of gpus) {
          const timer = createTimer(gpu);
          try {
            await calibrateOne(gpu, timer);
          } finally {
            timer.destroy();
          }
        }
      } finally {
        for (const g of gpus) g.destroy();
      }

      async function calibrateOne(gpu: Gpu, timer: Timer): Promise<void> {
        const path = opts.output ?? runtimeCalibrationPath(gpu);
        if (!opts.force) {
          try {
            await Deno.lstat(path);
            throw new UsageError(`${path} already exists; pass --force to overwrite it`);
          } catch (e) {
            if (!(e instanceof Deno.errors.NotFound)) throw e;
          }
        }
        await checkWritable(path);
        const quiet = Boolean(opts.json || opts.quiet);
        const c = await calibrate(gpu, timer, {
          readSizes: opts.sizes ?? DEFAULT_READ_SIZES,
          measure: opts.quick
            ? { warmupMs: 30, budgetMs: 150, minSamples: 5, maxSamples: 50, targetRelativeCi: 0.02 }
            : undefined,
          onStep: (s) => {
            if (!quiet) io.err(`calibrate: ${s}...\n`);
          },
        });
        const doc: CalibrationDocument = {
          format: CALIBRATION_FORMAT,
          version: 1,
          adapter: gpu.info,
          timingMode: timer.mode,
          calibration: c,
        };
        // Never store what bench would refuse: the same validator bench reads it with.
        try {
          parseCalibrationDocument(JSON.stringify(doc), path);
        } catch (e) {
          throw new GpuError(
            `the measured calibration is not usable, so ${path} was not written: ${
              (e as Error).message
            }`,
          );
        }
        await saveCalibration(path, doc, { force: Boolean(opts.force) });
        if (opts.json) {
          io.out(JSON.stringify(doc, null, many ? undefined : 2) + "\n");
          return;
        }
        const t = new Table({ head: ["ceiling", "value"], style: { head: [], border: [] } });
        for (const r of c.readBandwidth) {
          t.push([`read ${(r.bytes / MiB).toFixed(0)} MiB`, `${gb(r.bytesPerS)} GB/s`]);
        }
        t.push(["peak read (DRAM roof)", `${gb(c.peakReadBytesPerS)} GB/s`]);
        for (const r of c.l2ReadBandwidth ?? []) {
          t.push([`L2 read ${(r.bytes / MiB).toFixed(0)} MiB`, `${gb(r.bytesPerS)} GB/s`]);
        }
        if (typeof c.l2ReadBytesPerS === "number") {
          t.push(["L2 read (L2 roof)", `${gb(c.l2ReadBytesPerS)} GB/s`]);
        }
        t.push(["vec4<f32> FMA", `${(c.f32FlopsPerS / 1e12).toFixed(2)} TFLOP/s`]);
        t.push([
          "vec4<f16> FMA",
          c.f16FlopsPerS === null
            ? "no shader-f16"
            : `${(c.f16FlopsPerS / 1e12).toFixed(2)} TFLOP/s`,
        ]);
        if (typeof c.matrixFlopsPerS === "number") {
          t.push([
            "subgroup-matrix f16->f32 peak",
            `${(c.matrixFlopsPerS / 1e12).toPrecision(3)} TFLOP/s`,
          ]);
        }
        t.push(["empty dispatch (pass)", formatNs(c.dispatchNs)]);
        t.push(["each extra dispatch", formatNs(c.extraDispatchNs)]);
        if (c.reference) {
          t.push(["clock reference (per dispatch)", formatNs(c.reference.nsPerDispatch)]);
        }
        io.out(
          `${
            gpu.info.description || gpu.info.vendor
          } (${c.adapterKey}), runtime ${gpu.runtime.version}, timing: ${timer.mode}\n`,
        );
        io.out(t.toString() + "\n");
        io.out(`calibration: ${path}\n`);
      }
    });
}

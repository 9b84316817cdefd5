/**
 * WebGPU device acquisition and the few GPU helpers every method shares: capability checks in one
 * place, a pipeline cache keyed by shader source and constants, labelled buffers, readback, and
 * error handling that turns validation errors, shader compile errors and device loss into
 * {@linkcode GpuError}s with a clear message (never a hang, never silent wrong numbers).
 *
 * Two WebGPU runtimes are reachable from Deno ({@linkcode RuntimeName}):
 * - `deno`: Deno's built-in WebGPU (wgpu). FMA units only; subgroups are accepted by
 *   `requestDevice` on Vulkan adapters even though `adapter.features` does not list them.
 * - `dawn`: Chromium's WebGPU, loaded lazily from the Node-API addon of the npm package `webgpu`
 *   (from `DAWN_NODE`, an explicit path, or the pinned package). It exposes subgroups and, with
 *   `allow_unsafe_apis`, the experimental subgroup-matrix feature (tensor cores on NVIDIA).
 *
 * @module
 */

import { createRequire } from "node:module";

/**
 * How pipelines are created: with the blocking `createComputePipeline` on Dawn, with
 * `createComputePipelineAsync` on Deno. On an H200, each of three long Dawn test runs stalled at
 * the first case of a new shape while its pipeline was being created asynchronously; with the
 * blocking call, the same matrix-kernel cases (57) ran through without a stall
 * (results/data/nvidia-h200-dawn/conformance-mma-10-sync.log). `DEFT_SYNC_PIPELINES=1` or `=0`
 * forces either way on both runtimes.
 */
const SYNC_PIPELINES: boolean | undefined = (() => {
  try {
    const v = Deno.env.get("DEFT_SYNC_PIPELINES");
    return v === "1" ? true : v === "0" ? false : undefined;
  } catch {
    return undefined; // no env permission
  }
})();

/**
 * A file that gets one JSON line per shader compiled (label, override constants, source length,
 * milliseconds), when `DEFT_COMPILE_LOG` names it: how the time of a test run on a CPU adapter,
 * where each kernel compiles for seconds to minutes, splits over its kernels.
 */
const COMPILE_LOG: string | undefined = (() => {
  try {
    return Deno.env.get("DEFT_COMPILE_LOG") || undefined;
  } catch {
    return undefined; // no env permission: no log
  }
})();

/** A GPU failure the user should read: no adapter, compile or validation error, lost device, limit. */
export class GpuError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

/**
 * Workgroup memory every plan may assume: 32 KiB, what the software adapters grant and less than
 * any current GPU. A plan sized for it (tiles, Q residency, IO counts) holds on every device that
 * offers at least this much; `prepare` still checks the device it runs on
 * ({@linkcode checkWorkgroup}).
 */
export const PLAN_STORAGE_BUDGET = 32768;

/** The workgroup memory WebGPU guarantees on every device (`maxComputeWorkgroupStorageSize`). */
export const WEBGPU_MIN_WORKGROUP_STORAGE = 16384;

/** What {@linkcode f16Missing} and {@linkcode checkWorkgroup} read of a device. */
export interface DeviceFacts {
  readonly hasF16: boolean;
  readonly info: { readonly description: string; readonly vendor: string };
  readonly runtime?: { readonly name: string };
}

/** The adapter's name for messages. */
export function adapterName(gpu: DeviceFacts): string {
  return gpu.info.description || gpu.info.vendor || "this adapter";
}

/**
 * The one message for f16 storage on a device without `shader-f16` (null when it has it). The
 * command line raises it as bad input (exit 2); the kernels as a {@linkcode GpuError}.
 */
export function f16Missing(gpu: DeviceFacts): string | null {
  if (gpu.hasF16) return null;
  const on = gpu.runtime ? ` on runtime ${gpu.runtime.name}` : "";
  return `--dtype f16 needs shader-f16, which ${
    adapterName(gpu)
  } does not offer${on}; use --dtype f32`;
}

/** Throws {@linkcode GpuError} ({@linkcode f16Missing}) when `dtype` is f16 on a device without it. */
export function requireF16(gpu: DeviceFacts, dtype: "f16" | "f32"): void {
  const missing = dtype === "f16" ? f16Missing(gpu) : null;
  if (missing) throw new GpuError(missing);
}

/**
 * Throws {@linkcode GpuError} when a kernel's workgroup needs more workgroup memory (`bytes`) or
 * threads (`threads`) than the device grants; `what` names the kernel.
 */
export function checkWorkgroup(
  gpu: Pick<Gpu, "limit">,
  what: string,
  { bytes = 0, threads = 0 }: { bytes?: number; threads?: number },
): void {
  const storage = gpu.limit("maxComputeWorkgroupStorageSize");
  if (bytes > storage) {
    throw new GpuError(
      `${what} needs ${bytes} bytes of workgroup memory, more than this device's maxComputeWorkgroupStorageSize of ${storage}`,
    );
  }
  const invocations = gpu.limit("maxComputeInvocationsPerWorkgroup");
  if (threads > invocations) {
    throw new GpuError(
      `${what} needs ${threads} threads per workgroup, more than this device's maxComputeInvocationsPerWorkgroup of ${invocations}`,
    );
  }
}

/** The WebGPU implementations deft-bench can run on. */
export const RUNTIME_NAMES = ["deno", "dawn"] as const;

/** A WebGPU implementation: Deno's built-in one, or Dawn through its Node-API addon. */
export type RuntimeName = (typeof RUNTIME_NAMES)[number];

/** The pinned npm package that carries Dawn's Node-API addon. */
export const DAWN_PACKAGE = "webgpu@0.6.2";

/**
 * Dawn's `create()` options: `allow_unsafe_apis` lists the experimental subgroup-matrix feature,
 * `vulkan_enable_f16_on_nvidia` lets NVIDIA offer `shader-f16` (and with it every f16 matrix
 * configuration), `use_vulkan_memory_model` is what those kernels compile against, and timestamps
 * are not quantised.
 */
export const DAWN_FLAGS: readonly string[] = [
  "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,use_vulkan_memory_model",
  "disable-dawn-features=timestamp_quantization",
  "backend=vulkan",
];

/**
 * Dawn's flags with extra device toggles enabled: `toggles` (default `DEFT_DAWN_TOGGLES`), a
 * comma-separated list of Dawn toggle names such as `disable_robustness` or
 * `disable_workgroup_init`. They change what every kernel compiles to, and they are recorded with
 * the other flags in every result. A name that is not a toggle's shape is a {@linkcode GpuError};
 * Dawn ignores names it does not know, with a warning.
 */
export function dawnFlags(toggles = Deno.env.get("DEFT_DAWN_TOGGLES") ?? ""): string[] {
  const extra = toggles.split(",").map((t) => t.trim()).filter((t) => t !== "");
  const bad = extra.find((t) => !/^[a-z][a-z0-9_]*$/.test(t));
  if (bad !== undefined) {
    throw new GpuError(
      `DEFT_DAWN_TOGGLES: ${
        JSON.stringify(bad)
      } is not a Dawn toggle name (lower case, digits and _, such as disable_robustness)`,
    );
  }
  if (extra.length === 0) return [...DAWN_FLAGS];
  return DAWN_FLAGS.map((f) =>
    f.startsWith("enable-dawn-features=") ? `${f},${extra.join(",")}` : f
  );
}

/** Which runtime a device came from, its version and how it was started; part of every result. */
export interface RuntimeInfo {
  name: RuntimeName;
  /** `deno 2.9.6` or `dawn (npm webgpu@0.6.2)`. */
  version: string;
  /** Flags the runtime was created with (Dawn's `create()` options; empty for Deno). */
  flags: string[];
  /** Where the Dawn addon was loaded from (a path or the npm specifier). */
  source?: string;
}

/** One subgroup-matrix configuration the adapter supports (`left x right -> result`, M x N x K). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** What the adapter is and what the device was granted. */
export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** Features granted to the device. */
  features: string[];
  /** Limits granted to the device (the adapter's best values for those we ask for). */
  limits: Record<string, number>;
  /** Subgroup sizes the adapter may use (0 when unknown). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /** Subgroup-matrix configurations usable on the device (empty without the feature). */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
}

/** What a pipeline was built from (see {@linkcode Gpu.onPipeline}). */
export interface PipelineSource {
  label: string;
  code: string;
  constants: Record<string, number>;
  entryPoint: string;
}

/** Options for {@linkcode Gpu.open}. */
export interface GpuOpenOptions {
  /** Adapter preference; "high-performance" first by default. */
  powerPreference?: GPUPowerPreference;
  /** Take the fallback (software) adapter even when a hardware one exists. */
  forceFallbackAdapter?: boolean;
  /** The WebGPU implementation (default `deno`). */
  runtime?: RuntimeName;
  /** Dawn only: path of `dawn.node` (default: `DAWN_NODE`, else the pinned npm package). */
  dawnNode?: string;
}

/** Limits we raise to the adapter's maximum, because trees need large buffers and tiles. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

const RECORDED_LIMITS = [
  ...RAISED_LIMITS,
  "maxComputeWorkgroupSizeZ",
  "maxUniformBufferBindingSize",
  "minStorageBufferOffsetAlignment",
] as const;

const INSTALL_HINT =
  "Install a GPU driver with Vulkan support, or Mesa's software adapter (Debian/Ubuntu: apt-get install -y mesa-vulkan-drivers)";

/** The experimental feature behind subgroup matrices (Dawn's name). */
const SUBGROUP_MATRIX_FEATURE = "chromium-experimental-subgroup-matrix";

/** A loaded Dawn: its `create()` and where it came from. */
interface DawnModule {
  create(flags: string[]): GPU;
  source: string;
}

const dawnModules = new Map<string, Promise<DawnModule>>();

/**
 * Where the npm fallback keeps Dawn's addon: the cache `.ci/lavapipe.sh` fills too (`$DEFT_CACHE`,
 * else `$XDG_CACHE_HOME/deft-bench`, else `~/.cache/deft-bench`), under `webgpu-0.6.2/`
 * (`<os>-<arch>/` below it on other platforms than linux-x64); null without a home directory.
 */
export function dawnCacheFile(
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
  os: string = Deno.build.os,
  arch: string = Deno.build.arch,
): string | null {
  const home = env("HOME");
  const base = env("DEFT_CACHE") ||
    (env("XDG_CACHE_HOME")
      ? `${env("XDG_CACHE_HOME")}/deft-bench`
      : home
      ? `${home}/.cache/deft-bench`
      : "");
  if (!base) return null;
  const dir = `${base}/${DAWN_PACKAGE.replace("@", "-")}`;
  const platform = dawnPlatform(os, arch);
  return platform === "linux-x64" ? `${dir}/dawn.node` : `${dir}/${platform}/dawn.node`;
}

/** The npm package's `dist/` folder name for a Deno build (`linux-x64`, `darwin-arm64`, ...). */
function dawnPlatform(os: string, arch: string): string {
  return `${os === "windows" ? "win32" : os}-${
    arch === "x86_64" ? "x64" : arch === "aarch64" ? "arm64" : arch
  }`;
}

/**
 * Dawn's addon from the pinned npm package, fetched once with `npm pack` into
 * {@linkcode dawnCacheFile} (only the addon is kept). The cache lies outside the project, so no
 * deno.lock entry appears, as an `npm:` import would add. Null where npm or tar is missing; throws
 * when the fetch itself fails.
 */
async function cachedDawnAddon(): Promise<string | null> {
  const file = dawnCacheFile();
  if (!file) return null;
  try {
    if ((await Deno.stat(file)).size > 0) return file;
  } catch {
    // not fetched yet
  }
  const member = `package/dist/${dawnPlatform(Deno.build.os, Deno.build.arch)}/dawn.node`;
  const tmp = await Deno.makeTempDir({ prefix: "deft-dawn-" });
  const run = async (cmd: string, args: string[]) => {
    const out = await new Deno.Command(cmd, { args, cwd: tmp, stdout: "piped", stderr: "piped" })
      .output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
    if (!out.success) {
      throw new Error(`${cmd} ${args.join(" ")} failed: ${text(out.stderr).split("\n")[0]}`);
    }
    return text(out.stdout);
  };
  try {
    console.error(
      `Fetching Dawn (npm ${DAWN_PACKAGE}, a 49 MiB tarball; only its addon is kept) into ${file}`,
    );
    const tgz = (await run("npm", ["pack", DAWN_PACKAGE, "--loglevel=error"])).split("\n").pop()!;
    await run("tar", ["-xzf", tgz, member]);
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${tmp}/${member}`, `${file}.tmp`);
    await Deno.rename(`${file}.tmp`, file);
    return file;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null; // no npm or tar on PATH
    throw e;
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * Loads Dawn's addon once per source: `path`, else `DAWN_NODE`, else the pinned npm package's
 * addon, fetched into a cache outside the project ({@linkcode dawnCacheFile}; only then is the
 * package fetched, and it is no static dependency), else, without npm, the `npm:` import. Throws
 * {@linkcode GpuError} with what to do when it cannot be loaded.
 */
function loadDawn(path?: string): Promise<DawnModule> {
  const given = path ?? Deno.env.get("DAWN_NODE") ?? "";
  let p = dawnModules.get(given);
  if (!p) {
    p = (async (): Promise<DawnModule> => {
      let file = given;
      try {
        if (!file) file = (await cachedDawnAddon()) ?? "";
        if (file) {
          const m = createRequire(import.meta.url)(file) as { create: DawnModule["create"] };
          if (typeof m.create !== "function") throw new Error("it exports no create()");
          return { create: m.create, source: file };
        }
        const spec = `npm:${DAWN_PACKAGE}`;
        const m = await import(spec) as { create: DawnModule["create"] };
        return { create: m.create, source: spec };
      } catch (e) {
        throw new GpuError(
          `Cannot load Dawn (runtime dawn) from ${file || `npm:${DAWN_PACKAGE}`}: ${
            (e as Error).message?.split("\n")[0]
          }. Give the path of dawn.node (from the npm package ${DAWN_PACKAGE}, dist/linux-x64/dawn.node) with --dawn-node or DAWN_NODE, or use --runtime deno`,
        );
      }
    })();
    dawnModules.set(given, p);
    p.catch(() => dawnModules.delete(given));
  }
  return p;
}

/** The subgroup-matrix configurations an adapter advertises (Dawn's `adapter.info`). */
function matrixConfigs(info: GPUAdapterInfo): SubgroupMatrixConfig[] {
  const raw = (info as { subgroupMatrixConfigs?: Iterable<Record<string, unknown>> })
    .subgroupMatrixConfigs;
  if (!raw) return [];
  return [...raw].map((c) => ({
    componentType: String(c.componentType),
    resultComponentType: String(c.resultComponentType),
    M: Number(c.M),
    N: Number(c.N),
    K: Number(c.K),
  }));
}

/** An open WebGPU device with the project's helpers. */
export class Gpu {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly info: GpuInfo;
  /** True when `shader-f16` was granted (f16 storage available). */
  readonly hasF16: boolean;
  /** True when `timestamp-query` was granted. */
  readonly hasTimestamps: boolean;
  /** True when subgroup built-ins may be used (see {@linkcode Gpu.wgslEnables}). */
  readonly hasSubgroups: boolean;
  /** The runtime the device came from. */
  readonly runtime: RuntimeInfo;
  /**
   * Workgroups of the whole workgroup storage this device runs at once, from a calibration (set by
   * `bench` once it has one; WebGPU does not report SMs): plans size their work to it.
   */
  residentWorkgroups: number | null = null;
  #lost: GPUDeviceLostInfo | null = null;
  readonly #lostPromise: Promise<GPUDeviceLostInfo>;
  #uncaptured: string | null = null;
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  readonly #pipelineListeners = new Set<(source: PipelineSource) => void>();
  /**
   * Dawn resolves its promises from its own threads, which Deno's event loop does not count as
   * pending work: without a live timer, `await`ing a Dawn promise with nothing else pending ends
   * the process (and Dawn's threads then crash at exit). One idle interval per open Dawn device
   * keeps the loop alive; {@linkcode Gpu.destroy} clears it.
   */
  #keepAlive: ReturnType<typeof setInterval> | null = null;
  /** The runtime's `GPU` object: Dawn's instance must outlive its devices (else they crash). */
  readonly #instance: GPU;

  private constructor(
    adapter: GPUAdapter,
    device: GPUDevice,
    runtime: RuntimeInfo,
    subgroups: boolean,
    instance: GPU,
  ) {
    this.#instance = instance;
    this.adapter = adapter;
    this.device = device;
    this.runtime = runtime;
    const features = [...device.features].sort();
    // Deno grants subgroups without listing them; record what was granted.
    if (subgroups && !features.includes("subgroups")) features.push("subgroups");
    this.hasF16 = device.features.has("shader-f16");
    this.hasTimestamps = device.features.has("timestamp-query");
    this.hasSubgroups = subgroups;
    if (runtime.name === "dawn") this.#keepAlive = setInterval(() => {}, 1000);
    const limits: Record<string, number> = {};
    for (const k of RECORDED_LIMITS) limits[k] = Number(device.limits[k]);
    const ai = adapter.info;
    this.info = {
      vendor: ai.vendor,
      architecture: ai.architecture,
      device: ai.device,
      description: ai.description,
      isFallbackAdapter: Boolean((ai as { isFallbackAdapter?: boolean }).isFallbackAdapter),
      features,
      limits,
      subgroupMinSize: Number((ai as { subgroupMinSize?: number }).subgroupMinSize ?? 0),
      subgroupMaxSize: Number((ai as { subgroupMaxSize?: number }).subgroupMaxSize ?? 0),
      subgroupMatrixConfigs: device.features.has(SUBGROUP_MATRIX_FEATURE as GPUFeatureName)
        ? matrixConfigs(ai)
        : [],
    };
    this.#lostPromise = device.lost.then((info) => {
      this.#lost = info;
      return info;
    });
    const onError = (ev: Event) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#uncaptured ??= e.message;
    };
    if (typeof device.addEventListener === "function") {
      device.addEventListener("uncapturederror", onError);
    } else {
      (device as unknown as { onuncapturederror: unknown }).onuncapturederror = onError;
    }
  }

  /**
   * The `enable` directives a shader using `wanted` needs on this runtime: Dawn requires
   * `enable subgroups;`, Deno (naga) rejects it and enables subgroup built-ins with the feature.
   * Throws {@linkcode GpuError} naming the feature the device lacks.
   */
  wgslEnables(wanted: { f16?: boolean; subgroups?: boolean; subgroupMatrix?: boolean }): string {
    const lines: string[] = [];
    if (wanted.f16) {
      requireF16(this, "f16");
      lines.push("enable f16;");
    }
    if (wanted.subgroups || wanted.subgroupMatrix) {
      if (!this.hasSubgroups) throw new GpuError(`${this.#name()} has no subgroups`);
      if (this.runtime.name === "dawn") lines.push("enable subgroups;");
    }
    if (wanted.subgroupMatrix) {
      if (this.info.subgroupMatrixConfigs.length === 0) {
        throw new GpuError(
          `${this.#name()} has no subgroup matrices (runtime ${this.runtime.name}; they need --runtime dawn on an adapter with cooperative matrices)`,
        );
      }
      lines.push("enable chromium_experimental_subgroup_matrix;");
    }
    return lines.length ? lines.join("\n") + "\n" : "";
  }

  /** The f16 x f16 -> f32 subgroup-matrix configuration with the largest tile, if any. */
  matrixConfig(): SubgroupMatrixConfig | null {
    let best: SubgroupMatrixConfig | null = null;
    for (const c of this.info.subgroupMatrixConfigs) {
      if (c.componentType !== "f16" || c.resultComponentType !== "f32") continue;
      if (!best || c.M * c.N * c.K > best.M * best.N * best.K) best = c;
    }
    return best;
  }

  #name(): string {
    return `The adapter (${this.info.description || this.info.vendor || "unknown"})`;
  }

  /**
   * Opens the best adapter (high-performance first) and a device with `shader-f16` and
   * `timestamp-query` when offered, and raised buffer/workgroup limits. Throws {@linkcode GpuError}
   * with installation advice when no adapter exists.
   */
  static async open(options: GpuOpenOptions = {}): Promise<Gpu> {
    const runtime = options.runtime ?? "deno";
    let gpu: GPU;
    let info: RuntimeInfo;
    if (runtime === "dawn") {
      const flags = dawnFlags();
      const dawn = await loadDawn(options.dawnNode);
      try {
        gpu = dawn.create(flags);
      } catch (e) {
        throw new GpuError(`Dawn refused to start: ${(e as Error).message}`);
      }
      info = {
        name: "dawn",
        version: `dawn (npm ${DAWN_PACKAGE})`,
        flags,
        source: dawn.source,
      };
    } else {
      if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
        throw new GpuError(
          `This runtime has no WebGPU (navigator.gpu is missing). ${INSTALL_HINT}`,
        );
      }
      gpu = navigator.gpu;
      info = { name: "deno", version: `deno ${Deno.version.deno}`, flags: [] };
    }
    // See #keepAlive: Dawn's promises need a live timer while they are pending.
    const hold = runtime === "dawn" ? setInterval(() => {}, 1000) : null;
    try {
      const getAdapter = async (): Promise<GPUAdapter> => {
        let adapter: GPUAdapter | null = null;
        try {
          adapter = await gpu.requestAdapter({
            powerPreference: options.powerPreference ?? "high-performance",
            forceFallbackAdapter: options.forceFallbackAdapter ?? false,
          });
          if (!adapter && !options.powerPreference) adapter = await gpu.requestAdapter();
        } catch (e) {
          throw new GpuError(
            `Requesting a WebGPU adapter (runtime ${runtime}) failed: ${
              (e as Error).message
            }. ${INSTALL_HINT}`,
          );
        }
        if (!adapter) {
          // Deno reads DENO_WEBGPU_BACKEND: a backend the machine lacks hides every adapter.
          let backend: string | undefined;
          try {
            backend = runtime === "deno" ? Deno.env.get("DENO_WEBGPU_BACKEND") : undefined;
          } catch { /* no permission to read the environment */ }
          throw new GpuError(
            backend
              ? `No WebGPU adapter found with DENO_WEBGPU_BACKEND=${backend}: the variable may be hiding an adapter; unset it, or name a backend this machine has (e.g. vulkan or gl)`
              : `No WebGPU adapter found (runtime ${runtime}). ${INSTALL_HINT}`,
          );
        }
        return adapter;
      };
      let adapter = await getAdapter();
      const wanted: string[] = ["shader-f16", "timestamp-query", "subgroups"];
      if (runtime === "dawn") wanted.push(SUBGROUP_MATRIX_FEATURE);
      const listed = wanted.filter((f) => adapter.features.has(f as GPUFeatureName));
      const requiredLimits: Record<string, number> = {};
      for (const k of RAISED_LIMITS) requiredLimits[k] = Number(adapter.limits[k]);
      const request = (a: GPUAdapter, features: string[]) =>
        a.requestDevice({
          requiredFeatures: features as GPUFeatureName[],
          requiredLimits,
          label: "deft-bench",
        });
      // Deno's Vulkan adapters accept subgroups without listing them: ask, and fall back without.
      const tries = runtime === "deno" && !listed.includes("subgroups")
        ? [[...listed, "subgroups"], listed]
        : [listed];
      let device: GPUDevice | null = null;
      let error: unknown = null;
      for (const [i, features] of tries.entries()) {
        try {
          if (i > 0) adapter = await getAdapter();
          device = await request(adapter, features!);
          return new Gpu(adapter, device, info, features!.includes("subgroups"), gpu);
        } catch (e) {
          error = e;
        }
      }
      throw new GpuError(
        `Requesting a WebGPU device (runtime ${runtime}) failed: ${(error as Error)?.message}`,
      );
    } finally {
      if (hold !== null) clearInterval(hold);
    }
  }

  /** Granted limit by name. */
  limit(name: (typeof RECORDED_LIMITS)[number]): number {
    return this.info.limits[name]!;
  }

  /** Throws {@linkcode GpuError} if the device was lost or an uncaptured error occurred. */
  check(): void {
    if (this.#lost) {
      throw new GpuError(
        `The GPU device was lost (${this.#lost.reason}): ${this.#lost.message || "no message"}`,
      );
    }
    if (this.#uncaptured) {
      const m = this.#uncaptured;
      this.#uncaptured = null;
      throw new GpuError(`WebGPU reported an error: ${m}`);
    }
  }

  /**
   * Awaits `p`, but fails with a {@linkcode GpuError} as soon as the device is lost, so a lost device
   * never leaves the caller waiting forever.
   */
  async guard<T>(p: Promise<T>, what: string): Promise<T> {
    this.check();
    const lost = this.#lostPromise.then((info): never => {
      throw new GpuError(
        `The GPU device was lost during ${what} (${info.reason}): ${info.message || "no message"}`,
      );
    });
    const result = await Promise.race([p, lost]);
    this.check();
    return result;
  }

  /**
   * Runs `fn` inside validation and out-of-memory error scopes and throws a {@linkcode GpuError}
   * naming `what` if either caught an error.
   */
  async scoped<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    this.check();
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    let value: T;
    let thrown: unknown = null;
    try {
      value = await fn();
    } catch (e) {
      thrown = e;
    }
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    if (thrown) {
      if (thrown instanceof GpuError) throw thrown;
      throw new GpuError(`${what} failed: ${(thrown as Error).message ?? thrown}`);
    }
    if (validation) throw new GpuError(`${what}: WebGPU validation error: ${validation.message}`);
    if (oom) throw new GpuError(`${what}: the GPU is out of memory: ${oom.message}`);
    this.check();
    return value!;
  }

  /**
   * A compute pipeline for `code` (entry point `main` unless given), cached by label, source and
   * override constants. Compile errors become a {@linkcode GpuError} with the compiler's messages.
   */
  pipeline(
    label: string,
    code: string,
    constants: Record<string, number> = {},
    entryPoint = "main",
  ): Promise<GPUComputePipeline> {
    for (const fn of this.#pipelineListeners) fn({ label, code, constants, entryPoint });
    const key = JSON.stringify([label, entryPoint, constants, code]);
    let p = this.#pipelines.get(key);
    if (!p) {
      p = this.#compile(label, code, constants, entryPoint);
      this.#pipelines.set(key, p);
      p.catch(() => this.#pipelines.delete(key));
    }
    return p;
  }

  /**
   * Calls `fn` with the source of every pipeline requested from now on (cached or not), until the
   * returned function is called; `bench` hashes what a method's `prepare` asks for.
   */
  onPipeline(fn: (source: PipelineSource) => void): () => void {
    this.#pipelineListeners.add(fn);
    return () => this.#pipelineListeners.delete(fn);
  }

  async #compile(
    label: string,
    code: string,
    constants: Record<string, number>,
    entryPoint: string,
  ): Promise<GPUComputePipeline> {
    const started = performance.now();
    const pipeline = await this.scoped(`Compiling shader ${label}`, async () => {
      const module = this.device.createShaderModule({ label, code });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === "error");
      if (errors.length > 0) {
        throw new GpuError(
          `Shader ${label} does not compile:\n` +
            errors.map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`).join("\n"),
        );
      }
      const descriptor: GPUComputePipelineDescriptor = {
        label,
        layout: "auto",
        compute: { module, entryPoint, constants },
      };
      if (SYNC_PIPELINES ?? this.runtime.name === "dawn") {
        return this.device.createComputePipeline(descriptor);
      }
      return await this.device.createComputePipelineAsync(descriptor);
    });
    if (COMPILE_LOG) {
      const line = JSON.stringify({
        label,
        constants,
        chars: code.length,
        ms: Math.round(performance.now() - started),
      });
      await Deno.writeTextFile(COMPILE_LOG, line + "\n", { append: true });
    }
    return pipeline;
  }

  /**
   * A storage buffer holding `data` (padded to 4 bytes, at least 4 bytes long). Throws a
   * {@linkcode GpuError} that names the limit when it is larger than the device allows to bind.
   */
  buffer(
    label: string,
    data: ArrayBufferView | number,
    usage: number = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  ): GPUBuffer {
    const bytes = typeof data === "number" ? data : data.byteLength;
    this.checkBindingSize(label, bytes);
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const buf = this.device.createBuffer({ label, size, usage });
    if (typeof data !== "number" && data.byteLength > 0) {
      const src = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
      if (data.byteLength % 4 === 0) {
        this.device.queue.writeBuffer(buf, 0, src);
      } else {
        const padded = new Uint8Array(size);
        padded.set(src);
        this.device.queue.writeBuffer(buf, 0, padded);
      }
    }
    return buf;
  }

  /** Throws a {@linkcode GpuError} naming the limit when `bytes` cannot be bound as storage. */
  checkBindingSize(label: string, bytes: number): void {
    const maxBinding = this.limit("maxStorageBufferBindingSize");
    const maxBuffer = this.limit("maxBufferSize");
    if (bytes > maxBinding || bytes > maxBuffer) {
      const [name, lim] = bytes > maxBinding
        ? ["maxStorageBufferBindingSize", maxBinding]
        : ["maxBufferSize", maxBuffer];
      throw new GpuError(
        `Buffer ${label} needs ${
          formatBytes(bytes)
        } (${bytes} bytes), more than the device's ${name} of ${
          formatBytes(lim)
        } (${lim} bytes); use a smaller tree or a device with larger limits`,
      );
    }
  }

  /** Copies a buffer back to the CPU (one submit and one map; about 11 ms in Deno). */
  async read(buffer: GPUBuffer, bytes = buffer.size): Promise<ArrayBuffer> {
    const staging = this.device.createBuffer({
      label: `${buffer.label} readback`,
      size: Math.ceil(bytes / 4) * 4,
      usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    });
    try {
      const enc = this.device.createCommandEncoder({ label: "readback" });
      enc.copyBufferToBuffer(buffer, 0, staging, 0, staging.size);
      this.device.queue.submit([enc.finish()]);
      await this.guard(staging.mapAsync(GPUMapMode.READ), `reading back ${buffer.label}`);
      return staging.getMappedRange().slice(0, bytes);
    } finally {
      staging.destroy();
    }
  }

  /** Waits until the queue is idle (fails fast on device loss). */
  async idle(): Promise<void> {
    await this.guard(this.device.queue.onSubmittedWorkDone(), "waiting for the GPU");
  }

  /** Releases the device. */
  destroy(): void {
    this.device.destroy();
    if (this.#keepAlive !== null) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
  }
}

/** Is this adapter a CPU implementation (lavapipe, llvmpipe, SwiftShader, WARP)? */
export function isSoftwareAdapter(
  info: { isFallbackAdapter: boolean; description: string; vendor: string },
): boolean {
  return info.isFallbackAdapter ||
    /llvmpipe|lavapipe|swiftshader|software|warp/i.test(`${info.description} ${info.vendor}`);
}

/** `1.5 MiB`-style sizes for messages. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  let x = n;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${u === 0 ? x : x.toFixed(x >= 100 ? 0 : 1)} ${units[u]}`;
}

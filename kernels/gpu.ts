/**
 * WebGPU device acquisition and the few GPU helpers every method shares: capability checks in one
 * place, a pipeline cache keyed by shader source and constants, labelled buffers, readback, and
 * error handling that turns validation errors, shader compile errors and device loss into
 * {@linkcode GpuError}s with a clear message (never a hang, never silent wrong numbers).
 *
 * @module
 */

/** A GPU failure the user should read: no adapter, compile or validation error, lost device, limit. */
export class GpuError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
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

/** An open WebGPU device with the project's helpers. */
export class Gpu {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly info: GpuInfo;
  /** True when `shader-f16` was granted (f16 storage available). */
  readonly hasF16: boolean;
  /** True when `timestamp-query` was granted. */
  readonly hasTimestamps: boolean;
  #lost: GPUDeviceLostInfo | null = null;
  readonly #lostPromise: Promise<GPUDeviceLostInfo>;
  #uncaptured: string | null = null;
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  readonly #pipelineListeners = new Set<(source: PipelineSource) => void>();

  private constructor(adapter: GPUAdapter, device: GPUDevice) {
    this.adapter = adapter;
    this.device = device;
    const features = [...device.features].sort();
    this.hasF16 = device.features.has("shader-f16");
    this.hasTimestamps = device.features.has("timestamp-query");
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
    };
    this.#lostPromise = device.lost.then((info) => {
      this.#lost = info;
      return info;
    });
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#uncaptured ??= e.message;
    });
  }

  /**
   * Opens the best adapter (high-performance first) and a device with `shader-f16` and
   * `timestamp-query` when offered, and raised buffer/workgroup limits. Throws {@linkcode GpuError}
   * with installation advice when no adapter exists.
   */
  static async open(options: GpuOpenOptions = {}): Promise<Gpu> {
    if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
      throw new GpuError(`This runtime has no WebGPU (navigator.gpu is missing). ${INSTALL_HINT}`);
    }
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await navigator.gpu.requestAdapter({
        powerPreference: options.powerPreference ?? "high-performance",
        forceFallbackAdapter: options.forceFallbackAdapter ?? false,
      });
      if (!adapter && !options.powerPreference) {
        adapter = await navigator.gpu.requestAdapter();
      }
    } catch (e) {
      throw new GpuError(
        `Requesting a WebGPU adapter failed: ${(e as Error).message}. ${INSTALL_HINT}`,
      );
    }
    if (!adapter) throw new GpuError(`No WebGPU adapter found. ${INSTALL_HINT}`);
    const wanted: GPUFeatureName[] = ["shader-f16", "timestamp-query"];
    const requiredFeatures = wanted.filter((f) => adapter!.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const k of RAISED_LIMITS) requiredLimits[k] = Number(adapter.limits[k]);
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({
        requiredFeatures,
        requiredLimits,
        label: "deft-bench",
      });
    } catch (e) {
      throw new GpuError(`Requesting a WebGPU device failed: ${(e as Error).message}`);
    }
    return new Gpu(adapter, device);
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
    return await this.scoped(`Compiling shader ${label}`, async () => {
      const module = this.device.createShaderModule({ label, code });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === "error");
      if (errors.length > 0) {
        throw new GpuError(
          `Shader ${label} does not compile:\n` +
            errors.map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`).join("\n"),
        );
      }
      return await this.device.createComputePipelineAsync({
        label,
        layout: "auto",
        compute: { module, entryPoint, constants },
      });
    });
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
  }
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

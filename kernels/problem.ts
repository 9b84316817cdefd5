/**
 * A tree attention problem on the GPU: the tree, its KV layout, seeded Q/K/V, and their GPU buffers
 * (shared by every method), plus the one-shot `runMethod` that plans, prepares, runs and reads
 * back a method's output with the output poisoned beforehand.
 *
 * @module
 */

import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import { IndexedTree, type Tree } from "../workloads/tree.ts";
import { type Gpu, GpuError, requireF16 } from "./gpu.ts";
import {
  type AttentionData,
  type KvLayout,
  kvLayout,
  type LayoutOrder,
  randomAttentionData,
} from "./layout.ts";
import {
  type AttentionMethod,
  DEFAULT_METHOD_OPTIONS,
  type GpuProblem,
  kernelCaps,
  type MethodOptions,
  type Plan,
  type PreparedMethod,
} from "./method.ts";
import { logitLimitNote } from "./f16_logits.ts";
import { type OutputScan, POISON_BITS, scanOutput } from "./reference.ts";

/** Options of {@linkcode Problem.create}. */
export interface ProblemOptions {
  shape: ModelShape;
  dtype: Dtype;
  /** Seed of Q/K/V (and of the shuffled layout). */
  seed: number;
  /** Node placement in the KV pool (default `"shuffled"`, so no method can rely on DFS order). */
  layout?: LayoutOrder;
}

/** A tree with its data, uploaded once and shared by every method. */
export class Problem {
  readonly ix: IndexedTree;
  readonly layout: KvLayout;
  readonly data: AttentionData;
  readonly gpu: Gpu;
  readonly buffers: GpuProblem;

  private constructor(gpu: Gpu, ix: IndexedTree, layout: KvLayout, data: AttentionData) {
    this.gpu = gpu;
    this.ix = ix;
    this.layout = layout;
    this.data = data;
    const label = (s: string) => `problem ${s}`;
    this.buffers = {
      q: gpu.buffer(label("q"), data.q),
      k: gpu.buffer(label("k"), data.k),
      v: gpu.buffer(label("v"), data.v),
      out: gpu.buffer(label("out"), data.queries * data.shape.qHeads * data.shape.headDim * 4),
    };
  }

  /** Validates the tree, generates its data and uploads it. */
  static create(gpu: Gpu, tree: Tree | IndexedTree, options: ProblemOptions): Problem {
    const ix = tree instanceof IndexedTree ? tree : new IndexedTree(tree);
    requireF16(gpu, options.dtype);
    if (ix.queryCount === 0) throw new GpuError("The tree has no queries: nothing to attend");
    const layout = kvLayout(ix, options.layout ?? "shuffled", options.seed);
    const { shape } = options;
    const elem = options.dtype === "f16" ? 2 : 4;
    gpu.checkBindingSize("k", layout.slots * shape.kvHeads * shape.headDim * elem);
    gpu.checkBindingSize("q", ix.queryCount * shape.qHeads * shape.headDim * elem);
    gpu.checkBindingSize("out", ix.queryCount * shape.qHeads * shape.headDim * 4);
    const data = randomAttentionData(
      shape,
      options.dtype,
      ix.queryCount,
      layout.slots,
      options.seed,
    );
    return new Problem(gpu, ix, layout, data);
  }

  /**
   * Uploads Q, K and V again after a test changed {@linkcode Problem.data} in place. Written as bytes:
   * Dawn's `writeBuffer` kills the process on a `Float16Array` (webgpu@0.6.2).
   */
  upload(): void {
    for (const name of ["q", "k", "v"] as const) {
      const a = this.data[name];
      const bytes = new Uint8Array(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
      this.gpu.device.queue.writeBuffer(this.buffers[name], 0, bytes);
    }
  }

  /** Plans a method on this problem. */
  plan<P extends Plan>(method: AttentionMethod<P>, options: Partial<MethodOptions> = {}): P {
    return method.plan({
      ix: this.ix,
      layout: this.layout,
      shape: this.data.shape,
      dtype: this.data.dtype,
      options: { ...DEFAULT_METHOD_OPTIONS, ...options },
      caps: kernelCaps(this.gpu),
    });
  }

  /** Fills the output with the poison pattern (see `POISON_BITS`). */
  poisonOutput(): void {
    const n = this.buffers.out.size / 4;
    this.gpu.device.queue.writeBuffer(this.buffers.out, 0, new Uint32Array(n).fill(POISON_BITS));
  }

  /** Reads the output back. */
  async readOutput(): Promise<Float32Array> {
    return new Float32Array(await this.gpu.read(this.buffers.out));
  }

  /** Frees the GPU buffers. */
  destroy(): void {
    for (const b of Object.values(this.buffers)) (b as GPUBuffer).destroy();
  }
}

/**
 * A method's output holds unwritten or NaN/infinite values: {@linkcode runMethod} never returns
 * such an output as a result. The message counts them and names the limit the method ran into
 * when one is known (f16 logits); the output and the counts are attached for diagnosis.
 */
export class InvalidOutputError extends GpuError {
  /** Creates the error. */
  constructor(
    message: string,
    readonly output: Float32Array,
    readonly scan: OutputScan,
    readonly plan: Plan,
  ) {
    super(message);
    this.name = "InvalidOutputError";
  }
}

/** The message of an {@linkcode InvalidOutputError}: what is wrong, and why when known. */
export function invalidOutputMessage(
  method: string,
  total: number,
  scan: OutputScan,
  note: string | null,
): string {
  const parts = [];
  if (scan.unwritten > 0) parts.push(`left ${scan.unwritten} of ${total} output values unwritten`);
  if (scan.nonFinite > 0) parts.push(`wrote ${scan.nonFinite} NaN or infinite output values`);
  return `${method} ${parts.join(" and ")}${note ? `; ${note}` : ""}`;
}

/**
 * Runs a prepared method once on `problem` with a poisoned output (see {@linkcode POISON_BITS}) and
 * reads the output back; `label` names it in GPU errors.
 */
export async function runPrepared(
  problem: Problem,
  prepared: PreparedMethod,
  label: string,
): Promise<Float32Array> {
  const gpu = problem.gpu;
  problem.poisonOutput();
  await gpu.scoped(`Running ${label}`, () => {
    const enc = gpu.device.createCommandEncoder({ label });
    const pass = enc.beginComputePass({ label });
    prepared.encode(pass);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
  });
  return await problem.readOutput();
}

/** Result of {@linkcode runMethod}. */
export interface MethodRun<P extends Plan> {
  plan: P;
  output: Float32Array;
}

/**
 * Plans (unless given `plan`), prepares and runs `method` once on `problem` with a poisoned output,
 * and reads it back. Throws {@linkcode InvalidOutputError} when any output value was left unwritten
 * or is NaN or infinite.
 */
export async function runMethod<P extends Plan>(
  problem: Problem,
  method: AttentionMethod<P>,
  options: Partial<MethodOptions> = {},
  plan: P = problem.plan(method, options),
): Promise<MethodRun<P>> {
  const gpu = problem.gpu;
  const prepared = await gpu.scoped(
    `Preparing ${method.name}`,
    () => method.prepare(gpu, plan, problem.buffers),
  );
  try {
    const output = await runPrepared(problem, prepared, method.name);
    const scan = scanOutput(output, problem.data.shape);
    if (scan.unwritten > 0 || scan.nonFinite > 0) {
      const note = logitLimitNote(method, problem.ix, problem.layout, problem.data, scan.badRows, {
        overflowOnly: true,
      });
      throw new InvalidOutputError(
        invalidOutputMessage(method.name, output.length, scan, note),
        output,
        scan,
        plan,
      );
    }
    return { plan, output };
  } finally {
    prepared.destroy();
  }
}

/**
 * Test-only attention methods for the bench tests, independent of the real kernels: `prepare`
 * reads Q/K/V back, computes the float64 reference on the CPU and uploads it; `encode` copies it
 * into the output with a trivial kernel (times `scale`, so a scale other than 1 is a wrong method).
 */

import { GpuError } from "../kernels/gpu.ts";
import type { AttentionData, KvLayout } from "../kernels/layout.ts";
import { type AttentionMethod, type MethodName, type Plan, realIo } from "../kernels/method.ts";
import { referenceAttention } from "../kernels/reference.ts";
import type { IndexedTree } from "../workloads/tree.ts";
import type { ModelShape } from "../workloads/shapes.ts";

interface FakePlan extends Plan {
  ix: IndexedTree;
  layout: KvLayout;
}

const COPY_WGSL = `
override SCALE: f32 = 1.0;
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < arrayLength(&src)) { dst[g.x] = src[g.x] * SCALE; }
}`;

/** Options of {@linkcode fakeMethod}. */
export interface FakeOptions {
  /** Output = reference x scale (1: correct). */
  scale?: number;
  /** Throw a GpuError in prepare. */
  throwInPrepare?: boolean;
  /** Copy dispatches recorded per encode (more work, same output). */
  copies?: number;
}

/** A test-only method under a real method's name. */
export function fakeMethod(name: MethodName, o: FakeOptions = {}): AttentionMethod<FakePlan> {
  const copies = o.copies ?? 1;
  return {
    name,
    description: `test-only ${name}`,
    plan({ ix, layout, shape, dtype }) {
      const n = ix.queryCount * shape.qHeads * shape.headDim;
      return {
        method: name,
        shape,
        dtype,
        queries: ix.queryCount,
        slots: layout.slots,
        dispatches: Array.from({ length: copies }, () => ({
          kernel: "copy",
          workgroups: [Math.ceil(n / 64), 1, 1] as [number, number, number],
          workgroupSize: 64,
        })),
        counts: {
          paper: { kvBytes: 100, maskBytes: 0, partialBytes: 0, totalBytes: 100 },
          real: realIo({
            kvBytes: 0,
            qBytes: 0,
            maskBytes: 0,
            metadataBytes: 0,
            partialBytes: n * 4 * copies,
            logitsBytes: 0,
            outputBytes: n * 4 * copies,
          }),
          dramBytes: n * 4,
          flops: n * copies,
          usefulFlops: n,
        },
        stats: { copies },
        ix,
        layout,
      };
    },
    async prepare(gpu, plan, problem) {
      if (o.throwInPrepare) throw new GpuError(`${name} is broken on purpose`);
      const shape: ModelShape = plan.shape;
      const elems = (b: GPUBuffer, count: number) => {
        return gpu.read(b).then((ab) =>
          plan.dtype === "f16" ? new Float16Array(ab, 0, count) : new Float32Array(ab, 0, count)
        );
      };
      const data: AttentionData = {
        dtype: plan.dtype,
        shape,
        queries: plan.queries,
        slots: plan.slots,
        q: await elems(problem.q, plan.queries * shape.qHeads * shape.headDim),
        k: await elems(problem.k, plan.slots * shape.kvHeads * shape.headDim),
        v: await elems(problem.v, plan.slots * shape.kvHeads * shape.headDim),
      };
      const expected = Float32Array.from(referenceAttention(plan.ix, plan.layout, data));
      const pipeline = await gpu.pipeline(`fake ${name}`, COPY_WGSL, { SCALE: o.scale ?? 1 });
      const src = gpu.buffer(`fake ${name} expected`, expected);
      const bindGroup = gpu.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: src } }, {
          binding: 1,
          resource: { buffer: problem.out },
        }],
      });
      const groups = Math.ceil(expected.length / 64);
      return {
        encode(pass) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          for (let i = 0; i < copies; i++) pass.dispatchWorkgroups(groups);
        },
        destroy: () => src.destroy(),
      };
    },
  };
}

/** sequence and deft-flatten correct, radix wrong, tree-mask throwing. */
export function fakeRegistry(): Map<MethodName, AttentionMethod> {
  return new Map<MethodName, AttentionMethod>([
    ["sequence", fakeMethod("sequence", { copies: 2 }) as AttentionMethod],
    ["radix", fakeMethod("radix", { scale: 1.5 }) as AttentionMethod],
    ["tree-mask", fakeMethod("tree-mask", { throwInPrepare: true }) as AttentionMethod],
    ["deft-flatten", fakeMethod("deft-flatten") as AttentionMethod],
  ]);
}

/** Only the correct fakes. */
export function goodRegistry(): Map<MethodName, AttentionMethod> {
  const r = fakeRegistry();
  r.delete("radix");
  r.delete("tree-mask");
  return r;
}

/** A tiny model shape for tests. */
export const TINY_SHAPE: ModelShape = {
  name: "tiny",
  qHeads: 4,
  kvHeads: 2,
  headDim: 16,
  layers: 2,
};

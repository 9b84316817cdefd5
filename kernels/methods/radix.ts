/**
 * `radix`: Radix Attention as the DeFT paper ran it (section 2.1): SGLang's early two-pass "token
 * attention" kernels (from LightLLM) on the paged KV cache.
 *
 * 1. Stage 1, grid (query, query head, tiles of 32 keys up to the longest query): every program
 *    gathers its 32 keys through the query's row of a req_to_token-style slot table (one u32 per
 *    path token; each branch owns a copy of its prefix's row), and writes the scaled logits to a
 *    global buffer `[qHead][Σ N_i]` in the storage dtype.
 * 2. Stage 2, one program per (query, query head): walks the whole sequence in tiles of 64,
 *    re-reading the logits and gathering V, with a running max / sum online softmax, and writes
 *    the final output. No split along the sequence, no reduction.
 *
 * Neither stage is GQA-aware: each query head re-reads its KV head, as in the original. So its real
 * KV IO equals the paper's per-query-head accounting, and the logits add `2·qHeads·Σ N_i` elements
 * of partial-result IO that the paper's Table 12 leaves out.
 *
 * @module
 */

import { type Dtype, dtypeBytes, groupSize, type ModelShape } from "../../workloads/shapes.ts";
import { type Gpu, requireF16 } from "../gpu.ts";
import type {
  DispatchInfo,
  GpuProblem,
  MethodRecord,
  Plan,
  PlanCounts,
  PlanInput,
  PreparedMethod,
} from "../method.ts";
import { dramFloorBytes, paperIo, realIo } from "../plan_counts.ts";
import { rowGrid } from "../reduce.ts";
import { specializeWgsl } from "../wgsl.ts";
import logitsWgsl from "../wgsl/radix_logits.wgsl" with { type: "text" };
import reducevWgsl from "../wgsl/radix_reducev.wgsl" with { type: "text" };

/** Keys per stage-1 program (the original's BLOCK_N). */
export const RADIX_LOGIT_TILE = 32;
/** Keys per stage-2 tile (the original's BLOCK_N), also its threads per workgroup. */
export const RADIX_REDUCE_TILE = 64;
const MAX_PER_DIM = 65535;

/** The plan of `radix`: the per-query slot table and the two grids. */
export interface RadixPlan extends Plan {
  readonly method: "radix";
  /** Per query `(start in the table and in each logits row, N_i)`. */
  readonly reqs: Uint32Array;
  /** req_to_token: the slot of every path token, query rows concatenated (Σ N_i entries). */
  readonly reqToToken: Uint32Array;
  /** Σ N_i: length of the table and of each logits row. */
  readonly totalTokens: number;
  /** ceil(max N_i / 32): the third axis of the stage-1 grid. */
  readonly logitTiles: number;
  /** Threads per key in stage 1 (4 for head dim <= 64, else 8, like the original's warps). */
  readonly lanes: number;
  /** Stage-1 programs, the padded grid (queries x qHeads x logitTiles). */
  readonly logitWorkgroups: number;
  /** Stage-2 programs (queries x qHeads). */
  readonly reduceWorkgroups: number;
}

/** Threads per key of stage 1 for a head dimension. */
function lanesFor(headDim: number): number {
  return headDim <= 64 ? 4 : 8;
}

/** Rewrites a radix kernel's constants and, for f16, its K/V and logits storage types. */
function radixSource(
  src: string,
  name: string,
  dtype: Dtype,
  consts: Record<string, number>,
): string {
  const f16 = dtype === "f16";
  return specializeWgsl(src, {
    consts,
    aliases: f16 ? { KV4: "vec4<f16>", LT: "f16" } : {},
    f16,
    name,
  });
}

/** Stage-1 kernel source for a shape and dtype. */
export function radixLogitsShader(shape: ModelShape, dtype: Dtype): string {
  return radixSource(logitsWgsl, "radix_logits.wgsl", dtype, {
    D4: shape.headDim / 4,
    KV_HEADS: shape.kvHeads,
    Q_HEADS: shape.qHeads,
    GROUP: groupSize(shape),
    LANES: lanesFor(shape.headDim),
    SCALE: 1 / Math.sqrt(shape.headDim),
  });
}

/** Stage-2 kernel source for a shape and dtype. */
export function radixReduceShader(shape: ModelShape, dtype: Dtype): string {
  return radixSource(reducevWgsl, "radix_reducev.wgsl", dtype, {
    D4: shape.headDim / 4,
    KV_HEADS: shape.kvHeads,
    Q_HEADS: shape.qHeads,
    GROUP: groupSize(shape),
  });
}

/** Builds the plan: the slot table, the request list, the grids and the counts. */
export function planRadix(input: PlanInput): RadixPlan {
  const { ix, layout, shape, dtype } = input;
  const { qHeads, headDim: d } = shape;
  const nq = ix.queryCount;
  const reqs = new Uint32Array(2 * nq);
  let total = 0;
  let maxN = 0;
  let activeTiles = 0;
  for (let q = 0; q < nq; q++) {
    const n = ix.pathTokens[ix.queryNode[q]!]!;
    reqs[2 * q] = total;
    reqs[2 * q + 1] = n;
    total += n;
    maxN = Math.max(maxN, n);
    activeTiles += Math.ceil(n / RADIX_LOGIT_TILE);
  }
  // Fill each query's row from its leaf upwards: node v's tokens sit at path position
  // pathTokens[v] - tokens(v). A node already written for an earlier query is copied from there
  // (as SGLang copies the prefix's row on branching), so shared prefixes cost a memcpy.
  const reqToToken = new Uint32Array(total);
  const firstAt = new Float64Array(ix.nodeCount).fill(-1);
  for (let q = 0; q < nq; q++) {
    const start = reqs[2 * q]!;
    for (let u = ix.queryNode[q]!; u >= 0; u = ix.parent[u]!) {
      const len = ix.tokens(u);
      const at = start + ix.pathTokens[u]! - len;
      const first = firstAt[u]!;
      if (first >= 0) {
        reqToToken.copyWithin(at, first, first + len);
      } else {
        const s = layout.slotStart[u]!;
        for (let t = 0; t < len; t++) reqToToken[at + t] = s + t;
        firstAt[u] = at;
      }
    }
  }
  const logitTiles = Math.max(1, Math.ceil(maxN / RADIX_LOGIT_TILE));
  const lanes = lanesFor(d);
  const logitWorkgroups = nq * qHeads * logitTiles;
  const reduceWorkgroups = nq * qHeads;
  const active = activeTiles * qHeads;

  const b = dtypeBytes(dtype);
  const headTokens = total * qHeads;
  const counts: PlanCounts = {
    paper: paperIo(shape, dtype, total, 0, 0),
    real: realIo({
      kvBytes: 2 * headTokens * d * b, // K in stage 1, V in stage 2, per query head
      qBytes: active * d * b,
      maskBytes: 0,
      // Every program reads the uniform params (8 B) and its request (8 B); each key's slot is
      // read once per query head in each stage.
      metadataBytes: (logitWorkgroups + reduceWorkgroups) * 16 + 2 * headTokens * 4,
      partialBytes: 0,
      logitsBytes: 2 * headTokens * b,
      outputBytes: nq * qHeads * d * 4,
    }),
    dramBytes: dramFloorBytes(input),
    flops: 4 * d * headTokens,
    usefulFlops: 4 * d * headTokens,
  };
  const dispatches: DispatchInfo[] = [
    {
      kernel: "radix-logits",
      workgroups: rowGrid(logitWorkgroups, MAX_PER_DIM),
      workgroupSize: RADIX_LOGIT_TILE * lanes,
    },
    {
      kernel: "radix-reducev",
      workgroups: rowGrid(reduceWorkgroups, MAX_PER_DIM),
      workgroupSize: RADIX_REDUCE_TILE,
    },
  ];
  return {
    method: "radix",
    kernelVariant: "fma-two-pass",
    shape,
    dtype,
    queries: nq,
    slots: layout.slots,
    dispatches,
    counts,
    stats: {
      totalTokens: total,
      logitTiles,
      logitWorkgroups,
      activeLogitWorkgroups: active,
      idleLogitWorkgroups: logitWorkgroups - active,
      reduceWorkgroups,
      logitElements: headTokens,
      workgroups: logitWorkgroups + reduceWorkgroups,
    },
    reqs,
    reqToToken,
    totalTokens: total,
    logitTiles,
    lanes,
    logitWorkgroups,
    reduceWorkgroups,
  };
}

async function prepareRadix(
  gpu: Gpu,
  plan: RadixPlan,
  problem: GpuProblem,
): Promise<PreparedMethod> {
  const { shape, dtype } = plan;
  requireF16(gpu, dtype);
  const [logitsPipeline, reducePipeline] = await Promise.all([
    gpu.pipeline("radix logits", radixLogitsShader(shape, dtype)),
    gpu.pipeline("radix reducev", radixReduceShader(shape, dtype)),
  ]);
  const own: GPUBuffer[] = [];
  const make = (label: string, data: ArrayBufferView | number, usage?: number) => {
    const buf = gpu.buffer(label, data, usage);
    own.push(buf);
    return buf;
  };
  let bindLogits: GPUBindGroup, bindReduce: GPUBindGroup;
  try {
    const params = make(
      "radix params",
      new Uint32Array([plan.logitTiles, plan.totalTokens, 0, 0]),
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    );
    const reqs = make("radix reqs", plan.reqs);
    const table = make("radix req_to_token", plan.reqToToken);
    const logits = make(
      "radix logits",
      plan.totalTokens * shape.qHeads * dtypeBytes(dtype),
    );
    const bind = (label: string, pipeline: GPUComputePipeline, buffers: GPUBuffer[]) =>
      gpu.device.createBindGroup({
        label,
        layout: pipeline.getBindGroupLayout(0),
        entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
    bindLogits = bind("radix logits", logitsPipeline, [
      params,
      reqs,
      table,
      problem.q,
      problem.k,
      logits,
    ]);
    bindReduce = bind("radix reducev", reducePipeline, [
      params,
      reqs,
      table,
      logits,
      problem.v,
      problem.out,
    ]);
  } catch (e) {
    for (const buf of own) buf.destroy();
    throw e;
  }
  const maxDim = gpu.limit("maxComputeWorkgroupsPerDimension");
  const logitGrid = rowGrid(plan.logitWorkgroups, maxDim);
  const reduceGrid = rowGrid(plan.reduceWorkgroups, maxDim);
  return {
    encode(pass) {
      pass.setPipeline(logitsPipeline);
      pass.setBindGroup(0, bindLogits);
      pass.dispatchWorkgroups(...logitGrid);
      pass.setPipeline(reducePipeline);
      pass.setBindGroup(0, bindReduce);
      pass.dispatchWorkgroups(...reduceGrid);
    },
    destroy() {
      for (const buf of own) buf.destroy();
    },
  };
}

/** The `radix` method (SGLang's two-pass token attention on paged KV). */
export const radix: MethodRecord<RadixPlan, "radix"> = {
  name: "radix",
  description:
    "Radix Attention (SGLang token attention): logits of 32-key tiles to global memory, then one softmax-reduce-V program per query head",
  options: [],
  variants: [{
    family: "fma",
    description: "two passes: logits to global memory, then softmax and P·V per query head",
    needs: [],
  }],
  // Stage 1 writes q·k / sqrt(d) to global memory in the storage dtype, as SGLang's kernel does.
  storedLogits: "scaled",
  plan: planRadix,
  prepare: prepareRadix,
};

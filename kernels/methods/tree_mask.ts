/**
 * `tree-mask`: Tree Attention-Medusa, the dense-causal-mask baseline of the DeFT paper (section
 * 2.2; mask encoding in 3.6, IO in 4.1 / Table 12). The whole tree's KV (every node, concatenated
 * in DFS order through a per-token slot gather list) is attended by ALL queries at once, and a
 * dense additive mask `DCM[query][tree token]` (0 on the query's path, -inf elsewhere, storage
 * dtype, built on the CPU) removes what a query may not see. The steps run unfused, each writing
 * its result to global memory in the storage dtype (f32 math inside the kernels), as PyTorch does:
 *
 * 1. `S = Q·K^T` (tiled GEMM per KV head, workgroup-memory tiles);
 * 2. `S' = S / sqrt(d)` (elementwise);
 * 3. `M = S' + DCM` (elementwise, the mask broadcast over query heads);
 * 4. `P = softmax(M)` (one workgroup per row, max-shifted);
 * 5. `O = P·V` (tiled GEMM per KV head, split over the tokens when there are too few tiles to fill
 *    the GPU, as cuBLAS does, followed by an elementwise sum of the split partials).
 *
 * Intermediates are `[qHead][query][stride]`, with `stride` = N_tree rounded up to 4 (the pad
 * columns are masked, so every row moves as whole vec4s). The rows of KV head c (its GQA group's
 * heads x queries) are then contiguous and each GEMM is a plain batched GEMM over KV heads. Two
 * intermediate buffers ping-pong: S and M share one, S' and P the other.
 *
 * @module
 */

import { type Dtype, dtypeBytes } from "../../workloads/shapes.ts";
import type { IndexedTree } from "../../workloads/tree.ts";
import {
  checkWorkgroup,
  type Gpu,
  GpuError,
  requireF16,
  WEBGPU_MIN_WORKGROUP_STORAGE,
} from "../gpu.ts";
import type { KvLayout } from "../layout.ts";
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
import { TARGET_WORKGROUPS } from "../options.ts";
import { specializeWgsl } from "../wgsl.ts";
import {
  mmaGemmBytes,
  type TreeMaskMma,
  treeMaskMma,
  treeMaskMmaName,
  treeMaskMmaUnfit,
  treeMaskPvSource,
  treeMaskQkSource,
} from "../tree_mask_mma.ts";
import qkWgsl from "../wgsl/tree_mask_qk.wgsl" with { type: "text" };
import qkBindingsWgsl from "../wgsl/tree_mask_qk_bindings.wgsl" with { type: "text" };
import scaleWgsl from "../wgsl/tree_mask_scale.wgsl" with { type: "text" };
import addWgsl from "../wgsl/tree_mask_add.wgsl" with { type: "text" };
import softmaxWgsl from "../wgsl/tree_mask_softmax.wgsl" with { type: "text" };
import pvWgsl from "../wgsl/tree_mask_pv.wgsl" with { type: "text" };
import pvBindingsWgsl from "../wgsl/tree_mask_pv_bindings.wgsl" with { type: "text" };
import sumWgsl from "../wgsl/tree_mask_sum.wgsl" with { type: "text" };

/**
 * Workgroup memory the planned tiles fit in: WebGPU's guaranteed minimum rather than the plans'
 * usual `PLAN_STORAGE_BUDGET`, so a plan runs as planned on every device (on H200,
 * 16-deep slices of the 128 x 64 step-1 tile ran faster than 32-deep ones). `prepare` still checks
 * the device and would fall back to shallower slices.
 */
export const TILE_STORAGE_BUDGET = WEBGPU_MIN_WORKGROUP_STORAGE;
/** Fewest tokens per split of step 5, so split partials stay small next to the P reads. */
export const MIN_SPLIT_TOKENS = 256;
/** Workgroups step 5 aims for when `options.targetWorkgroups` is 0 (a few waves of an H100). */
export const DEFAULT_TARGET_WORKGROUPS = 1024;
/** Intermediates larger than this cannot be bound by any device (u32 byte offsets). */
export const MAX_INTERMEDIATE_BYTES = 2 ** 32 - 4;

const THREADS = 256;
/** vec4s per thread in the elementwise kernels (steps 2 and 3). */
const ELEMENTWISE_VEC4S = 4;
const MAX_PER_DIM = 65535;
/** f16 and f32 bit patterns of -inf (the mask's "not visible"). */
const NEG_INF_F16_BITS = 0xfc00;
const NEG_INF_F32_BITS = 0xff800000;

/** A GEMM tile: TY x TX threads, each owning TM rows x 4 columns; BK-deep slices. */
export interface GemmTile {
  tx: number;
  ty: number;
  tm: number;
  bk: number;
  /** Rows per tile (ty x tm). */
  bm: number;
  /** Columns per tile (tx x 4). */
  bn: number;
}

/** The plan of `tree-mask`: the gather list, the dense causal mask and the kernel geometry. */
export interface TreeMaskPlan extends Plan {
  readonly method: "tree-mask";
  /** N_tree: tokens of the whole tree. */
  readonly treeTokens: number;
  /** Row length of the mask and the intermediates: N_tree rounded up to 4. */
  readonly rowStride: number;
  /** KV-pool slot of every tree token, in DFS order of the nodes. */
  readonly tokenSlot: Uint32Array;
  /**
   * The dense causal mask `[query][rowStride]` as raw storage-dtype bits (Uint16Array of f16 for
   * f16, Uint32Array of f32 for f32): 0 where the token is visible, -inf elsewhere and on the pads.
   */
  readonly maskBits: Uint16Array | Uint32Array;
  /** Rows per KV head of the batched GEMMs: group x queries. */
  readonly rows: number;
  /** Elements of each intermediate (S, S', M, P): qHeads x queries x rowStride. */
  readonly intermediateElements: number;
  /** The FMA kernels' tiles (used where {@linkcode TreeMaskPlan.mma} is null). */
  readonly qkTile: GemmTile;
  readonly pvTile: GemmTile;
  /** The GEMMs on matrix units (steps 1 and 5), or null for the FMA kernels. */
  readonly mma: TreeMaskMma | null;
  /** Step 5 token chunks (1: no split, the GEMM writes the output directly). */
  readonly splits: number;
  /** Tokens per step-5 chunk (a multiple of 32, so of every slice depth). */
  readonly splitTokens: number;
}

const pow2AtLeast = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/** Workgroup-memory bytes of a kernel's tiles at slice depth `bk`. */
function tileBytes(t: Omit<GemmTile, "bk">, bk: number, kernel: "qk" | "pv"): number {
  return (bk * (t.bm + t.bn) + (kernel === "qk" ? t.bn : bk)) * 4;
}

/** Deepest slice (32, 16, 8 or 4) whose tiles fit in `budget` bytes, or 0 if none does. */
export function sliceDepth(t: Omit<GemmTile, "bk">, kernel: "qk" | "pv", budget: number): number {
  for (const bk of [32, 16, 8, 4]) if (tileBytes(t, bk, kernel) <= budget) return bk;
  return 0;
}

/** Step 1 tile: 256 threads, 4 or 8 rows each; few rows widen the tile along the tokens. */
export function qkTile(rows: number): GemmTile {
  const [tx, ty, tm] = rows <= 16
    ? [64, 4, 4]
    : rows <= 32
    ? [32, 8, 4]
    : rows <= 64
    ? [16, 16, 4]
    : [16, 16, 8];
  const t = { tx, ty, tm, bm: ty * tm, bn: tx * 4 };
  return { ...t, bk: sliceDepth(t, "qk", TILE_STORAGE_BUDGET) };
}

/** Step 5 tile: the columns cover the head dimension (up to 256), 4 or 8 rows per thread. */
export function pvTile(rows: number, headDim: number): GemmTile {
  const tx = Math.min(64, Math.max(4, pow2AtLeast(Math.ceil(headDim / 4))));
  const ty = THREADS / tx;
  const tm = rows <= 4 * ty ? 4 : 8;
  const t = { tx, ty, tm, bm: ty * tm, bn: tx * 4 };
  return { ...t, bk: sliceDepth(t, "pv", TILE_STORAGE_BUDGET) };
}

/** The KV-pool slot of every tree token, nodes concatenated in DFS order. */
function dfsTokenSlots(ix: IndexedTree, layout: KvLayout): Uint32Array {
  const slots = new Uint32Array(ix.treeTokens);
  for (const v of ix.dfsOrder) {
    const s = layout.slotStart[v]!;
    const o = ix.dfsStart[v]!;
    for (let t = 0, len = ix.tokens(v); t < len; t++) slots[o + t] = s + t;
  }
  return slots;
}

/**
 * The dense causal mask `[query][rowStride]` as storage-dtype bits: -inf everywhere, then 0 over
 * the DFS token range of every node on each query's path.
 */
export function denseCausalMask(
  ix: IndexedTree,
  rowStride: number,
  dtype: Dtype,
): Uint16Array | Uint32Array {
  const len = ix.queryCount * rowStride;
  const mask = dtype === "f16"
    ? new Uint16Array(len).fill(NEG_INF_F16_BITS)
    : new Uint32Array(len).fill(NEG_INF_F32_BITS);
  for (let q = 0; q < ix.queryCount; q++) {
    const row = q * rowStride;
    for (let v = ix.queryNode[q]!; v >= 0; v = ix.parent[v]!) {
      const start = row + ix.dfsStart[v]!;
      mask.fill(0, start, start + ix.tokens(v));
    }
  }
  return mask;
}

/** Number of visible (0) entries of a mask built by {@linkcode denseCausalMask}. */
export function visiblePairs(maskBits: Uint16Array | Uint32Array): number {
  let n = 0;
  for (let i = 0; i < maskBits.length; i++) if (maskBits[i] === 0) n++;
  return n;
}

/** Softmax workgroup size for rows of `stride4` vec4s. */
function softmaxThreads(stride4: number): number {
  return stride4 >= 1024 ? 256 : stride4 >= 256 ? 128 : 64;
}

/**
 * The GEMMs on matrix units for `input`, or null for the FMA kernels: `kernel: "mma"` demands them
 * (a `RangeError` says why they cannot run), `"auto"` takes them for f16 storage on a device and
 * shape they fit, `"fma"` never.
 */
function matrixGemms(input: PlanInput, rows: number): TreeMaskMma | null {
  const { options, dtype, shape, caps } = input;
  if (options.kernel === "fma") return null;
  if (options.kernel === "mma") {
    if (dtype !== "f16") {
      throw new RangeError(`tree-mask's mma kernels need f16 storage, got ${dtype}`);
    }
    return treeMaskMma(shape, caps, rows);
  }
  return dtype === "f16" && treeMaskMmaUnfit(shape, caps) === null
    ? treeMaskMma(shape, caps, rows)
    : null;
}

function planTreeMask(input: PlanInput): TreeMaskPlan {
  const { ix, layout, shape, dtype, options } = input;
  const { qHeads, kvHeads, headDim: d } = shape;
  const b = dtypeBytes(dtype);
  const nq = ix.queryCount;
  const group = qHeads / kvHeads;
  const tokenSlot = dfsTokenSlots(ix, layout);
  const n = ix.treeTokens;
  const stride = Math.ceil(n / 4) * 4;

  const E = qHeads * nq * stride;
  const intermediateBytes = E * b;
  if (intermediateBytes > MAX_INTERMEDIATE_BYTES) {
    throw new RangeError(
      `tree-mask needs intermediates of ${intermediateBytes} bytes each (qHeads ${qHeads} x ` +
        `${nq} queries x ${stride} tree tokens x ${b} B), more than any device's ` +
        `maxStorageBufferBindingSize can bind (${MAX_INTERMEDIATE_BYTES} bytes)`,
    );
  }
  const maskBits = denseCausalMask(ix, stride, dtype);

  const rows = group * nq;
  const mma = matrixGemms(input, rows);
  const fmaQk = qkTile(rows);
  const fmaPv = pvTile(rows, d);
  // The tiles' rows, columns and slice depth, whichever kernels run.
  const qk: Pick<GemmTile, "bm" | "bn" | "bk"> = mma?.qk ?? fmaQk;
  const pv: Pick<GemmTile, "bm" | "bn" | "bk"> = mma?.pv ?? fmaPv;
  const threads = mma?.threads ?? THREADS;
  const qkRowTiles = Math.ceil(rows / qk.bm);
  const qkColTiles = Math.ceil(n / qk.bn);
  const pvRowTiles = Math.ceil(rows / pv.bm);
  const pvColTiles = Math.ceil(d / pv.bn);
  const pvBase = kvHeads * pvRowTiles * pvColTiles;
  const asked = TARGET_WORKGROUPS.read(options);
  const target = asked > 0 ? asked : DEFAULT_TARGET_WORKGROUPS;
  const maxSplits = Math.max(1, Math.floor(n / MIN_SPLIT_TOKENS));
  let splits = Math.min(maxSplits, Math.max(1, Math.ceil(target / pvBase)));
  // Chunks are whole 32-token multiples, so whole slices of any depth prepare may pick.
  const splitTokens = Math.ceil(Math.ceil(n / splits) / 32) * 32;
  splits = Math.ceil(n / splitTokens);

  const Eo = nq * qHeads * d;
  const elementwiseGroups = Math.ceil(E / 4 / (THREADS * ELEMENTWISE_VEC4S));
  const dispatches: DispatchInfo[] = [
    {
      kernel: "tree-mask qk",
      workgroups: rowGrid(kvHeads * qkRowTiles * qkColTiles, MAX_PER_DIM),
      workgroupSize: threads,
    },
    {
      kernel: "tree-mask scale",
      workgroups: rowGrid(elementwiseGroups, MAX_PER_DIM),
      workgroupSize: THREADS,
    },
    {
      kernel: "tree-mask add-mask",
      workgroups: rowGrid(elementwiseGroups, MAX_PER_DIM),
      workgroupSize: THREADS,
    },
    {
      kernel: "tree-mask softmax",
      workgroups: rowGrid(qHeads * nq, MAX_PER_DIM),
      workgroupSize: softmaxThreads(stride / 4),
    },
    {
      kernel: "tree-mask pv",
      workgroups: rowGrid(pvBase * splits, MAX_PER_DIM),
      workgroupSize: threads,
    },
  ];
  if (splits > 1) {
    dispatches.push({
      kernel: "tree-mask split-sum",
      workgroups: rowGrid(Math.ceil(Eo / 4 / THREADS), MAX_PER_DIM),
      workgroupSize: THREADS,
    });
  }

  // Steps 1 and 5 run whole slices: d padded to the slice depth; the chunks' tokens padded to it.
  const qkDepth = Math.ceil(d / qk.bk) * qk.bk;
  const lastSplit = n - (splits - 1) * splitTokens;
  const pvDepth = (splits - 1) * splitTokens + Math.ceil(lastSplit / pv.bk) * pv.bk;
  const flops = 2 * kvHeads * qkRowTiles * qk.bm * qkColTiles * qk.bn * qkDepth + // step 1
    E + // step 2
    E + // step 3
    6 * E + // step 4: subtract, exp, add; subtract, exp, multiply
    2 * kvHeads * pvRowTiles * pv.bm * pvColTiles * pv.bn * pvDepth + // step 5
    (splits > 1 ? splits * Eo : 0);
  const pathTokens = ix.sumPathTokens;

  const outBytes = Eo * 4;
  const counts: PlanCounts = {
    paper: paperIo(shape, dtype, n, nq * n, 8 * nq * n),
    real: realIo({
      // K once per step-1 row tile, V once per step-5 row tile (column tiles split the dims).
      kvBytes: kvHeads * (qkRowTiles + pvRowTiles) * n * d * b,
      qBytes: qkColTiles * nq * qHeads * d * b,
      // Step 3 reads the mask entry of every element (broadcast over heads, mostly cache hits).
      maskBytes: E * b,
      // Slots: once per step-1 workgroup, once per step-5 workgroup for its token chunk.
      metadataBytes: kvHeads * (qkRowTiles + pvRowTiles * pvColTiles) * n * 4,
      partialBytes: splits > 1 ? 2 * splits * outBytes : 0,
      // S written, read (scale); S' written, read (mask); M written, read twice (softmax);
      // P written, read once per step-5 column tile.
      logitsBytes: (8 + pvColTiles) * E * b,
      outputBytes: outBytes,
    }),
    // Every tree token's KV (the mask hides, it does not skip) and the mask, once.
    dramBytes: dramFloorBytes(input, { kvTokens: n, extraBytes: maskBits.byteLength }),
    flops,
    usefulFlops: 4 * d * pathTokens * qHeads,
  };

  return {
    method: "tree-mask",
    kernelVariant: mma ? `${treeMaskMmaName(mma)}-unfused` : "fma-unfused-gemms",
    shape,
    dtype,
    queries: nq,
    slots: layout.slots,
    dispatches,
    counts,
    stats: {
      treeTokens: n,
      queries: nq,
      pathTokens,
      rowStride: stride,
      intermediateElements: E,
      maskElements: nq * stride,
      rows,
      qkTileRows: qk.bm,
      qkTileCols: qk.bn,
      pvTileRows: pv.bm,
      pvTileCols: pv.bn,
      matrixUnits: mma ? 1 : 0,
      splits,
      splitTokens,
    },
    treeTokens: n,
    rowStride: stride,
    tokenSlot,
    maskBits,
    rows,
    intermediateElements: E,
    qkTile: fmaQk,
    pvTile: fmaPv,
    mma,
    splits,
    splitTokens,
  };
}

/** A prepared `tree-mask`; `encodeStep` records one dispatch of the plan, for per-kernel timing. */
export interface PreparedTreeMask extends PreparedMethod {
  /** Records dispatch `i` of `plan.dispatches` alone (its inputs must have been written before). */
  encodeStep(pass: GPUComputePassEncoder, i: number): void;
}

/** Rewrites a step kernel's storage alias `ST` (f16: `enable f16;` too) and its tile constants. */
export function specializeKernel(
  src: string,
  dtype: Dtype,
  consts: Readonly<Record<string, number>> = {},
): string {
  const f16 = dtype === "f16";
  return specializeWgsl(src, { consts, aliases: f16 ? { ST: "f16" } : {}, f16 });
}

function uniform(gpu: Gpu, label: string, values: readonly number[]): GPUBuffer {
  const data = new Uint32Array(Math.ceil(values.length / 4) * 4);
  data.set(values);
  return gpu.buffer(label, data, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
}

async function prepareTreeMask(
  gpu: Gpu,
  plan: TreeMaskPlan,
  problem: GpuProblem,
): Promise<PreparedTreeMask> {
  const { shape, dtype, queries: nq, treeTokens: n, rowStride: stride, rows, splits } = plan;
  const { qHeads, kvHeads, headDim: d } = shape;
  const b = dtypeBytes(dtype);
  requireF16(gpu, dtype);
  const E = plan.intermediateElements;
  const Eo = nq * qHeads * d;
  // Every buffer is checked before any is made, so a too-large tree fails cleanly.
  const sizes: [string, number][] = [
    ["tree-mask S / M", E * b],
    ["tree-mask S' / P", E * b],
    ["tree-mask dense causal mask", plan.maskBits.byteLength],
    ["tree-mask token slots", plan.tokenSlot.byteLength],
  ];
  if (splits > 1) sizes.push(["tree-mask split partials", splits * Eo * 4]);
  for (const [label, bytes] of sizes) gpu.checkBindingSize(label, bytes);
  // FMA tiles: shallower slices where the device grants less workgroup memory than the plan's
  // budget. Matrix tiles: as planned (their subgroup size and memory are checked here).
  const storage = gpu.limit("maxComputeWorkgroupStorageSize");
  const fit = (tile: GemmTile, kernel: "qk" | "pv"): GemmTile => {
    const bk = Math.min(tile.bk, sliceDepth(tile, kernel, storage));
    if (bk === 0) {
      checkWorkgroup(gpu, `tree-mask ${kernel} tiles`, { bytes: tileBytes(tile, 4, kernel) });
    }
    return { ...tile, bk };
  };
  const mma = plan.mma;
  let qk: Pick<GemmTile, "bm" | "bn">, pv: Pick<GemmTile, "bm" | "bn">;
  let gemms: Promise<GPUComputePipeline>[];
  if (mma) {
    [qk, pv] = [mma.qk, mma.pv];
    if (gpu.info.subgroupMinSize !== mma.subgroupSize) {
      throw new GpuError(
        `tree-mask's mma kernels were planned for subgroups of ${mma.subgroupSize}, but this device uses ${gpu.info.subgroupMinSize}`,
      );
    }
    for (const step of ["qk", "pv"] as const) {
      checkWorkgroup(gpu, `tree-mask ${step} matrix tiles`, {
        bytes: mmaGemmBytes(mma, step),
        threads: mma.threads,
      });
    }
    const enables = gpu.wgslEnables({ f16: true, subgroups: true, subgroupMatrix: true });
    const o = { shape, mma, enables };
    gemms = [
      gpu.pipeline(`tree-mask qk ${treeMaskMmaName(mma)}`, treeMaskQkSource(o)),
      gpu.pipeline(`tree-mask pv ${treeMaskMmaName(mma)}`, treeMaskPvSource(o)),
    ];
  } else {
    const heads = { Q_HEADS: qHeads, KV_HEADS: kvHeads, HEAD_DIM: d };
    const tileConsts = (t: GemmTile) => ({ TX: t.tx, TY: t.ty, TM: t.tm, BK: t.bk });
    const [fq, fp] = [fit(plan.qkTile, "qk"), fit(plan.pvTile, "pv")];
    [qk, pv] = [fq, fp];
    gemms = [
      gpu.pipeline(
        "tree-mask qk",
        specializeKernel(qkBindingsWgsl + qkWgsl, dtype, tileConsts(fq)),
        heads,
      ),
      gpu.pipeline(
        "tree-mask pv",
        specializeKernel(pvBindingsWgsl + pvWgsl, dtype, tileConsts(fp)),
        heads,
      ),
    ];
  }
  const [qkPipe, scalePipe, addPipe, softmaxPipe, pvPipe, sumPipe] = await Promise.all([
    gemms[0]!,
    gpu.pipeline("tree-mask scale", specializeKernel(scaleWgsl, dtype), {
      SCALE_DIVISOR: Math.sqrt(d),
    }),
    gpu.pipeline("tree-mask add-mask", specializeKernel(addWgsl, dtype)),
    gpu.pipeline(
      "tree-mask softmax",
      specializeKernel(softmaxWgsl, dtype, { WG: plan.dispatches[3]!.workgroupSize }),
    ),
    gemms[1]!,
    splits > 1 ? gpu.pipeline("tree-mask split-sum", sumWgsl) : Promise.resolve(null),
  ]);

  const owned: GPUBuffer[] = [];
  const own = (buf: GPUBuffer) => (owned.push(buf), buf);
  const bufA = own(gpu.buffer(sizes[0]![0], sizes[0]![1]));
  const bufB = own(gpu.buffer(sizes[1]![0], sizes[1]![1]));
  const mask = own(gpu.buffer(sizes[2]![0], plan.maskBits));
  const slots = own(gpu.buffer(sizes[3]![0], plan.tokenSlot));
  const partial = splits > 1 ? own(gpu.buffer(sizes[4]![0], sizes[4]![1])) : null;

  const qkRowTiles = Math.ceil(rows / qk.bm), qkColTiles = Math.ceil(n / qk.bn);
  const pvRowTiles = Math.ceil(rows / pv.bm), pvColTiles = Math.ceil(d / pv.bn);
  const params = {
    qk: own(uniform(gpu, "tree-mask qk params", [
      n,
      stride,
      nq,
      rows,
      qkRowTiles,
      qkColTiles,
      kvHeads * qkRowTiles * qkColTiles,
    ])),
    scale: own(uniform(gpu, "tree-mask scale params", [E / 4])),
    add: own(uniform(gpu, "tree-mask add-mask params", [E / 4, nq * stride / 4])),
    softmax: own(uniform(gpu, "tree-mask softmax params", [stride / 4, qHeads * nq])),
    pv: own(uniform(gpu, "tree-mask pv params", [
      n,
      stride,
      nq,
      rows,
      pvRowTiles,
      pvColTiles,
      splits,
      plan.splitTokens,
      kvHeads * pvRowTiles * pvColTiles * splits,
      Eo / 4,
    ])),
    sum: own(uniform(gpu, "tree-mask split-sum params", [Eo / 4, splits])),
  };

  const bind = (label: string, pipe: GPUComputePipeline, buffers: GPUBuffer[]) =>
    gpu.device.createBindGroup({
      label,
      layout: pipe.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  const groups: [GPUComputePipeline, GPUBindGroup][] = [
    [qkPipe, bind("tree-mask qk", qkPipe, [params.qk, problem.q, problem.k, slots, bufA])],
    [scalePipe, bind("tree-mask scale", scalePipe, [params.scale, bufA, bufB])],
    [addPipe, bind("tree-mask add-mask", addPipe, [params.add, bufB, mask, bufA])],
    [softmaxPipe, bind("tree-mask softmax", softmaxPipe, [params.softmax, bufA, bufB])],
    [
      pvPipe,
      bind("tree-mask pv", pvPipe, [params.pv, bufB, problem.v, slots, partial ?? problem.out]),
    ],
  ];
  if (sumPipe && partial) {
    groups.push([
      sumPipe,
      bind("tree-mask split-sum", sumPipe, [params.sum, partial, problem.out]),
    ]);
  }

  const record = (pass: GPUComputePassEncoder, i: number) => {
    const [pipe, group] = groups[i]!;
    pass.setPipeline(pipe);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(...plan.dispatches[i]!.workgroups);
  };
  return {
    encode(pass) {
      for (let i = 0; i < groups.length; i++) record(pass, i);
    },
    encodeStep: record,
    destroy() {
      for (const buf of owned) buf.destroy();
    },
  };
}

/** Tree Attention-Medusa: all tree KV against all queries with a dense causal mask, unfused. */
export const treeMask: MethodRecord<TreeMaskPlan, "tree-mask"> = {
  name: "tree-mask",
  description:
    "Tree Attention-Medusa: whole-tree KV x all queries with a dense causal mask, unfused steps (QK^T, scale, mask, softmax, PV) through global memory",
  options: [TARGET_WORKGROUPS],
  variants: [{
    family: "fma",
    description: "unfused tiled GEMMs and elementwise steps through global memory",
    needs: [],
  }, {
    family: "mma",
    description:
      "the two GEMMs as subgroup-matrix multiply-accumulates, f16 x f16 -> f32 (tree_mask_mma.ts); the other steps as fma",
    needs: ["shader-f16", "subgroups", "subgroup-matrix"],
    dtypes: ["f16"],
  }],
  // S = Q·K^T goes to global memory unscaled in the storage dtype (step 1), as in PyTorch.
  storedLogits: "unscaled",
  plan: planTreeMask,
  prepare: prepareTreeMask,
};

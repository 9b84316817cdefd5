/**
 * The two GEMMs of `tree-mask` (Tree Attention-Medusa, `methods/tree_mask.ts`) on matrix units:
 * step 1, `S = Q K^T`, and step 5, `O = P V`, as f16 x f16 -> f32 subgroup-matrix
 * multiply-accumulates (WGSL `chromium_experimental_subgroup_matrix`, Dawn only). They read and
 * write the same buffers, with the same layouts and uniforms, as the FMA kernels
 * (`wgsl/tree_mask_qk.wgsl`, `wgsl/tree_mask_pv.wgsl`), so the steps between them (scale, mask,
 * softmax, split sum) are shared: S leaves step 1 rounded to f16 after f32 accumulation, as in the
 * FMA kernel, and step 5 writes f32 outputs or split partials.
 *
 * A workgroup has four subgroups in an SR x SC grid; each computes FM x FN result fragments of M x
 * N, so a tile is BM = SR FM M rows by BN = SC FN N columns. The reduction runs in slices of BK
 * (head dims in step 1, tree tokens in step 5): each slice of A (Q rows or P rows) and B (K rows or
 * V rows, gathered through the token slots) is staged in workgroup memory as f16, and the next
 * slice's loads are issued before this slice's products, so that they are in flight while the
 * matrix units work. Rows past the GEMM and tokens past the tree (or the split) are staged as zeros.
 * Results leave through workgroup memory one fragment per subgroup at a time: a fragment store
 * cannot convert f32 to f16 (step 1), and step 5's rows are scattered over the output's
 * `[query][qHead]` order.
 *
 * The WGSL is generated here (a typed template) so that the fragments are named values and stay
 * in registers, as in `group_attention_mma.ts`.
 *
 * @module
 */

import type { ModelShape } from "../workloads/shapes.ts";
import qkBindingsWgsl from "./wgsl/tree_mask_qk_bindings.wgsl" with { type: "text" };
import pvBindingsWgsl from "./wgsl/tree_mask_pv_bindings.wgsl" with { type: "text" };
import { specializeWgsl } from "./wgsl.ts";
import type { SubgroupMatrixConfig } from "./gpu.ts";
import type { KernelCaps } from "./method.ts";

/** Subgroups per workgroup of both GEMMs. */
export const MMA_GEMM_SUBGROUPS = 4;
/** Depth of a reduction slice: head dims (step 1, at most the head dim) or tree tokens (step 5). */
export const MMA_GEMM_SLICE = 32;
/** Halves of padding after each staged row (keeps rows 16-byte aligned, spreads banks). */
const PAD = 8;

/** A tile of one of the GEMMs on matrix units. */
export interface MmaGemmTile {
  /** Subgroups along the rows and along the columns (SR x SC = {@linkcode MMA_GEMM_SUBGROUPS}). */
  readonly sr: number;
  readonly sc: number;
  /** Result fragments per subgroup along the rows and along the columns. */
  readonly fm: number;
  readonly fn: number;
  /** Rows (SR FM M) and columns (SC FN N) of the tile. */
  readonly bm: number;
  readonly bn: number;
  /** Depth of a reduction slice. */
  readonly bk: number;
}

/** The matrix configuration and tiles of `tree-mask`'s GEMMs. */
export interface TreeMaskMma {
  readonly config: SubgroupMatrixConfig;
  readonly subgroupSize: number;
  /** Invocations per workgroup (both GEMMs). */
  readonly threads: number;
  readonly qk: MmaGemmTile;
  readonly pv: MmaGemmTile;
}

/** A name for results: `mma-16x16x16-qk64x64-pv64x128`. */
export function treeMaskMmaName(t: TreeMaskMma): string {
  const { M, N, K } = t.config;
  return `mma-${M}x${N}x${K}-qk${t.qk.bm}x${t.qk.bn}-pv${t.pv.bm}x${t.pv.bn}`;
}

/**
 * Why `tree-mask`'s GEMMs cannot run on matrix units for this shape and device, as a sentence
 * (null: they can).
 */
export function treeMaskMmaUnfit(shape: ModelShape, caps: KernelCaps | undefined): string | null {
  const config = caps?.matrix;
  if (!caps || !config) {
    return "tree-mask's mma kernels need a device with f16 subgroup matrices (--runtime dawn on a GPU with matrix units, or Mesa lavapipe >= 25.2)";
  }
  const { M, N, K } = config;
  const sg = caps.subgroupSize;
  if (sg <= 0 || sg % M !== 0) {
    return `tree-mask's mma kernels need a fixed subgroup size that is a multiple of M = ${M}, got ${
      sg || "a varying size"
    }`;
  }
  const d = shape.headDim;
  const step = Math.max(N, K);
  if (d % step !== 0 || MMA_GEMM_SLICE % step !== 0) {
    return `tree-mask's mma kernels need a head dim that is a multiple of ${step}, got ${d}`;
  }
  return null;
}

/**
 * The tiles for a GEMM of `rows` rows per KV head on `caps` (checked by
 * {@linkcode treeMaskMmaUnfit} first; a `RangeError` carries its sentence). Step 1 is wide along
 * the tokens when there are few rows (a tree with few queries), square otherwise; step 5 covers
 * up to 8 fragments of the head dim per row block.
 */
export function treeMaskMma(
  shape: ModelShape,
  caps: KernelCaps | undefined,
  rows: number,
): TreeMaskMma {
  const unfit = treeMaskMmaUnfit(shape, caps);
  if (unfit) throw new RangeError(unfit);
  const config = caps!.matrix!;
  const { M, N } = config;
  const d = shape.headDim;
  const s = MMA_GEMM_SUBGROUPS;
  // Step 1: one row block of one fragment where the rows fit in M, of two where they fit in 2M,
  // else 2 x 2 subgroups of 2 x 2 fragments.
  const qkShape = rows <= M
    ? { sr: 1, fm: 1 }
    : rows <= 2 * M
    ? { sr: 1, fm: 2 }
    : { sr: 2, fm: 2 };
  const qkSc = s / qkShape.sr;
  const qkFn = 2;
  const qk: MmaGemmTile = {
    ...qkShape,
    sc: qkSc,
    fn: qkFn,
    bm: qkShape.sr * qkShape.fm * M,
    bn: qkSc * qkFn * N,
    // The deepest slice that divides the head dim (a multiple of N and K, so one exists).
    bk: [MMA_GEMM_SLICE, 16, 8].find((b) => d % b === 0 && b % config.K === 0) ?? config.K,
  };
  // Step 5: the head dim's fragments over two column subgroups (one where it has one fragment),
  // at most 4 per subgroup; the other subgroups along the rows.
  const cf = d / N;
  const pvSc = Math.min(2, cf);
  const pvFn = Math.min(4, Math.max(1, Math.floor(cf / pvSc)));
  const pvSr = s / pvSc;
  const pvFm = rows <= pvSr * M ? 1 : 2;
  const pv: MmaGemmTile = {
    sr: pvSr,
    sc: pvSc,
    fm: pvFm,
    fn: pvFn,
    bm: pvSr * pvFm * M,
    bn: pvSc * pvFn * N,
    bk: MMA_GEMM_SLICE,
  };
  return { config, subgroupSize: caps!.subgroupSize, threads: s * caps!.subgroupSize, qk, pv };
}

/** Workgroup memory of a GEMM's kernel in bytes (mirrors the declarations of its source). */
export function mmaGemmBytes(t: TreeMaskMma, step: "qk" | "pv"): number {
  const tile = t[step];
  const { M, N } = t.config;
  const a = tile.bm * (tile.bk + PAD);
  const b = step === "qk" ? tile.bn * (tile.bk + PAD) : tile.bk * (tile.bn + PAD);
  return 2 * (a + b) + 4 * MMA_GEMM_SUBGROUPS * M * (N + 4);
}

/** What the two sources need. */
export interface TreeMaskMmaSource {
  shape: ModelShape;
  mma: TreeMaskMma;
  /** `enable` directives of the runtime (see `Gpu.wgslEnables`). */
  enables: string;
}

const lines = (n: number, f: (i: number) => string) =>
  Array.from({ length: n }, (_, i) => f(i)).join("\n");

/** Four halves of `x` to `arr` from `at`. */
const stage4 = (arr: string, at: string, x: string, pad: string) =>
  `${pad}{ let a = ${at}; ${arr}[a] = ${x}.x; ${arr}[a + 1u] = ${x}.y; ${arr}[a + 2u] = ${x}.z; ${arr}[a + 3u] = ${x}.w; }`;

/** Constants and fragment types shared by both kernels. */
function prelude(o: TreeMaskMmaSource, tile: MmaGemmTile, what: string): string {
  const { M, N, K } = o.mma.config;
  return `${o.enables}enable chromium_disable_uniformity_analysis;
// Generated by kernels/tree_mask_mma.ts (see there): tree-mask ${what}, ${
    treeMaskMmaName(o.mma)
  }, head dim ${o.shape.headDim}, ${o.shape.qHeads} q-heads / ${o.shape.kvHeads} KV heads.

const Q_HEADS: u32 = ${o.shape.qHeads}u;
const KV_HEADS: u32 = ${o.shape.kvHeads}u;
const HEAD_DIM: u32 = ${o.shape.headDim}u;
const M: u32 = ${M}u;
const N: u32 = ${N}u;
const K: u32 = ${K}u;
const SG: u32 = ${o.mma.subgroupSize}u;
const WG: u32 = ${o.mma.threads}u;
const SC: u32 = ${tile.sc}u;
const FM: u32 = ${tile.fm}u;
const FN: u32 = ${tile.fn}u;
const BM: u32 = ${tile.bm}u;
const BN: u32 = ${tile.bn}u;
const BK: u32 = ${tile.bk}u;
const OS: u32 = ${N + 4}u;  // floats per row of a subgroup's output staging
`;
}

/**
 * Per-invocation unrolled loads of `total` vec4s (`e` = lid + i WG; guarded where `total` is not a
 * whole number of rounds), as `let <name><i> = <load(e)>;`.
 */
function unrolledLoads(
  total: number,
  threads: number,
  name: string,
  load: (e: string) => string,
  assign = false,
): { count: number; code: string } {
  const count = Math.ceil(total / threads);
  const whole = total % threads === 0;
  const code = lines(count, (i) => {
    const e = `(lid + ${i * threads}u)`;
    const value = whole
      ? load(e)
      : `select(vec4<f16>(), ${load(`min(${e}, ${total - 1}u)`)}, ${e} < ${total}u)`;
    return assign ? `    ${name}${i} = ${value};` : `  var ${name}${i} = ${value};`;
  });
  return { count, code };
}

/**
 * The stores of the staged registers (`name<i>`) into `arr`, where vec4 `e` goes to `at(e)`
 * (guarded like {@linkcode unrolledLoads}).
 */
function unrolledStores(
  total: number,
  threads: number,
  name: string,
  arr: string,
  at: (e: string) => string,
): string {
  const count = Math.ceil(total / threads);
  const whole = total % threads === 0;
  return lines(count, (i) => {
    const e = `(lid + ${i * threads}u)`;
    const store = stage4(arr, at(e), `${name}${i}`, whole ? "    " : "      ");
    return whole ? store : `    if (${e} < ${total}u) {\n${store}\n    }`;
  });
}

/** The result fragments' declarations, the products of one slice, and the output rounds. */
function fragments(
  o: TreeMaskMmaSource,
  tile: MmaGemmTile,
  a: { arr: string; at: (i: number, kk: number) => string; stride: string },
  b: { arr: string; at: (j: number, kk: number) => string; stride: string; major: string },
): { decls: string; products: string } {
  const { M, N, K } = o.mma.config;
  const left = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const right = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const result = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const decls = lines(tile.fm * tile.fn, (x) => `  var c${x} = ${result}();`);
  const products = lines(tile.bk / K, (kk) =>
    [
      lines(
        tile.fm,
        (i) =>
          `    let a${kk}_${i} = subgroupMatrixLoad<${left}, row_major>(&${a.arr}, ${
            a.at(i, kk)
          }, ${a.stride});`,
      ),
      lines(
        tile.fn,
        (j) =>
          `    let b${kk}_${j} = subgroupMatrixLoad<${right}, ${b.major}>(&${b.arr}, ${
            b.at(j, kk)
          }, ${b.stride});`,
      ),
      lines(tile.fm * tile.fn, (x) => {
        const i = Math.floor(x / tile.fn), j = x % tile.fn;
        return `    c${x} = subgroupMatrixMultiplyAccumulate(a${kk}_${i}, b${kk}_${j}, c${x});`;
      }),
    ].join("\n"));
  return { decls, products };
}

/**
 * The output rounds: fragment x of every subgroup to its staging, then its M x N values written by
 * the subgroup's lanes through `write(row, col, values)` (row and col of the tile's first value,
 * `values` a vec4<f32> of four consecutive columns).
 */
function outputRounds(
  o: TreeMaskMmaSource,
  tile: MmaGemmTile,
  write: (row: string, col: string, values: string) => string,
): string {
  const { M, N } = o.mma.config;
  const perLane = Math.ceil((M * N) / 4 / o.mma.subgroupSize);
  return lines(tile.fm * tile.fn, (x) => {
    const i = Math.floor(x / tile.fn), j = x % tile.fn;
    return [
      `  workgroupBarrier();`,
      `  subgroupMatrixStore<row_major>(&o_sh, sgi * M * OS, c${x}, OS);`,
      `  workgroupBarrier();`,
      lines(perLane, (l) =>
        [
          `  {`,
          `    let e = lane + ${l}u * SG;`,
          `    let rr = e / (N / 4u);`,
          `    let cc = 4u * (e % (N / 4u));`,
          `    let b = sgi * M * OS + rr * OS + cc;`,
          `    if (e < M * N / 4u) {`,
          write(
            `m0 + (sgr * FM + ${i}u) * M + rr`,
            `n0 + (sgc * FN + ${j}u) * N + cc`,
            `vec4<f32>(o_sh[b], o_sh[b + 1u], o_sh[b + 2u], o_sh[b + 3u])`,
          ),
          `    }`,
          `  }`,
        ].join("\n")),
    ].join("\n");
  });
}

/** One operand of a GEMM: how its slices are loaded, staged and read as fragments. */
interface Operand {
  /** vec4s of one slice. */
  total: number;
  /** The load of vec4 `e` of the slice that starts at `start` (a WGSL expression). */
  load: (start: string) => (e: string) => string;
  /** Where vec4 `e` of a slice goes in its workgroup array. */
  at: (e: string) => string;
  /** Where fragment `i` of reduction step `kk` starts in the array, and its row stride. */
  fragment: (i: number, kk: number) => string;
  stride: string;
}

/**
 * The part both GEMMs share, from the first slice's loads to the output: the fragments, the slice
 * loop over `v` from `from` to `to` (the next slice's loads issued before this slice's products),
 * and the output rounds through `write`. It expects `m0`, `n0`, `sgi`, `lane`, `sgr` and `sgc`.
 */
function gemmBody(
  o: TreeMaskMmaSource,
  tile: MmaGemmTile,
  loop: { v: string; from: string; to: string },
  a: Operand,
  b: Operand & { major: "row_major" | "col_major" },
  write: (row: string, col: string, values: string) => string,
): string {
  const wg = o.mma.threads;
  const loads = (x: Operand, name: string, start: string, assign = false) =>
    unrolledLoads(x.total, wg, name, x.load(start), assign).code;
  const { decls, products } = fragments(
    o,
    tile,
    { arr: "a_sh", at: a.fragment, stride: a.stride },
    { arr: "b_sh", at: b.fragment, stride: b.stride, major: b.major },
  );
  const next = `${loop.v} + BK`;
  return `${decls}
  // The first slice, every load in flight before the first store.
${loads(a, "xa", loop.from)}
${loads(b, "xb", loop.from)}
  for (var ${loop.v} = ${loop.from}; ${loop.v} < ${loop.to}; ${loop.v} += BK) {
    workgroupBarrier();  // the previous slice's fragments are loaded
${unrolledStores(a.total, wg, "xa", "a_sh", a.at)}
${unrolledStores(b.total, wg, "xb", "b_sh", b.at)}
    workgroupBarrier();
    // The next slice's loads fly while this slice's products run.
    if (${next} < ${loop.to}) {
${loads(a, "xa", next, true)}
${loads(b, "xb", next, true)}
    }
${products}
  }
  // The tile's fragments leave through o_sh.
${outputRounds(o, tile, write)}`;
}

/** The subgroup of an invocation and its place in the tile's subgroup grid. */
const SUBGROUP_GRID = `  let sgi = lid / SG;
  let lane = lid % SG;
  let sgr = sgi / SC;
  let sgc = sgi % SC;`;

/** vec4 `e` of a slice of `width` halves per row, staged at rows of `stride`. */
const rowMajor = (width: number, stride: string) => (e: string) =>
  `(${e} / ${width / 4}u) * ${stride} + 4u * (${e} % ${width / 4}u)`;

/**
 * Step 1 on matrix units: `S = Q K^T` per KV head (bindings: `wgsl/tree_mask_qk_bindings.wgsl`).
 * Its loaders and stores use the same formulas as the FMA kernels' (`wgsl/tree_mask_qk.wgsl`,
 * `wgsl/tree_mask_pv.wgsl`). Sharing them through the bindings files made Deno's FMA kernels 5-12%
 * slower on an H200 (docs/performance.md, run 70), so each family keeps its own.
 */
export function treeMaskQkSource(o: TreeMaskMmaSource): string {
  const t = o.mma.qk;
  const { M, N, K } = o.mma.config;
  const as = t.bk + PAD;
  const bk4 = t.bk / 4;
  const body = gemmBody(
    o,
    t,
    { v: "k0", from: "0u", to: "HEAD_DIM" },
    {
      total: (t.bm * t.bk) / 4,
      load: (k0) => (e) => `load_q(m0 + ${e} / ${bk4}u, ${k0} + 4u * (${e} % ${bk4}u), kvh)`,
      at: rowMajor(t.bk, "AS"),
      fragment: (i, kk) => `(sgr * FM + ${i}u) * M * AS + ${kk * K}u`,
      stride: "AS",
    },
    {
      total: (t.bn * t.bk) / 4,
      load: (k0) => (e) => `load_k(${e} / ${bk4}u, n0, ${k0} + 4u * (${e} % ${bk4}u), kvh)`,
      at: rowMajor(t.bk, "AS"),
      fragment: (j, kk) => `(sgc * FN + ${j}u) * N * AS + ${kk * K}u`,
      stride: "AS",
      major: "col_major",
    },
    (row, col, values) =>
      [
        `      let r = ${row};`,
        `      let j = ${col};`,
        `      if (r < p.rows && j < p.stride) {`,
        `        s[((kvh * p.rows + r) * p.stride + j) / 4u] = vec4<f16>(${values});  // S in f16`,
        `      }`,
      ].join("\n"),
  );
  return `${
    prelude(o, t, "step 1 (S = Q K^T)")
  }const AS: u32 = ${as}u;  // halves per staged Q or K row (a slice of the head dim)

${specializeWgsl(qkBindingsWgsl, { aliases: { ST: "f16" } })}
var<workgroup> a_sh: array<f16, ${t.bm * as}>;  // Q slice [row][AS]
var<workgroup> b_sh: array<f16, ${t.bn * as}>;  // K slice [token][AS] (K^T column-major)
var<workgroup> o_sh: array<f32, ${MMA_GEMM_SUBGROUPS * M * (N + 4)}>;  // [subgroup][M][OS]
var<workgroup> slot_sh: array<u32, ${Math.ceil(t.bn / 4) * 4}>;

fn load_q(r: u32, kk: u32, kvh: u32) -> vec4<f16> {
  if (r < p.rows) {
    let h = kvh * (Q_HEADS / KV_HEADS) + r / p.queries;
    return q[((r % p.queries) * Q_HEADS + h) * (HEAD_DIM / 4u) + kk / 4u];
  }
  return vec4<f16>();
}

fn load_k(n: u32, n0: u32, kk: u32, kvh: u32) -> vec4<f16> {
  if (n0 + n < p.tokens) {
    return k[(slot_sh[n] * KV_HEADS + kvh) * (HEAD_DIM / 4u) + kk / 4u];
  }
  return vec4<f16>();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let tile = wg.x + wg.y * nwg.x;
  if (tile >= p.tiles) { return; }
  let col_tile = tile % p.col_tiles;
  let rest = tile / p.col_tiles;
  let row_tile = rest % p.row_tiles;
  let kvh = rest / p.row_tiles;
  let m0 = row_tile * BM;
  let n0 = col_tile * BN;
${SUBGROUP_GRID}

  for (var i = lid; i < BN; i += WG) {
    var slot = 0u;
    if (n0 + i < p.tokens) { slot = token_slot[n0 + i]; }
    slot_sh[i] = slot;
  }
  workgroupBarrier();
${body}
}
`;
}

/**
 * Step 5 on matrix units: `O = P V` per KV head and token split (bindings:
 * `wgsl/tree_mask_pv_bindings.wgsl`).
 */
export function treeMaskPvSource(o: TreeMaskMmaSource): string {
  const t = o.mma.pv;
  const { M, N, K } = o.mma.config;
  const as = t.bk + PAD;
  const bs = t.bn + PAD;
  const bk4 = t.bk / 4;
  const bn4 = t.bn / 4;
  const body = gemmBody(
    o,
    t,
    { v: "j0", from: "j_begin", to: "j_end" },
    {
      total: (t.bm * t.bk) / 4,
      load: (j0) => (e) => `load_p(kvh, m0 + ${e} / ${bk4}u, ${j0} + 4u * (${e} % ${bk4}u), p_end)`,
      at: rowMajor(t.bk, "AS"),
      fragment: (i, kk) => `(sgr * FM + ${i}u) * M * AS + ${kk * K}u`,
      stride: "AS",
    },
    {
      total: (t.bk * t.bn) / 4,
      load: (j0) => (e) => `load_v(${j0} + ${e} / ${bn4}u, n0 + 4u * (${e} % ${bn4}u), j_end, kvh)`,
      at: rowMajor(t.bn, "BS"),
      fragment: (j, kk) => `${kk * K}u * BS + (sgc * FN + ${j}u) * N`,
      stride: "BS",
      major: "row_major",
    },
    // Row r is (head r / queries, query r % queries).
    (row, col, values) =>
      [
        `      let r = ${row};`,
        `      let n = ${col};`,
        `      if (r < p.rows && n < HEAD_DIM) {`,
        `        let h = kvh * (Q_HEADS / KV_HEADS) + r / p.queries;`,
        `        dst[split * p.split_stride + ((r % p.queries) * Q_HEADS + h) * (HEAD_DIM / 4u) + n / 4u] = ${values};`,
        `      }`,
      ].join("\n"),
  );
  return `${
    prelude(o, t, "step 5 (O = P V)")
  }const AS: u32 = ${as}u;  // halves per staged P row (a slice of the tokens)
const BS: u32 = ${bs}u;  // halves per staged V row

${specializeWgsl(pvBindingsWgsl, { aliases: { ST: "f16" } })}
var<workgroup> a_sh: array<f16, ${t.bm * as}>;  // P slice [row][AS]
var<workgroup> b_sh: array<f16, ${t.bk * bs}>;  // V slice [token][BS]
var<workgroup> o_sh: array<f32, ${MMA_GEMM_SUBGROUPS * M * (N + 4)}>;  // [subgroup][M][OS]

// Probabilities of row r, tokens j .. j + 3 (j a multiple of 4; zero past the split or the rows).
fn load_p(kvh: u32, r: u32, j: u32, limit: u32) -> vec4<f16> {
  if (r < p.rows && j < limit) {
    return probs[((kvh * p.rows + r) * p.stride + j) / 4u];
  }
  return vec4<f16>();
}

// V of tree token j, dims n .. n + 3 (zero past the split: its P is zero, its V must be finite).
fn load_v(j: u32, n: u32, limit: u32, kvh: u32) -> vec4<f16> {
  if (j < limit && n < HEAD_DIM) {
    return v[(token_slot[j] * KV_HEADS + kvh) * (HEAD_DIM / 4u) + n / 4u];
  }
  return vec4<f16>();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let tile = wg.x + wg.y * nwg.x;
  if (tile >= p.tiles) { return; }
  let split = tile % p.splits;
  var rest = tile / p.splits;
  let col_tile = rest % p.col_tiles;
  rest = rest / p.col_tiles;
  let row_tile = rest % p.row_tiles;
  let kvh = rest / p.row_tiles;
  let m0 = row_tile * BM;
  let n0 = col_tile * BN;
  let j_begin = split * p.chunk;
  let j_end = min(p.tokens, j_begin + p.chunk);
  let p_end = min(p.stride, j_begin + p.chunk); // P's pad columns are 0, so whole vec4s load
${SUBGROUP_GRID}
${body}
}
`;
}

// Tree Attention-Medusa step 5 (DeFT paper, section 2.2): O = P·V. One batched GEMM per KV head:
// the rows are the GQA group's (head, query) pairs, the columns the head dimension, the reduction
// runs over the tree tokens (DFS order, V gathered from the KV pool through `token_slot`). The
// token range is split into `splits` chunks (split-K, as cuBLAS does for tall-skinny products) so
// that a long tree still fills the GPU; with one split the tile writes the output directly,
// otherwise it writes an f32 partial sum that tree_mask_sum.wgsl adds up.
// The TypeScript side prepends tree_mask_pv_bindings.wgsl (uniforms, bindings, the storage
// alias `ST`) and rewrites `ST` (f16 storage) and the tile constants. TM is 4
// or 8; the accumulators are named variables (not an array indexed in a loop) so that they stay
// in registers.

const TX: u32 = 32u; // threads along the head dimension (4 columns each)
const TY: u32 = 8u;  // threads along the rows
const TM: u32 = 4u;  // rows per thread: 4 or 8
const BK: u32 = 16u; // tokens per step
const BM: u32 = TY * TM;
const BN: u32 = TX * 4u;
const WG: u32 = TX * TY;

override Q_HEADS: u32;
override KV_HEADS: u32;
override HEAD_DIM: u32;

var<workgroup> a_sh: array<vec4<f32>, BK * BM / 4u>; // P slice, [token][row / 4]
var<workgroup> b_sh: array<vec4<f32>, BK * BN / 4u>; // V slice, [token][d / 4]
var<workgroup> slot_sh: array<u32, BK>;

// Probabilities of row r, tokens j .. j + 3 (j a multiple of 4; zero past the chunk or the rows).
fn load_p(kvh: u32, r: u32, j: u32, limit: u32) -> vec4<f32> {
  if (r < p.rows && j < limit) {
    return vec4<f32>(probs[((kvh * p.rows + r) * p.stride + j) / 4u]);
  }
  return vec4<f32>(0.0);
}

fn store_row(kvh: u32, split: u32, r: u32, n: u32, acc: vec4<f32>) {
  if (r >= p.rows) { return; }
  let h = kvh * (Q_HEADS / KV_HEADS) + r / p.queries;
  dst[split * p.split_stride + ((r % p.queries) * Q_HEADS + h) * (HEAD_DIM / 4u) + n / 4u] = acc;
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
  let tx = lid % TX;
  let ty = lid / TX;

  if (lid < BK) {
    var slot = 0u;
    if (j_begin + lid < j_end) { slot = token_slot[j_begin + lid]; }
    slot_sh[lid] = slot;
  }
  workgroupBarrier();

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  var acc4 = vec4<f32>(0.0);
  var acc5 = vec4<f32>(0.0);
  var acc6 = vec4<f32>(0.0);
  var acc7 = vec4<f32>(0.0);
  for (var j0 = j_begin; j0 < j_end; j0 += BK) {
    // P slice: BM rows x BK tokens as 4 x 4 blocks, transposed in registers.
    for (var idx = lid; idx < BM * BK / 16u; idx += WG) {
      let kq = idx % (BK / 4u);
      let mb = idx / (BK / 4u);
      let j = j0 + kq * 4u;
      let t0 = load_p(kvh, m0 + mb * 4u, j, p_end);
      let t1 = load_p(kvh, m0 + mb * 4u + 1u, j, p_end);
      let t2 = load_p(kvh, m0 + mb * 4u + 2u, j, p_end);
      let t3 = load_p(kvh, m0 + mb * 4u + 3u, j, p_end);
      let at = kq * BM + mb;
      a_sh[at] = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
      a_sh[at + BM / 4u] = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
      a_sh[at + BM / 2u] = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
      a_sh[at + 3u * (BM / 4u)] = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
    }
    // V slice: BK tokens x BN dims, one vec4 per load.
    for (var idx = lid; idx < BK * BN / 4u; idx += WG) {
      let nq = idx % (BN / 4u);
      let kk = idx / (BN / 4u);
      let n = n0 + nq * 4u;
      var x = vec4<f32>(0.0);
      if (j0 + kk < j_end && n < HEAD_DIM) {
        x = vec4<f32>(v[(slot_sh[kk] * KV_HEADS + kvh) * (HEAD_DIM / 4u) + n / 4u]);
      }
      b_sh[kk * (BN / 4u) + nq] = x;
    }
    workgroupBarrier();
    // slot_sh is read only before the barrier above, so the next slice's slots load now.
    if (lid < BK) {
      let j = j0 + BK + lid;
      var slot = 0u;
      if (j < j_end) { slot = token_slot[j]; }
      slot_sh[lid] = slot;
    }
    for (var kk = 0u; kk < BK; kk++) {
      let b = b_sh[kk * (BN / 4u) + tx];
      let a = a_sh[kk * (BM / 4u) + ty * (TM / 4u)];
      acc0 = fma(vec4<f32>(a.x), b, acc0);
      acc1 = fma(vec4<f32>(a.y), b, acc1);
      acc2 = fma(vec4<f32>(a.z), b, acc2);
      acc3 = fma(vec4<f32>(a.w), b, acc3);
      if (TM == 8u) {
        let a2 = a_sh[kk * (BM / 4u) + ty * 2u + 1u];
        acc4 = fma(vec4<f32>(a2.x), b, acc4);
        acc5 = fma(vec4<f32>(a2.y), b, acc5);
        acc6 = fma(vec4<f32>(a2.z), b, acc6);
        acc7 = fma(vec4<f32>(a2.w), b, acc7);
      }
    }
    workgroupBarrier();
  }

  // Thread rows m0 + ty * TM + i, columns n0 + tx * 4 + (0..3).
  let n = n0 + tx * 4u;
  if (n >= HEAD_DIM) { return; }
  let r = m0 + ty * TM;
  store_row(kvh, split, r, n, acc0);
  store_row(kvh, split, r + 1u, n, acc1);
  store_row(kvh, split, r + 2u, n, acc2);
  store_row(kvh, split, r + 3u, n, acc3);
  if (TM == 8u) {
    store_row(kvh, split, r + 4u, n, acc4);
    store_row(kvh, split, r + 5u, n, acc5);
    store_row(kvh, split, r + 6u, n, acc6);
    store_row(kvh, split, r + 7u, n, acc7);
  }
}

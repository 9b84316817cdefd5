// Tree Attention-Medusa step 1 (DeFT paper, section 2.2): S = Q·K^T for every (query head, query,
// tree token), written to global memory in the storage dtype. One batched GEMM per KV head: the
// rows are the GQA group's (head, query) pairs, the columns the tree tokens in DFS order, gathered
// from the KV pool through `token_slot`. A workgroup computes a BM x BN tile; each thread a TM x 4
// register tile; Q and K stream through workgroup memory in BK-wide slices of the head dimension.
// The TypeScript side prepends tree_mask_qk_bindings.wgsl (uniforms, bindings, the storage
// alias `ST`) and rewrites `ST` (f16 storage) and the tile constants. TM is 4
// or 8; the accumulators are named variables (not an array indexed in a loop) so that they stay
// in registers.

const TX: u32 = 16u; // threads along the tokens (4 columns each)
const TY: u32 = 16u; // threads along the rows
const TM: u32 = 4u;  // rows per thread: 4 or 8
const BK: u32 = 16u; // head-dimension slice per step (a multiple of 4)
const BM: u32 = TY * TM;
const BN: u32 = TX * 4u;
const WG: u32 = TX * TY;

override Q_HEADS: u32;
override KV_HEADS: u32;
override HEAD_DIM: u32;

var<workgroup> a_sh: array<vec4<f32>, BK * BM / 4u>; // Q slice, [k][row / 4]
var<workgroup> b_sh: array<vec4<f32>, BK * BN / 4u>; // K slice, [k][token / 4]
var<workgroup> slot_sh: array<u32, BN>;

fn load_q(r: u32, kk: u32, kvh: u32) -> vec4<f32> {
  if (r < p.rows && kk < HEAD_DIM) {
    let h = kvh * (Q_HEADS / KV_HEADS) + r / p.queries;
    return vec4<f32>(q[((r % p.queries) * Q_HEADS + h) * (HEAD_DIM / 4u) + kk / 4u]);
  }
  return vec4<f32>(0.0);
}

fn load_k(n: u32, n0: u32, kk: u32, kvh: u32) -> vec4<f32> {
  if (n0 + n < p.tokens && kk < HEAD_DIM) {
    return vec4<f32>(k[(slot_sh[n] * KV_HEADS + kvh) * (HEAD_DIM / 4u) + kk / 4u]);
  }
  return vec4<f32>(0.0);
}

fn store_row(kvh: u32, r: u32, j: u32, acc: vec4<f32>) {
  if (r < p.rows && j < p.stride) { s[((kvh * p.rows + r) * p.stride + j) / 4u] = vec4<ST>(acc); }
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
  let tx = lid % TX;
  let ty = lid / TX;

  for (var i = lid; i < BN; i += WG) {
    var slot = 0u;
    if (n0 + i < p.tokens) { slot = token_slot[n0 + i]; }
    slot_sh[i] = slot;
  }

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  var acc4 = vec4<f32>(0.0);
  var acc5 = vec4<f32>(0.0);
  var acc6 = vec4<f32>(0.0);
  var acc7 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < HEAD_DIM; k0 += BK) {
    workgroupBarrier(); // slot_sh written / previous slice consumed
    // Q slice: BM rows x BK dims as 4 x 4 blocks, transposed in registers.
    for (var idx = lid; idx < BM * BK / 16u; idx += WG) {
      let mb = idx / (BK / 4u);
      let kq = idx % (BK / 4u);
      let kk = k0 + kq * 4u;
      let t0 = load_q(m0 + mb * 4u, kk, kvh);
      let t1 = load_q(m0 + mb * 4u + 1u, kk, kvh);
      let t2 = load_q(m0 + mb * 4u + 2u, kk, kvh);
      let t3 = load_q(m0 + mb * 4u + 3u, kk, kvh);
      let at = kq * BM + mb;
      a_sh[at] = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
      a_sh[at + BM / 4u] = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
      a_sh[at + BM / 2u] = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
      a_sh[at + 3u * (BM / 4u)] = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
    }
    // K slice: BN tokens x BK dims as 4 x 4 blocks, transposed in registers.
    for (var idx = lid; idx < BN * BK / 16u; idx += WG) {
      let nb = idx / (BK / 4u);
      let kq = idx % (BK / 4u);
      let kk = k0 + kq * 4u;
      let t0 = load_k(nb * 4u, n0, kk, kvh);
      let t1 = load_k(nb * 4u + 1u, n0, kk, kvh);
      let t2 = load_k(nb * 4u + 2u, n0, kk, kvh);
      let t3 = load_k(nb * 4u + 3u, n0, kk, kvh);
      let at = kq * BN + nb;
      b_sh[at] = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
      b_sh[at + BN / 4u] = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
      b_sh[at + BN / 2u] = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
      b_sh[at + 3u * (BN / 4u)] = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
    }
    workgroupBarrier();
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
  }

  // Thread rows m0 + ty * TM + i, columns n0 + tx * 4 + (0..3).
  let r = m0 + ty * TM;
  let j = n0 + tx * 4u;
  store_row(kvh, r, j, acc0);
  store_row(kvh, r + 1u, j, acc1);
  store_row(kvh, r + 2u, j, acc2);
  store_row(kvh, r + 3u, j, acc3);
  if (TM == 8u) {
    store_row(kvh, r + 4u, j, acc4);
    store_row(kvh, r + 5u, j, acc5);
    store_row(kvh, r + 6u, j, acc6);
    store_row(kvh, r + 7u, j, acc7);
  }
}

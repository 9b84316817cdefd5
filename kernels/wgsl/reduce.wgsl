// Tree-topology-aware global reduction (DeFT paper, section 3.5, stage 2; Eq. 1), as a gather:
// one workgroup per (query, query head) merges the partial results of that query (a CSR list)
// with the log-sum-exp rule. No float atomics, so the result is deterministic. A row whose
// partials all have lse = -inf (it saw no key) is written as zeros, never NaN.
//
// Mesa's llvmpipe/lavapipe end a shader invocation silently after 65535 loop iterations in all, so
// no loop runs once per entry: the list is walked WG entries at a time (each thread loads one
// entry's weight into workgroup memory), and every thread then merges the tile's WG entries into
// its own output dims in straight-line code. An invocation runs about 2 * entries / WG loop
// iterations (reductionLoopIterations in reduce.ts), so a list of a million partials still fits.

override Q_HEADS: u32;
override HEAD_DIM: u32; // at most 8 * WG
const WG: u32 = 32u;

@group(0) @binding(0) var<storage, read> offsets: array<u32>;     // [queries + 1]
@group(0) @binding(1) var<storage, read> entries: array<u32>;     // partial indices
@group(0) @binding(2) var<storage, read> partial_o: array<f32>;   // [partial][qHead][d]
@group(0) @binding(3) var<storage, read> partial_lse: array<f32>; // [partial][qHead]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [query][qHead][d]

const NEG_INF: f32 = -3.0e38;

var<workgroup> red: array<f32, WG>;
var<workgroup> tile_w: array<f32, WG>;     // weight exp(lse - m) of each entry of the tile
var<workgroup> tile_base: array<u32, WG>;  // its first element in partial_o

// Dims lane, lane + WG, ... of the output row, and the sum of the weights.
var<private> acc: array<f32, 8>;
var<private> total: f32;
var<private> lane: u32;

// Adds entry j of the tile to this thread's dims (no loop: see the header).
fn take(j: u32) {
  let w = tile_w[j];
  if (w > 0.0) {
    total += w;
    let b = tile_base[j] + lane;
    if (lane < HEAD_DIM) { acc[0] += w * partial_o[b]; }
    if (lane + WG < HEAD_DIM) { acc[1] += w * partial_o[b + WG]; }
    if (lane + 2u * WG < HEAD_DIM) { acc[2] += w * partial_o[b + 2u * WG]; }
    if (lane + 3u * WG < HEAD_DIM) { acc[3] += w * partial_o[b + 3u * WG]; }
    if (lane + 4u * WG < HEAD_DIM) { acc[4] += w * partial_o[b + 4u * WG]; }
    if (lane + 5u * WG < HEAD_DIM) { acc[5] += w * partial_o[b + 5u * WG]; }
    if (lane + 6u * WG < HEAD_DIM) { acc[6] += w * partial_o[b + 6u * WG]; }
    if (lane + 7u * WG < HEAD_DIM) { acc[7] += w * partial_o[b + 7u * WG]; }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  let queries = arrayLength(&offsets) - 1u;
  if (row >= queries * Q_HEADS) { return; }
  lane = lid;
  let query = row / Q_HEADS;
  let head = row % Q_HEADS;
  let begin = offsets[query];
  let end = offsets[query + 1u];

  // The largest lse: each thread over every WG-th entry, then a tree over the threads.
  var m_own = NEG_INF;
  for (var e = begin + lid; e < end; e += WG) {
    m_own = max(m_own, partial_lse[entries[e] * Q_HEADS + head]);
  }
  red[lid] = m_own;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let m = red[0];

  for (var t = begin; t < end; t += WG) {
    var w = 0.0;
    var base = 0u;
    let e = t + lid;
    if (e < end && m > NEG_INF) {
      let p = entries[e];
      let lse = partial_lse[p * Q_HEADS + head];
      if (lse > NEG_INF) {
        w = exp(lse - m);
        base = (p * Q_HEADS + head) * HEAD_DIM;
      }
    }
    tile_w[lid] = w;
    tile_base[lid] = base;
    workgroupBarrier();
    take(0u); take(1u); take(2u); take(3u); take(4u); take(5u); take(6u); take(7u);
    take(8u); take(9u); take(10u); take(11u); take(12u); take(13u); take(14u); take(15u);
    take(16u); take(17u); take(18u); take(19u); take(20u); take(21u); take(22u); take(23u);
    take(24u); take(25u); take(26u); take(27u); take(28u); take(29u); take(30u); take(31u);
    workgroupBarrier();
  }

  let inv = select(0.0, 1.0 / total, total > 0.0);
  let obase = (query * Q_HEADS + head) * HEAD_DIM;
  for (var i = 0u; i * WG + lid < HEAD_DIM; i++) {
    out[obase + i * WG + lid] = acc[i] * inv;
  }
}

// Tree-topology-aware global reduction (DeFT paper, section 3.5, stage 2; Eq. 1), as a gather:
// one workgroup per (query, query head) merges the partial results of that query (a CSR list)
// with the log-sum-exp rule. No float atomics, so the result is deterministic. A row whose
// partials all have lse = -inf (it saw no key) is written as zeros, never NaN.
//
// Mesa's llvmpipe/lavapipe end a shader invocation silently after 65535 loop iterations in all, so
// no loop runs once per entry: the list is walked WG entries at a time (each thread loads one
// entry's weight into workgroup memory), and every thread then merges the tile's WG entries into
// its own output vec4s in straight-line code. An invocation runs about 2 * entries / WG loop
// iterations (reductionLoopIterations in reduce.ts), so a list of a million partials still fits.

override Q_HEADS: u32;
override HEAD_DIM: u32; // a multiple of 4, at most 8 * WG
const WG: u32 = 32u;

@group(0) @binding(0) var<storage, read> offsets: array<u32>;          // [queries + 1]
@group(0) @binding(1) var<storage, read> entries: array<u32>;          // partial indices
@group(0) @binding(2) var<storage, read> partial_o: array<vec4<f32>>;  // [partial][qHead][d]
@group(0) @binding(3) var<storage, read> partial_lse: array<f32>;      // [partial][qHead]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [query][qHead][d]

const NEG_INF: f32 = -3.0e38;

var<workgroup> red: array<f32, WG>;
var<workgroup> tile_w: array<f32, WG>;     // weight exp(lse - m) of each entry of the tile
var<workgroup> tile_base: array<u32, WG>;  // its first vec4 in partial_o

// The sum of the tile's weights.
fn tile_w_sum() -> f32 {
  var t = 0.0;
  t += tile_w[0u];
  t += tile_w[1u];
  t += tile_w[2u];
  t += tile_w[3u];
  t += tile_w[4u];
  t += tile_w[5u];
  t += tile_w[6u];
  t += tile_w[7u];
  t += tile_w[8u];
  t += tile_w[9u];
  t += tile_w[10u];
  t += tile_w[11u];
  t += tile_w[12u];
  t += tile_w[13u];
  t += tile_w[14u];
  t += tile_w[15u];
  t += tile_w[16u];
  t += tile_w[17u];
  t += tile_w[18u];
  t += tile_w[19u];
  t += tile_w[20u];
  t += tile_w[21u];
  t += tile_w[22u];
  t += tile_w[23u];
  t += tile_w[24u];
  t += tile_w[25u];
  t += tile_w[26u];
  t += tile_w[27u];
  t += tile_w[28u];
  t += tile_w[29u];
  t += tile_w[30u];
  t += tile_w[31u];
  return t;
}

// The tile's weighted sum of vec4 c of each entry's row (no loop: see the header). Every load is
// issued before the first sum, with no branch between them (docs/performance.md, change 10: on an
// H200 this measured the same as one load behind each entry's branch, 17-23 us for 2048 rows of
// 8-32 entries). An entry without weight reads its base 0 (a partial that exists) and adds 0:
// select, not a product, so that no value it reads can turn the sum into NaN.
fn tile_sum(c: u32) -> vec4<f32> {
  let x0 = partial_o[tile_base[0u] + c];
  let x1 = partial_o[tile_base[1u] + c];
  let x2 = partial_o[tile_base[2u] + c];
  let x3 = partial_o[tile_base[3u] + c];
  let x4 = partial_o[tile_base[4u] + c];
  let x5 = partial_o[tile_base[5u] + c];
  let x6 = partial_o[tile_base[6u] + c];
  let x7 = partial_o[tile_base[7u] + c];
  let x8 = partial_o[tile_base[8u] + c];
  let x9 = partial_o[tile_base[9u] + c];
  let x10 = partial_o[tile_base[10u] + c];
  let x11 = partial_o[tile_base[11u] + c];
  let x12 = partial_o[tile_base[12u] + c];
  let x13 = partial_o[tile_base[13u] + c];
  let x14 = partial_o[tile_base[14u] + c];
  let x15 = partial_o[tile_base[15u] + c];
  let x16 = partial_o[tile_base[16u] + c];
  let x17 = partial_o[tile_base[17u] + c];
  let x18 = partial_o[tile_base[18u] + c];
  let x19 = partial_o[tile_base[19u] + c];
  let x20 = partial_o[tile_base[20u] + c];
  let x21 = partial_o[tile_base[21u] + c];
  let x22 = partial_o[tile_base[22u] + c];
  let x23 = partial_o[tile_base[23u] + c];
  let x24 = partial_o[tile_base[24u] + c];
  let x25 = partial_o[tile_base[25u] + c];
  let x26 = partial_o[tile_base[26u] + c];
  let x27 = partial_o[tile_base[27u] + c];
  let x28 = partial_o[tile_base[28u] + c];
  let x29 = partial_o[tile_base[29u] + c];
  let x30 = partial_o[tile_base[30u] + c];
  let x31 = partial_o[tile_base[31u] + c];
  var s = vec4<f32>();
  s += select(vec4<f32>(), tile_w[0u] * x0, tile_w[0u] > 0.0);
  s += select(vec4<f32>(), tile_w[1u] * x1, tile_w[1u] > 0.0);
  s += select(vec4<f32>(), tile_w[2u] * x2, tile_w[2u] > 0.0);
  s += select(vec4<f32>(), tile_w[3u] * x3, tile_w[3u] > 0.0);
  s += select(vec4<f32>(), tile_w[4u] * x4, tile_w[4u] > 0.0);
  s += select(vec4<f32>(), tile_w[5u] * x5, tile_w[5u] > 0.0);
  s += select(vec4<f32>(), tile_w[6u] * x6, tile_w[6u] > 0.0);
  s += select(vec4<f32>(), tile_w[7u] * x7, tile_w[7u] > 0.0);
  s += select(vec4<f32>(), tile_w[8u] * x8, tile_w[8u] > 0.0);
  s += select(vec4<f32>(), tile_w[9u] * x9, tile_w[9u] > 0.0);
  s += select(vec4<f32>(), tile_w[10u] * x10, tile_w[10u] > 0.0);
  s += select(vec4<f32>(), tile_w[11u] * x11, tile_w[11u] > 0.0);
  s += select(vec4<f32>(), tile_w[12u] * x12, tile_w[12u] > 0.0);
  s += select(vec4<f32>(), tile_w[13u] * x13, tile_w[13u] > 0.0);
  s += select(vec4<f32>(), tile_w[14u] * x14, tile_w[14u] > 0.0);
  s += select(vec4<f32>(), tile_w[15u] * x15, tile_w[15u] > 0.0);
  s += select(vec4<f32>(), tile_w[16u] * x16, tile_w[16u] > 0.0);
  s += select(vec4<f32>(), tile_w[17u] * x17, tile_w[17u] > 0.0);
  s += select(vec4<f32>(), tile_w[18u] * x18, tile_w[18u] > 0.0);
  s += select(vec4<f32>(), tile_w[19u] * x19, tile_w[19u] > 0.0);
  s += select(vec4<f32>(), tile_w[20u] * x20, tile_w[20u] > 0.0);
  s += select(vec4<f32>(), tile_w[21u] * x21, tile_w[21u] > 0.0);
  s += select(vec4<f32>(), tile_w[22u] * x22, tile_w[22u] > 0.0);
  s += select(vec4<f32>(), tile_w[23u] * x23, tile_w[23u] > 0.0);
  s += select(vec4<f32>(), tile_w[24u] * x24, tile_w[24u] > 0.0);
  s += select(vec4<f32>(), tile_w[25u] * x25, tile_w[25u] > 0.0);
  s += select(vec4<f32>(), tile_w[26u] * x26, tile_w[26u] > 0.0);
  s += select(vec4<f32>(), tile_w[27u] * x27, tile_w[27u] > 0.0);
  s += select(vec4<f32>(), tile_w[28u] * x28, tile_w[28u] > 0.0);
  s += select(vec4<f32>(), tile_w[29u] * x29, tile_w[29u] > 0.0);
  s += select(vec4<f32>(), tile_w[30u] * x30, tile_w[30u] > 0.0);
  s += select(vec4<f32>(), tile_w[31u] * x31, tile_w[31u] > 0.0);
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  let queries = arrayLength(&offsets) - 1u;
  if (row >= queries * Q_HEADS) { return; }
  let lane = lid;
  var acc0 = vec4<f32>();  // vec4s lane and lane + WG of the output row
  var acc1 = vec4<f32>();
  var total = 0.0;         // the sum of the weights
  let query = row / Q_HEADS;
  let head = row % Q_HEADS;
  let begin = offsets[query];
  let end = offsets[query + 1u];

  // The largest lse: each thread over every WG-th entry (its first one kept for the first tile),
  // then a tree over the threads.
  var m_own = NEG_INF;
  var first_p = 0u;
  var first_lse = NEG_INF;
  if (begin + lid < end) {
    first_p = entries[begin + lid];
    first_lse = partial_lse[first_p * Q_HEADS + head];
    m_own = first_lse;
  }
  for (var e = begin + WG + lid; e < end; e += WG) {
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
    var p = first_p;
    var lse = first_lse;
    let e = t + lid;
    if (t != begin) {
      p = 0u;
      lse = NEG_INF;
      if (e < end) {
        p = entries[e];
        lse = partial_lse[p * Q_HEADS + head];
      }
    }
    var w = 0.0;
    var base = 0u;
    if (e < end && m > NEG_INF && lse > NEG_INF) {
      w = exp(lse - m);
      base = (p * Q_HEADS + head) * (HEAD_DIM / 4u);
    }
    tile_w[lid] = w;
    tile_base[lid] = base;
    workgroupBarrier();
    if (lane < HEAD_DIM / 4u) { acc0 += tile_sum(lane); }
    if (lane + WG < HEAD_DIM / 4u) { acc1 += tile_sum(lane + WG); }
    total += tile_w_sum();
    workgroupBarrier();
  }

  let inv = select(0.0, 1.0 / total, total > 0.0);
  let obase = (query * Q_HEADS + head) * (HEAD_DIM / 4u);
  if (lane < HEAD_DIM / 4u) { out[obase + lane] = acc0 * inv; }
  if (lane + WG < HEAD_DIM / 4u) { out[obase + lane + WG] = acc1 * inv; }
}

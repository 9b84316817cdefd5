// Tree-topology-aware global reduction (DeFT paper, section 3.5, stage 2; Eq. 1), as a gather:
// one workgroup per (query, query head) walks the CSR list of that query's partial results and
// merges them with the log-sum-exp rule. No float atomics, so the result is deterministic.
// A row whose partials all have lse = -inf (it saw no key) is written as zeros, never NaN.

override Q_HEADS: u32;
override HEAD_DIM: u32;
const WG: u32 = 32u;

@group(0) @binding(0) var<storage, read> offsets: array<u32>;     // [queries + 1]
@group(0) @binding(1) var<storage, read> entries: array<u32>;     // partial indices
@group(0) @binding(2) var<storage, read> partial_o: array<f32>;   // [partial][qHead][d]
@group(0) @binding(3) var<storage, read> partial_lse: array<f32>; // [partial][qHead]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [query][qHead][d]

const NEG_INF: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  let queries = arrayLength(&offsets) - 1u;
  if (row >= queries * Q_HEADS) { return; }
  let query = row / Q_HEADS;
  let head = row % Q_HEADS;
  let begin = offsets[query];
  let end = offsets[query + 1u];

  var m = NEG_INF;
  for (var e = begin; e < end; e++) {
    m = max(m, partial_lse[entries[e] * Q_HEADS + head]);
  }
  var acc: array<f32, 8>; // HEAD_DIM / WG <= 8 (HEAD_DIM <= 256)
  var total = 0.0;
  if (m > NEG_INF) {
    for (var e = begin; e < end; e++) {
      let p = entries[e];
      let lse = partial_lse[p * Q_HEADS + head];
      if (lse <= NEG_INF) { continue; }
      let w = exp(lse - m);
      total += w;
      let base = (p * Q_HEADS + head) * HEAD_DIM;
      for (var i = 0u; i * WG + lid < HEAD_DIM; i++) {
        acc[i] += w * partial_o[base + i * WG + lid];
      }
    }
  }
  let inv = select(0.0, 1.0 / total, total > 0.0);
  let obase = (query * Q_HEADS + head) * HEAD_DIM;
  for (var i = 0u; i * WG + lid < HEAD_DIM; i++) {
    out[obase + i * WG + lid] = acc[i] * inv;
  }
}

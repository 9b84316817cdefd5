// Tree-topology-aware global reduction (DeFT paper, section 3.5, stage 2; Eq. 1), as a gather:
// one workgroup per (query, query head) merges the partial results of that query (a CSR list)
// with the log-sum-exp rule. No float atomics, so the result is deterministic. A row whose
// partials all have lse = -inf (it saw no key) is written as zeros, never NaN.
//
// One pass, no workgroup memory and no barrier: lane c owns vec4s c and c + WG of the output row
// and walks the list U entries at a time. A round loads the U entries' indices (every lane the
// same words), then their lse and the lane's vec4s of their rows, all issued before any is used,
// so a list of up to U partials costs three dependent loads (offsets, entries, partials). The
// running maximum m moves by rounds (online softmax): the sums so far are scaled by exp(m - m')
// when a round's largest lse exceeds it. An entry that saw no key (lse <= -3e38) adds nothing:
// select, not a product, so that no value it reads can turn the sum into NaN. Loops marked
// `// unroll` are unrolled by reduce.ts (register arrays indexed by constants only).
//
// Mesa's llvmpipe/lavapipe end a shader invocation silently after 65535 loop iterations in all;
// an invocation runs ceil(entries / U) + 1 (reductionLoopIterations in reduce.ts).
//
// reduce.ts specialises the constants below for the shape.

const Q_HEADS: u32 = 8u;
const D4: u32 = 32u;        // head dim / 4, at most 2 x WG
const HALVES: u32 = 1u;     // vec4s per lane: 1 when D4 <= WG, else 2
const WG: u32 = 32u;
const U: u32 = 16u;         // entries per round

@group(0) @binding(0) var<storage, read> offsets: array<u32>;          // [queries + 1]
@group(0) @binding(1) var<storage, read> entries: array<u32>;          // partial indices
@group(0) @binding(2) var<storage, read> partial_o: array<vec4<f32>>;  // [partial][qHead][d]
@group(0) @binding(3) var<storage, read> partial_lse: array<f32>;      // [partial][qHead]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // [query][qHead][d]

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
  // The lane's vec4s, clamped into the row so that every load is in bounds (a lane past the row
  // computes a copy of the last vec4 and does not write it).
  var col: array<u32, HALVES>;
  for (var h = 0u; h < HALVES; h++) { // unroll
    col[h] = min(lid + h * WG, D4 - 1u);
  }

  var m = NEG_INF;                     // the reference maximum of the sums below
  var total = 0.0;                     // sum of exp(lse - m)
  var acc: array<vec4<f32>, HALVES>;   // sum of exp(lse - m) o, the lane's vec4s
  for (var t = begin; t < end; t += U) {
    var lse: array<f32, U>;
    var x: array<vec4<f32>, U * HALVES>;
    for (var u = 0u; u < U; u++) { // unroll
      // Past the end: the last entry again (a partial that exists), with no weight.
      let r = entries[min(t + u, end - 1u)] * Q_HEADS + head;
      lse[u] = select(NEG_INF, partial_lse[r], t + u < end);
      for (var h = 0u; h < HALVES; h++) { // unroll
        x[u * HALVES + h] = partial_o[r * D4 + col[h]];
      }
    }
    var mt = m;
    for (var u = 0u; u < U; u++) { // unroll
      mt = max(mt, lse[u]);
    }
    if (mt > NEG_INF) {
      let scale = exp(m - mt); // 0 while m is still NEG_INF
      total *= scale;
      for (var h = 0u; h < HALVES; h++) { // unroll
        acc[h] *= scale;
      }
      for (var u = 0u; u < U; u++) { // unroll
        let w = select(0.0, exp(lse[u] - mt), lse[u] > NEG_INF);
        total += w;
        for (var h = 0u; h < HALVES; h++) { // unroll
          acc[h] += select(vec4<f32>(), w * x[u * HALVES + h], w > 0.0);
        }
      }
      m = mt;
    }
  }

  let inv = select(0.0, 1.0 / total, total > 0.0);
  let obase = (query * Q_HEADS + head) * D4;
  for (var h = 0u; h < HALVES; h++) { // unroll
    if (lid + h * WG < D4) { out[obase + lid + h * WG] = acc[h] * inv; }
  }
}

// Radix Attention stage 2 (DeFT paper, section 2.1: SGLang's "token attention" softmax-reduce-V):
// one workgroup per (query, query head) walks the query's whole sequence in tiles of 64, re-reading
// the stage-1 logits and gathering V through the req_to_token-style slot table, with a running
// max / sum online softmax; it writes the final output (no split along the sequence, no
// reduction). Not GQA-aware, like the original.
//
// Per tile: thread t loads logit t and slot t (two barriers per tile: the tile max is reduced by
// every thread from workgroup memory, then each thread publishes its own probability); the P·V
// phase has thread (dim quad c, key lane) accumulate p·v for the keys of its lane, lanes merged
// once at the end through workgroup memory.
//
// radix.ts specialises the constants below (and the storage dtype) by string substitution.

alias KV4 = vec4<f32>;
alias LT = f32;            // logits storage dtype
const D4: u32 = 32u;       // head dim / 4
const KV_HEADS: u32 = 2u;
const Q_HEADS: u32 = 8u;
const GROUP: u32 = 4u;     // query heads per KV head

const BLOCK_N: u32 = 64u;  // keys per tile = threads
const WG: u32 = BLOCK_N;
const KL: u32 = WG / D4;   // key lanes of the P·V phase
const NEG: f32 = -3.0e38;

struct Params {
  tiles: u32,  // unused here (stage 1's grid axis)
  total: u32,  // Σ N_i: row length of the logits
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> reqs: array<vec2<u32>>;     // per query (start, N_i)
@group(0) @binding(2) var<storage, read> req_to_token: array<u32>;   // slots, query rows concatenated
@group(0) @binding(3) var<storage, read> logits: array<LT>;          // [qHead][total]
@group(0) @binding(4) var<storage, read> v: array<KV4>;              // [slot][kvHead][D4]
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [query][qHead][D4]

var<workgroup> sl: array<vec4<f32>, BLOCK_N / 4u>;   // logits of the tile
var<workgroup> sp: array<f32, BLOCK_N>;              // probabilities of the tile
var<workgroup> sslot: array<u32, 2u * BLOCK_N>;      // slots, double-buffered by tile parity
var<workgroup> red: array<vec4<f32>, D4>;            // lane merge
var<workgroup> rl: array<f32, KL>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= arrayLength(&reqs) * Q_HEADS) { return; }
  let query = row / Q_HEADS;
  let h = row % Q_HEADS;
  let kvh = h / GROUP;
  let req = reqs[query];
  let lbase = h * params.total + req.x;

  let c = t % D4;
  let lane = t / D4;
  let pv = lane < KL;
  var m = NEG;
  var l = 0.0;
  var acc = vec4<f32>();
  var parity = 0u;

  for (var ts = 0u; ts < req.y; ts += BLOCK_N) {
    let n = min(BLOCK_N, req.y - ts);
    var s: f32;
    s = NEG;
    if (t < n) {
      s = f32(logits[lbase + ts + t]);
      sslot[parity + t] = req_to_token[req.x + ts + t];
    }
    sl[t / 4u][t % 4u] = s;
    workgroupBarrier();

    var mx = vec4<f32>(NEG);
    for (var i = 0u; i < BLOCK_N / 4u; i++) { mx = max(mx, sl[i]); }
    let m_new = max(m, max(max(mx.x, mx.y), max(mx.z, mx.w)));
    let alpha = exp(m - m_new);
    sp[t] = exp(s - m_new);
    m = m_new;
    workgroupBarrier();

    if (pv) {
      acc *= alpha;
      l *= alpha;
      for (var j = lane; j < n; j += KL) {
        let p = sp[j];
        acc = fma(vec4<f32>(p), vec4<f32>(v[(sslot[parity + j] * KV_HEADS + kvh) * D4 + c]), acc);
        l += p;
      }
    }
    parity = BLOCK_N - parity;
  }

  // Merge the key lanes, so the last lane holds the whole sequence.
  if (pv && c == 0u) { rl[lane] = l; }
  workgroupBarrier();
  for (var r = 1u; r < KL; r++) {
    if (pv && lane == r - 1u) { red[c] = acc; }
    workgroupBarrier();
    if (pv && lane == r) { acc += red[c]; }
  }
  if (pv && lane == KL - 1u) {
    var total = 0.0;
    for (var r = 0u; r < KL; r++) { total += rl[r]; }
    out[(query * Q_HEADS + h) * D4 + c] = acc / total;
  }
}

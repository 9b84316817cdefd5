// Radix Attention stage 1 (DeFT paper, section 2.1: SGLang's "token attention", from LightLLM):
// one workgroup per (query, query head, tile of 32 keys) over a grid padded to the longest query,
// as the original launches it; tiles past a query's length exit at once. Each key's slot comes
// from the query's row of the req_to_token-style table; the workgroup computes the 32 scaled
// logits q·k / sqrt(d) and writes them to the global logits buffer [qHead][Σ N_i] in the storage
// dtype. Not GQA-aware: every query head re-reads its KV head, exactly like the original.
//
// Threads: 32 keys x LANES lanes; lane l of key j reads the vec4s l, l + LANES, ... of K row j (so
// the lanes of one key read consecutive vec4s), partial dots are summed through workgroup memory.
//
// radix.ts specialises the constants below (and the storage dtype) by string substitution.

alias KV4 = vec4<f32>;
alias LT = f32;            // logits storage dtype
const D4: u32 = 32u;       // head dim / 4
const KV_HEADS: u32 = 2u;
const Q_HEADS: u32 = 8u;
const GROUP: u32 = 4u;     // query heads per KV head
const LANES: u32 = 8u;     // threads per key
const SCALE: f32 = 0.08838834765;  // 1 / sqrt(head dim)

const BLOCK_N: u32 = 32u;
const WG: u32 = BLOCK_N * LANES;
const CPL: u32 = (D4 + LANES - 1u) / LANES; // vec4s per lane

struct Params {
  tiles: u32,  // ceil(max N_i / 32): the grid's third axis
  total: u32,  // Σ N_i: row length of the logits
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> reqs: array<vec2<u32>>;     // per query (start, N_i)
@group(0) @binding(2) var<storage, read> req_to_token: array<u32>;   // slots, query rows concatenated
@group(0) @binding(3) var<storage, read> q: array<KV4>;              // [query][qHead][D4]
@group(0) @binding(4) var<storage, read> k: array<KV4>;              // [slot][kvHead][D4]
@group(0) @binding(5) var<storage, read_write> logits: array<LT>;    // [qHead][total]

var<workgroup> qs: array<vec4<f32>, D4>;
var<workgroup> part: array<f32, WG>; // [lane][key]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let index = wg.x + wg.y * nwg.x;
  let tile = index % params.tiles;
  let row = index / params.tiles;
  if (row >= arrayLength(&reqs) * Q_HEADS) { return; }
  let query = row / Q_HEADS;
  let h = row % Q_HEADS;
  let req = reqs[query];
  if (tile * BLOCK_N >= req.y) { return; }

  if (t < D4) { qs[t] = vec4<f32>(q[(query * Q_HEADS + h) * D4 + t]); }
  workgroupBarrier();

  let j = t / LANES;
  let lane = t % LANES;
  let pos = tile * BLOCK_N + j;
  var acc = vec4<f32>();
  if (pos < req.y) {
    let base = (req_to_token[req.x + pos] * KV_HEADS + h / GROUP) * D4;
    for (var i = 0u; i < CPL; i++) {
      let c = lane + i * LANES;
      if (c < D4) { acc = fma(vec4<f32>(k[base + c]), qs[c], acc); }
    }
  }
  part[lane * BLOCK_N + j] = acc.x + acc.y + acc.z + acc.w;
  workgroupBarrier();

  let p = tile * BLOCK_N + t;
  if (t < BLOCK_N && p < req.y) {
    var s = 0.0;
    for (var l = 0u; l < LANES; l++) { s += part[l * BLOCK_N + t]; }
    logits[h * params.total + req.x + p] = LT(s * SCALE);
  }
}

// The previous `sequence` kernel, kept only for tools/perf_sequence.ts (see _sequence_v1.ts).
//
// Flash-Decoding on a paged, tree-shaped KV cache: the sequence-based (Q-guided) baseline of the
// DeFT paper, section 2.1. Every query walks its own root-to-node KV, split into chunks; one
// workgroup per (chunk, KV head, head block) computes all HB query heads of that KV head's GQA
// group from a single load of the chunk's K and V, with an online softmax over tiles of T keys,
// and writes the normalised partial o and its lse (or the final output when the query has one
// chunk; the host then binds `out` as `dst_o`).
//
// Threads: one per (query head h of the block, dim quad c): WG = HB x D4. The same thread is
// logit thread (h, key c) and P·V thread (h, dims 4c..4c+3), so every per-thread value (running
// max, rescale, accumulator, denominator) is a scalar or one vec4: nothing is indexed at run time,
// nothing spills, and no lanes need merging at the end.
//
// Per tile of T keys (three barriers):
//   1. the workgroup copies the K tile into workgroup memory in the storage dtype with coalesced
//      vec4 loads (rows padded by one vec4, so the row walks of step 2 are free of bank
//      conflicts);
//   2. the V tile is copied the same way (used in step 4; its loads overlap the logits), and
//      thread (h, j) walks K row j once against Q row h for the logits (Q lives in workgroup
//      memory, pre-scaled by log2(e)/sqrt(d) so exp2 can be used). Every K and V element is
//      loaded from global memory once per workgroup;
//   3. every thread reduces its head's tile max itself from workgroup memory (no extra barrier),
//      derives the new running max and its rescale factor, and publishes p = exp2(s - m) for its
//      keys;
//   4. P·V: thread (h, c) rescales its accumulator and adds p·v over the tile's keys (V row j,
//      dims c, from workgroup memory; f16 is widened to f32 at use, accumulation is f32).
// Keys are paged by node: the chunk's path segments (path position, first slot) are walked with a
// uniform cursor; a tile that crosses a node boundary resolves slots per thread.
//
// sequence.ts specialises the constants below (and the storage dtype) by string substitution.

alias KV4 = vec4<f32>;
const D4: u32 = 32u;        // head dim / 4
const KV_HEADS: u32 = 2u;
const Q_HEADS: u32 = 8u;
const GROUP: u32 = 4u;      // query heads per KV head
const HB: u32 = 4u;         // query heads per workgroup (divides GROUP)
const HEAD_BLOCKS: u32 = 1u; // GROUP / HB
const T: u32 = 32u;         // keys per tile (power of two, >= 4)
const SCALE: f32 = 0.12751743074;  // log2(e) / sqrt(head dim)

const WG: u32 = HB * D4;
const NEG: f32 = -3.0e38;
const LN2: f32 = 0.6931471805599453;
const KROW: u32 = D4 + 1u;                // padded K row, in vec4s
const KPT: u32 = (T * D4 + WG - 1u) / WG; // K vec4s copied per thread and tile

@group(0) @binding(0) var<storage, read> chunks: array<vec4<u32>>; // (query, first segment, begin, end)
@group(0) @binding(1) var<storage, read> segs: array<vec2<u32>>;   // (path position, first slot), + sentinel
@group(0) @binding(2) var<storage, read> q: array<KV4>;            // [query][qHead][D4]
@group(0) @binding(3) var<storage, read> k: array<KV4>;            // [slot][kvHead][D4]
@group(0) @binding(4) var<storage, read> v: array<KV4>;            // [slot][kvHead][D4]
@group(0) @binding(5) var<storage, read_write> dst_o: array<vec4<f32>>; // [chunk][qHead][D4]
@group(0) @binding(6) var<storage, read_write> dst_lse: array<f32>;     // [chunk][qHead]

var<workgroup> ks: array<KV4, T * KROW>;           // K tile [key][KROW]
var<workgroup> vs: array<KV4, T * D4>;             // V tile [key][D4]
var<workgroup> qs: array<vec4<f32>, WG>;           // scaled Q [head][D4]
var<workgroup> sl: array<vec4<f32>, HB * T / 4u>;  // logits [head][key]
var<workgroup> sp: array<f32, HB * T>;             // probabilities [head][key]

// Slot of path position `pos` of the chunk's query. Fast path: inside the cursor's segment
// (`base` = its first slot minus its path position, wrapping). Otherwise walk forward; the
// query's sentinel segment (at its path length) ends the walk.
fn slot_of(pos: u32, cursor: u32, cursor_end: u32, base: u32) -> u32 {
  if (pos < cursor_end) { return base + pos; }
  var s = cursor + 1u;
  loop {
    if (segs[s + 1u].x > pos) { break; }
    s++;
  }
  let e = segs[s];
  return e.y + (pos - e.x);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let index = wg.x + wg.y * nwg.x;
  let blocks = KV_HEADS * HEAD_BLOCKS;
  if (index >= arrayLength(&chunks) * blocks) { return; }
  let chunk = index / blocks;
  let kvh = (index % blocks) / HEAD_BLOCKS;
  let h0 = kvh * GROUP + (index % HEAD_BLOCKS) * HB;
  let desc = chunks[chunk];
  let query = desc.x;
  var cursor = desc.y;
  let begin = desc.z;
  let end = desc.w;

  let h = t / D4;
  let c = t % D4;
  qs[t] = vec4<f32>(q[(query * Q_HEADS + h0) * D4 + t]) * SCALE;

  var m = NEG;
  var l = 0.0;
  var acc = vec4<f32>();

  for (var ts = begin; ts < end; ts += T) {
    while (segs[cursor + 1u].x <= ts) { cursor++; }
    let seg = segs[cursor];
    let cursor_end = segs[cursor + 1u].x;
    let base = seg.y - seg.x;
    let n = min(T, end - ts);

    // 1. K tile (consecutive threads copy consecutive vec4s of a row).
    for (var i = 0u; i < KPT; i++) {
      let e = t + i * WG;
      if (e < T * D4) {
        let row = e / D4;
        let col = e % D4;
        if (row < n) {
          ks[row * KROW + col] = k[(slot_of(ts + row, cursor, cursor_end, base) * KV_HEADS + kvh) * D4 + col];
        } else {
          ks[row * KROW + col] = KV4();
        }
      }
    }
    workgroupBarrier();

    // V tile, copied here rather than in step 1: the previous tile's P·V has read `vs` before
    // everyone passed the barrier above, so no second buffer and no fourth barrier are needed.
    for (var i = 0u; i < KPT; i++) {
      let e = t + i * WG;
      let row = e / D4;
      if (e < T * D4 && row < n) {
        vs[e] = v[(slot_of(ts + row, cursor, cursor_end, base) * KV_HEADS + kvh) * D4 + e % D4];
      }
    }

    // 2. Logits (log2 units) of keys c, c + D4, ...; keys past the chunk end get NEG.
    for (var j = c; j < T; j += D4) {
      var dot4 = vec4<f32>(0.0);
      for (var cc = 0u; cc < D4; cc++) {
        dot4 = fma(vec4<f32>(ks[j * KROW + cc]), qs[h * D4 + cc], dot4);
      }
      sl[(h * T + j) / 4u][j % 4u] = select(NEG, dot4.x + dot4.y + dot4.z + dot4.w, j < n);
    }
    workgroupBarrier();

    // 3. Tile max of head h (every thread of the head reduces the same row), probabilities.
    var mx = vec4<f32>(NEG);
    for (var i = 0u; i < T / 4u; i++) { mx = max(mx, sl[h * (T / 4u) + i]); }
    let m_new = max(m, max(max(mx.x, mx.y), max(mx.z, mx.w)));
    let alpha = exp2(m - m_new);
    m = m_new;
    for (var j = c; j < T; j += D4) {
      sp[h * T + j] = exp2(sl[(h * T + j) / 4u][j % 4u] - m_new);
    }
    workgroupBarrier();

    // 4. P·V over the tile.
    acc *= alpha;
    l *= alpha;
    for (var j = 0u; j < n; j++) {
      let p = sp[h * T + j];
      acc = fma(vec4<f32>(p), vec4<f32>(vs[j * D4 + c]), acc);
      l += p;
    }
  }

  let row = chunk * Q_HEADS + h0 + h;
  dst_o[row * D4 + c] = acc / l;
  if (c == 0u) { dst_lse[row] = (m + log2(l)) * LN2; }
}

// FROZEN COPY of the first group-attention kernel, used only by tools/perf_group.ts through
// kernels/_group_attention_v1.ts for before/after timings; delete with that file.
//
// Group attention: stage 1 of DeFT's two-stage kernel (DeFT paper, section 3.5), generic over how
// the KV is grouped. A group is a list of KV segments, a list of queries and an optional KV-side
// bit mask. One workgroup handles one work item (a group and a tile of ROWS rows, where a row is a
// (query, q-head) pair of one GQA group) for one KV head; it streams the group's KV in sub-tiles of
// KEYS tokens through workgroup memory with an online softmax and writes one normalised partial
// (o, lse) per (query, q-head) of its rows.
//
// Threads: WG = 128, 4 warps; warp w owns rows 16w .. 16w+15, so a warp whose rows are all padding
// skips the math and leaves the FMA units to other workgroups. Lane (a = lane / 8, s = lane % 8)
// of warp w is row group rg = 4w + a, holding rows 16w + a + 4r (r < 4) as the 4 components of its
// vectors. Score phase: 4 rows x 4 keys (s + 8c) in one mat4x4 (column = key). PV phase: 4 rows x
// NV vec4 of dims (s + 8j) in mat4x4 accumulators o0..o7 (column = dim). Both are outer products
// of two vec4 read from workgroup memory, so the inner loops are pure fma: Q and K are staged
// transposed (one vec4 = the 4 rows of a row group, or the 4 keys of a lane, at one dim), and the
// 8 lanes of a row group read 8 consecutive vec4 (no bank conflicts). Accumulators are named
// matrices, never arrays indexed in loops, so that they stay in registers. Q, K and V are
// converted to f32 once when staged; Q and K are staged CHUNK_V vec4 of dims at a time (Q is
// re-read per sub-tile, from L1), V in slices of V_KEYS keys, so any head dim up to 256 fits.
//
// The TypeScript loader (group_attention.ts) rewrites the `const` lines below for the shape, dtype
// and tile; the values here are only a valid default.

alias elem4 = vec4<f32>;

const HEAD_DIM: u32 = 128u;
const Q_HEADS: u32 = 8u;
const KV_HEADS: u32 = 2u;
const CHUNK_V: u32 = 8u;    // vec4 of head dim per staged Q/K chunk
const V_KEYS: u32 = 32u;    // keys per staged V slice
const KV_SIZE: u32 = 1056u; // vec4: max(K chunk, V slice)
const QP_SIZE: u32 = 512u;  // vec4: max(Q chunk, P)
const SCALE: f32 = 0.08838834764831845;

const WG: u32 = 128u;
const ROWS: u32 = 64u;
const KEYS: u32 = 32u;
const GROUP: u32 = Q_HEADS / KV_HEADS;
const DV: u32 = HEAD_DIM / 4u;
const V_STRIDE: u32 = DV + 1u; // odd (in vec4) for head dims that are multiples of 8
const CHUNKS: u32 = (DV + CHUNK_V - 1u) / CHUNK_V;
const NV: u32 = (DV + 7u) / 8u; // vec4 of dims per lane in the PV phase, at most 8
const MAXW: u32 = 2u; // mask words a 64-row tile can span
const NO_ROW: u32 = 0xffffffffu;
const NEG: f32 = -3.0e38; // stands for -inf (WGSL has no infinity literal); also EMPTY_LSE

// md (metadata): a header, then the sections it points to (u32; see packGroupMeta).
//   header: [0] groups, [1] segments, [2] queries, [3] items, [4] item count
//   group (8 words): tokens, seg begin, seg end, query begin, query count, mask words per token,
//                    mask offset (absolute, layout [word][token]), unused
//   segment (2 words): first token within the group, first KV slot
//   item (2 words): group, first row
@group(0) @binding(0) var<storage, read> q_in: array<elem4>;      // [query][qHead][d]
@group(0) @binding(1) var<storage, read> k_in: array<elem4>;      // [slot][kvHead][d]
@group(0) @binding(2) var<storage, read> v_in: array<elem4>;      // [slot][kvHead][d]
@group(0) @binding(3) var<storage, read> md: array<u32>;
@group(0) @binding(4) var<storage, read_write> partial_o: array<vec4<f32>>; // [partial][qHead][d]
@group(0) @binding(5) var<storage, read_write> partial_lse: array<f32>;     // [partial][qHead]

var<workgroup> kv_sh: array<vec4<f32>, KV_SIZE>;  // K chunk [dim][lane], then V slice [key][dim]
var<workgroup> qp_sh: array<vec4<f32>, QP_SIZE>;  // Q chunk [dim][row group], then P [key][rg]
var<workgroup> red_sh: array<vec4<f32>, 128u>;    // [row group][lane]: row maxima of a sub-tile
var<workgroup> m_sh: array<vec4<f32>, 32u>;       // [2][row group]: running row max
var<workgroup> alpha_sh: array<vec4<f32>, 16u>;   // [row group]: rescale factor of the sub-tile
var<workgroup> slot_sh: array<i32, 2u * KEYS>;    // [2][key]: KV slot, -1 past the group
var<workgroup> mask_sh: array<u32, 2u * MAXW * KEYS>; // [2][word][key]
var<workgroup> rowq_sh: array<u32, ROWS>;         // Q offset (vec4) of each row

struct Group {
  tokens: u32,
  seg_begin: u32,
  seg_end: u32,
  q_begin: u32,
  q_count: u32,
  mask_words: u32,
  mask_off: u32,
}

fn load_group(g: u32) -> Group {
  let b = md[0] + 8u * g;
  return Group(md[b], md[b + 1u], md[b + 2u], md[b + 3u], md[b + 4u], md[b + 5u], md[b + 6u]);
}

// Row r (< 4) of row group rg.
fn row_of(rg: u32, r: u32) -> u32 {
  return (rg / 4u) * 16u + rg % 4u + 4u * r;
}

// o += p (x) v: column c of o gains p * v[c] (p: 4 rows, v: 4 keys or 4 dims).
fn outer(o: mat4x4<f32>, p: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(p, vec4<f32>(v.x), o[0]), fma(p, vec4<f32>(v.y), o[1]),
                     fma(p, vec4<f32>(v.z), o[2]), fma(p, vec4<f32>(v.w), o[3]));
}

// s += Q K^T over the 4 dims of vec4 v: Q and K are staged transposed, one vec4 per dim.
fn scores4(s: mat4x4<f32>, v: u32, rg: u32, sub: u32) -> mat4x4<f32> {
  let d = 4u * v;
  return outer(outer(outer(outer(s, qp_sh[d * 16u + rg], kv_sh[d * 8u + sub]),
                                qp_sh[(d + 1u) * 16u + rg], kv_sh[(d + 1u) * 8u + sub]),
                          qp_sh[(d + 2u) * 16u + rg], kv_sh[(d + 2u) * 8u + sub]),
               qp_sh[(d + 3u) * 16u + rg], kv_sh[(d + 3u) * 8u + sub]);
}

// o += P V for 4 keys (probabilities p0..p3) at V offset `at` (key stride V_STRIDE).
fn pv4(o: mat4x4<f32>, p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>, p3: vec4<f32>,
       at: u32) -> mat4x4<f32> {
  return outer(outer(outer(outer(o, p0, kv_sh[at]), p1, kv_sh[at + V_STRIDE]),
                     p2, kv_sh[at + 2u * V_STRIDE]), p3, kv_sh[at + 3u * V_STRIDE]);
}

// Resolves the KV slot (and mask words) of key `lid` of sub-tile `kt` into buffer `buf`. The segment
// is found by a binary search with a fixed ceil(log2(segments)) steps.
fn fill_keys(gr: Group, kt: u32, buf: u32, lid: u32, w0: u32, nw: u32) {
  if (lid >= KEYS) { return; }
  let t = kt * KEYS + lid;
  if (t >= gr.tokens) {
    slot_sh[buf * KEYS + lid] = -1;
    return;
  }
  let segs = md[1];
  var lo = gr.seg_begin;
  var n = gr.seg_end - gr.seg_begin;
  while (n > 1u) {
    let half = n / 2u;
    if (md[segs + 2u * (lo + half)] <= t) { lo += half; }
    n -= half;
  }
  slot_sh[buf * KEYS + lid] = i32(md[segs + 2u * lo + 1u] + (t - md[segs + 2u * lo]));
  // MAXW = 2 words, unrolled (see the note on loop counts in main).
  if (nw > 0u) { mask_sh[buf * MAXW * KEYS + lid] = md[gr.mask_off + w0 * gr.tokens + t]; }
  if (nw > 1u) {
    mask_sh[(buf * MAXW + 1u) * KEYS + lid] = md[gr.mask_off + (w0 + 1u) * gr.tokens + t];
  }
}

fn load_q(base: u32, v: u32) -> vec4<f32> {
  if (base == NO_ROW) { return vec4<f32>(0.0); }
  return vec4<f32>(q_in[base + v]);
}

fn load_kv(slot: i32, kvh: u32, v: u32, key: bool) -> vec4<f32> {
  if (slot < 0) { return vec4<f32>(0.0); }
  let at = (u32(slot) * KV_HEADS + kvh) * DV + v;
  if (key) { return vec4<f32>(k_in[at]); }
  return vec4<f32>(v_in[at]);
}

// Scaled scores of key j for the 4 rows, NEG where the key is past the group or masked out.
fn score(col: vec4<f32>, j: u32, buf: u32, masked: bool, mw: vec4<u32>, mb: vec4<u32>) -> vec4<f32> {
  var ok = vec4<bool>(slot_sh[buf * KEYS + j] >= 0);
  if (masked) {
    let at = buf * MAXW * KEYS + j;
    let w = vec4<u32>(mask_sh[at + mw.x * KEYS], mask_sh[at + mw.y * KEYS],
                      mask_sh[at + mw.z * KEYS], mask_sh[at + mw.w * KEYS]);
    ok = ok & (((w >> mb) & vec4<u32>(1u)) != vec4<u32>(0u));
  }
  return select(vec4<f32>(NEG), col * SCALE, ok);
}

fn prob(s: vec4<f32>, m: vec4<f32>) -> vec4<f32> {
  return select(vec4<f32>(0.0), exp(s - m), s > vec4<f32>(NEG));
}

// True when lane `sub` owns dim vec4 `sub + 8 j` (always, for head dims that are multiples of 32).
fn has_dims(sub: u32, j: u32) -> bool {
  return NV > j && (DV % 8u == 0u || sub + 8u * j < DV);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * nwg.x;
  let item_count = md[4];
  if (flat >= item_count * KV_HEADS) { return; }
  // KV head major: the row tiles of one (group, KV head) run side by side and share the KV in L2.
  let kvh = flat / item_count;
  let item = md[3] + 2u * (flat % item_count);
  let gr = load_group(md[item]);
  let row_start = md[item + 1u];
  let rows = min(ROWS, gr.q_count * GROUP - row_start);
  let masked = gr.mask_words != 0u;
  let w0 = row_start / GROUP / 32u;
  var nw = 0u;
  if (masked) { nw = min((row_start + rows - 1u) / GROUP / 32u, gr.mask_words - 1u) - w0 + 1u; }

  let sub = lid % 8u;
  let rg = lid / 8u;
  let busy = (lid / 32u) * 16u < rows;

  if (lid < ROWS) {
    var base = NO_ROW;
    if (lid < rows) {
      let r = row_start + lid;
      let query = md[md[2] + gr.q_begin + r / GROUP];
      base = (query * Q_HEADS + kvh * GROUP + r % GROUP) * DV;
    }
    rowq_sh[lid] = base;
  }
  if (lid < 32u) { m_sh[lid] = vec4<f32>(NEG); }
  // Mask word (relative to w0, clamped for padding rows) and bit of each of this lane's rows.
  let lq = (vec4<u32>(row_start) + vec4<u32>(row_of(rg, 0u), row_of(rg, 1u), row_of(rg, 2u),
                                               row_of(rg, 3u))) / GROUP;
  let mw = min(lq / 32u - vec4<u32>(w0), vec4<u32>(MAXW - 1u));
  let mb = lq % 32u;

  var o0 = mat4x4<f32>();
  var o1 = mat4x4<f32>();
  var o2 = mat4x4<f32>();
  var o3 = mat4x4<f32>();
  var o4 = mat4x4<f32>();
  var o5 = mat4x4<f32>();
  var o6 = mat4x4<f32>();
  var o7 = mat4x4<f32>();
  var l = vec4<f32>(0.0);
  // Loops step 4 keys or 4 dims at a time: fewer iterations for the compiler to schedule, and
  // Mesa's llvmpipe ends a shader after 65535 loop iterations in all (see groupLoopIterations).
  let tiles = (gr.tokens + KEYS - 1u) / KEYS;
  fill_keys(gr, 0u, 0u, lid, w0, nw);
  workgroupBarrier();

  for (var kt = 0u; kt < tiles; kt++) {
    let buf = kt & 1u;
    if (kt + 1u < tiles) { fill_keys(gr, kt + 1u, buf ^ 1u, lid, w0, nw); }

    // Scores S = Q K^T (4 rows x 4 keys per lane), over the head dim in chunks of CHUNK_V vec4.
    var s = mat4x4<f32>();
    for (var c = 0u; c < CHUNKS; c++) {
      let cv = min(CHUNK_V, DV - c * CHUNK_V);
      // Q chunk, transposed: qp_sh[dim * 16 + row group] holds the group's 4 rows.
      for (var e = lid; e < 16u * CHUNK_V; e += WG) {
        let g = e % 16u;
        let v = e / 16u;
        if (v < cv) {
          let t0 = load_q(rowq_sh[row_of(g, 0u)], c * CHUNK_V + v);
          let t1 = load_q(rowq_sh[row_of(g, 1u)], c * CHUNK_V + v);
          let t2 = load_q(rowq_sh[row_of(g, 2u)], c * CHUNK_V + v);
          let t3 = load_q(rowq_sh[row_of(g, 3u)], c * CHUNK_V + v);
          qp_sh[(4u * v) * 16u + g] = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
          qp_sh[(4u * v + 1u) * 16u + g] = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
          qp_sh[(4u * v + 2u) * 16u + g] = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
          qp_sh[(4u * v + 3u) * 16u + g] = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
        }
      }
      // K chunk, transposed: kv_sh[dim * 8 + lane] holds keys lane, lane + 8, + 16, + 24.
      for (var e = lid; e < 8u * CHUNK_V; e += WG) {
        let k = e % 8u;
        let v = e / 8u;
        if (v < cv) {
          let t0 = load_kv(slot_sh[buf * KEYS + k], kvh, c * CHUNK_V + v, true);
          let t1 = load_kv(slot_sh[buf * KEYS + k + 8u], kvh, c * CHUNK_V + v, true);
          let t2 = load_kv(slot_sh[buf * KEYS + k + 16u], kvh, c * CHUNK_V + v, true);
          let t3 = load_kv(slot_sh[buf * KEYS + k + 24u], kvh, c * CHUNK_V + v, true);
          kv_sh[(4u * v) * 8u + k] = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
          kv_sh[(4u * v + 1u) * 8u + k] = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
          kv_sh[(4u * v + 2u) * 8u + k] = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
          kv_sh[(4u * v + 3u) * 8u + k] = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
        }
      }
      workgroupBarrier();
      if (busy) {
        for (var v = 0u; v < cv; v++) { s = scores4(s, v, rg, sub); }
      }
      workgroupBarrier();
    }

    // Scale and mask; this lane's row maxima.
    if (busy) {
      s = mat4x4<f32>(score(s[0], sub, buf, masked, mw, mb),
                      score(s[1], sub + 8u, buf, masked, mw, mb),
                      score(s[2], sub + 16u, buf, masked, mw, mb),
                      score(s[3], sub + 24u, buf, masked, mw, mb));
      red_sh[rg * 8u + sub] = max(max(s[0], s[1]), max(s[2], s[3]));
    }
    workgroupBarrier();

    // Online softmax: new row max, probabilities P (stored [key][row group]) and the rescale
    // factor of the running sums. A row that has seen no key keeps m = NEG and p = 0.
    if (busy) {
      let m_old = m_sh[buf * 16u + rg];
      let r = rg * 8u;
      let m_new = max(m_old, max(max(max(red_sh[r], red_sh[r + 1u]), max(red_sh[r + 2u], red_sh[r + 3u])),
                                 max(max(red_sh[r + 4u], red_sh[r + 5u]), max(red_sh[r + 6u], red_sh[r + 7u]))));
      qp_sh[sub * 16u + rg] = prob(s[0], m_new);
      qp_sh[(sub + 8u) * 16u + rg] = prob(s[1], m_new);
      qp_sh[(sub + 16u) * 16u + rg] = prob(s[2], m_new);
      qp_sh[(sub + 24u) * 16u + rg] = prob(s[3], m_new);
      if (sub == 0u) {
        m_sh[(buf ^ 1u) * 16u + rg] = m_new;
        alpha_sh[rg] = exp(m_old - m_new);
      }
    }

    // O = O * alpha + P V, V staged in slices of V_KEYS keys; padded keys are skipped.
    let left = gr.tokens - kt * KEYS;
    for (var vs = 0u; vs < KEYS; vs += V_KEYS) {
      if (vs > 0u) { workgroupBarrier(); }
      for (var e = lid; e < V_KEYS * DV; e += WG) {
        let j = e / DV;
        let v = e % DV;
        kv_sh[j * V_STRIDE + v] = load_kv(slot_sh[buf * KEYS + vs + j], kvh, v, false);
      }
      workgroupBarrier();
      if (busy) {
        if (vs == 0u) {
          let al = alpha_sh[rg];
          l *= al;
          o0 = mat4x4<f32>(o0[0] * al, o0[1] * al, o0[2] * al, o0[3] * al);
          if (has_dims(sub, 1u)) { o1 = mat4x4<f32>(o1[0] * al, o1[1] * al, o1[2] * al, o1[3] * al); }
          if (has_dims(sub, 2u)) { o2 = mat4x4<f32>(o2[0] * al, o2[1] * al, o2[2] * al, o2[3] * al); }
          if (has_dims(sub, 3u)) { o3 = mat4x4<f32>(o3[0] * al, o3[1] * al, o3[2] * al, o3[3] * al); }
          if (has_dims(sub, 4u)) { o4 = mat4x4<f32>(o4[0] * al, o4[1] * al, o4[2] * al, o4[3] * al); }
          if (has_dims(sub, 5u)) { o5 = mat4x4<f32>(o5[0] * al, o5[1] * al, o5[2] * al, o5[3] * al); }
          if (has_dims(sub, 6u)) { o6 = mat4x4<f32>(o6[0] * al, o6[1] * al, o6[2] * al, o6[3] * al); }
          if (has_dims(sub, 7u)) { o7 = mat4x4<f32>(o7[0] * al, o7[1] * al, o7[2] * al, o7[3] * al); }
        }
        // Keys in steps of 4 (P and V of padded keys are 0).
        let kn = select(0u, min(V_KEYS, left - vs), left > vs);
        for (var j = 0u; j < kn; j += 4u) {
          let pb = (vs + j) * 16u + rg;
          let p0 = qp_sh[pb];
          let p1 = qp_sh[pb + 16u];
          let p2 = qp_sh[pb + 32u];
          let p3 = qp_sh[pb + 48u];
          l += (p0 + p1) + (p2 + p3);
          let vb = j * V_STRIDE + sub;
          if (has_dims(sub, 0u)) { o0 = pv4(o0, p0, p1, p2, p3, vb); }
          if (has_dims(sub, 1u)) { o1 = pv4(o1, p0, p1, p2, p3, vb + 8u); }
          if (has_dims(sub, 2u)) { o2 = pv4(o2, p0, p1, p2, p3, vb + 16u); }
          if (has_dims(sub, 3u)) { o3 = pv4(o3, p0, p1, p2, p3, vb + 24u); }
          if (has_dims(sub, 4u)) { o4 = pv4(o4, p0, p1, p2, p3, vb + 32u); }
          if (has_dims(sub, 5u)) { o5 = pv4(o5, p0, p1, p2, p3, vb + 40u); }
          if (has_dims(sub, 6u)) { o6 = pv4(o6, p0, p1, p2, p3, vb + 48u); }
          if (has_dims(sub, 7u)) { o7 = pv4(o7, p0, p1, p2, p3, vb + 56u); }
        }
      }
    }
    workgroupBarrier();
  }

  // Normalised partials and their lse; a row that saw no key writes o = 0 and lse = NEG
  // (EMPTY_LSE). Transposed, row r of a lane is column r of each t.
  if (busy) {
    let inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
    let lse = select(vec4<f32>(NEG), m_sh[(tiles & 1u) * 16u + rg] + log(l), l > vec4<f32>(0.0));
    let t0 = transpose(o0);
    let t1 = transpose(o1);
    let t2 = transpose(o2);
    let t3 = transpose(o3);
    let t4 = transpose(o4);
    let t5 = transpose(o5);
    let t6 = transpose(o6);
    let t7 = transpose(o7);
    for (var r = 0u; r < 4u; r++) {
      let row = row_of(rg, r);
      if (row >= rows) { continue; }
      let g_row = row_start + row;
      let out_row = (gr.q_begin + g_row / GROUP) * Q_HEADS + kvh * GROUP + g_row % GROUP;
      let ob = out_row * DV + sub;
      let f = inv[r];
      if (has_dims(sub, 0u)) { partial_o[ob] = t0[r] * f; }
      if (has_dims(sub, 1u)) { partial_o[ob + 8u] = t1[r] * f; }
      if (has_dims(sub, 2u)) { partial_o[ob + 16u] = t2[r] * f; }
      if (has_dims(sub, 3u)) { partial_o[ob + 24u] = t3[r] * f; }
      if (has_dims(sub, 4u)) { partial_o[ob + 32u] = t4[r] * f; }
      if (has_dims(sub, 5u)) { partial_o[ob + 40u] = t5[r] * f; }
      if (has_dims(sub, 6u)) { partial_o[ob + 48u] = t6[r] * f; }
      if (has_dims(sub, 7u)) { partial_o[ob + 56u] = t7[r] * f; }
      if (sub == 0u) { partial_lse[out_row] = lse[r]; }
    }
  }
}

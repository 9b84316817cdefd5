// Group attention: stage 1 of DeFT's two-stage kernel (DeFT paper, section 3.5), generic over how
// the KV is grouped. A group is a list of KV tokens (one pool slot per token), a list of queries and
// an optional KV-side bit mask. One workgroup handles one work item (a group and a tile of ROWS
// rows, where a row is a (query, q-head) pair of one GQA group) for one KV head; it streams the
// group's KV in sub-tiles of KEYS tokens through workgroup memory with an online softmax and writes
// one normalised partial (o, lse) per (query, q-head) of its rows.
//
// Threads: WG threads; RG = ROWS / 4 row groups of 4 rows, L = WG / RG lanes per row group (sub =
// lane % L). Warp w owns RPW = 128 / L consecutive rows, so a warp whose rows are all padding skips
// the math. Row group rg holds rows (rg / RGW) * RPW + rg % RGW + RGW * r (r < 4) as the 4
// components of its vectors. Score phase: 4 rows x 4 NK keys per lane (key quads sub + L j, a
// quad q holding keys q, q + KQ, q + 2 KQ, q + 3 KQ) in mat4x4 s0, s1 (column = key). PV phase:
// 4 rows x NV vec4 of dims (sub + L j) in mat4x4 o0..o7 (column = dim). Both are outer products of
// two vec4 read from workgroup memory, so the inner loops are pure fma. Accumulators are named
// matrices, never arrays indexed in loops, so that they stay in registers.
//
// Workgroup memory: Q^T [dim][row group] (resident for the whole KV loop when Q_RES, in f16 when
// the loader says so, converted at use; else re-staged per sub-tile in chunks of CHUNK_V vec4 of
// dims), K^T [dim][key quad] in chunks of CHUNK_V, then V [key][dim] in slices of V_KEYS keys (K
// and V share one buffer), P [key][row group], the row maxima of the sub-tile, slots and mask
// words. K^T, V and P are f32, or f16 with `kvHalf` (kvelem4; converted to f32 where read), which
// halves their memory so that a sub-tile fits in fewer K chunks and V slices (one each for the f16
// default tile). K and V (and a non-resident Q chunk) are software-pipelined: the global loads of
// the next stage are issued into registers right after a barrier and written to workgroup memory
// after the current stage's math, so their latency hides behind the math. With CHUNKS = V_SLICES =
// 1 a sub-tile costs 4 barriers: K stored | scores, row maxima | P, V stored | PV | next K; more
// chunks and slices cost more (4 K chunks and 2 V slices with Q re-staged: 13, docs/performance.md
// run 32; the tile `tune` chose on the H200's Deno runtime, t128-r64-k64 at 24 KiB, stages that
// split).
//
// Mesa's llvmpipe ends a shader after 65535 loop iterations in all; the loader counts this
// kernel's loops (groupLoopIterations) and refuses groups that would reach the limit. Staging uses
// no loops for that reason (a fixed number of named registers per thread).
//
// The TypeScript loader (group_attention.ts) rewrites the `alias` and `const` lines below for the
// shape, dtype and tile; the values here are only a valid default.

alias elem4 = vec4<f32>;  // Q, K, V storage
alias qelem4 = vec4<f32>; // Q in workgroup memory
alias kvelem4 = vec4<f32>; // K^T, V and P in workgroup memory (f16 with `kvHalf`)

const HEAD_DIM: u32 = 128u;
const Q_HEADS: u32 = 8u;
const KV_HEADS: u32 = 2u;
const WG: u32 = 128u;       // threads
const ROWS: u32 = 64u;      // rows per tile
const KEYS: u32 = 32u;      // keys per sub-tile
const Q_RES: bool = false;  // Q resident in workgroup memory for the whole KV loop
const CHUNK_V: u32 = 8u;    // vec4 of head dim per staged K (and non-resident Q) chunk
const V_KEYS: u32 = 16u;    // keys per staged V slice
const MAXW: u32 = 2u;       // mask words a row tile can span
const Q_SIZE: u32 = 512u;   // qelem4: Q^T (resident: all dims, else one chunk)
const KV_SIZE: u32 = 528u;  // vec4: max(K chunk, V slice)
const SCALE: f32 = 0.08838834764831845;

const GROUP: u32 = Q_HEADS / KV_HEADS;
const DV: u32 = HEAD_DIM / 4u;
const RG: u32 = ROWS / 4u;          // row groups
const L: u32 = WG / RG;             // lanes per row group
const RGW: u32 = 32u / L;           // row groups per warp
const RPW: u32 = 4u * RGW;          // rows per warp
const KQ: u32 = KEYS / 4u;          // key quads per sub-tile
const NK: u32 = KQ / L;             // key quads per lane in the score phase (1 or 2)
const NV: u32 = (DV + L - 1u) / L;  // dim vec4 per lane in the PV phase (at most 8)
const CHUNKS: u32 = (DV + CHUNK_V - 1u) / CHUNK_V;
const V_SLICES: u32 = KEYS / V_KEYS;
const V_STRIDE: u32 = DV + 1u;      // odd (in vec4) for head dims that are multiples of 8
const NKI: u32 = (KQ * CHUNK_V + WG - 1u) / WG;   // K chunk elements (4 loads) per thread, <= 2
const NQI: u32 = (RG * CHUNK_V + WG - 1u) / WG;   // Q chunk elements (4 loads) per thread, <= 2
const NVI: u32 = (V_KEYS * DV + WG - 1u) / WG;    // V slice loads per thread, <= 8
const NE: u32 = ((1u + MAXW) * KEYS + WG - 1u) / WG; // slot and mask words per thread, <= 2
const NO_ROW: u32 = 0xffffffffu;
const NEG: f32 = -3.0e38; // stands for -inf (WGSL has no infinity literal); also EMPTY_LSE

// md (metadata): a header, the work items, then the sections they point to (u32; see
// packGroupMeta).
//   header (8 words): [0] item count, [1] queries offset, unused x 6
//   item (8 words, from word 8): first row, tokens, first slot word (absolute), query begin, query
//                                count, mask words per token, mask offset (absolute, layout
//                                [word][token]), group
//   slots: the KV pool slot of every token of every group
//   queries: the query ids of every group
//   mask: the KV-side mask words of every masked group
@group(0) @binding(0) var<storage, read> q_in: array<elem4>;      // [query][qHead][d]
@group(0) @binding(1) var<storage, read> k_in: array<elem4>;      // [slot][kvHead][d]
@group(0) @binding(2) var<storage, read> v_in: array<elem4>;      // [slot][kvHead][d]
@group(0) @binding(3) var<storage, read> md: array<u32>;
@group(0) @binding(4) var<storage, read_write> partial_o: array<vec4<f32>>; // [partial][qHead][d]
@group(0) @binding(5) var<storage, read_write> partial_lse: array<f32>;     // [partial][qHead]

var<workgroup> q_sh: array<qelem4, Q_SIZE>;      // Q^T [dim][row group]
var<workgroup> kv_sh: array<kvelem4, KV_SIZE>; // K^T chunk [dim][key quad], then V [key][dim]
var<workgroup> p_sh: array<kvelem4, KEYS * RG>; // P [key][row group]
var<workgroup> red_sh: array<vec4<f32>, WG>;     // [row group][lane]: row maxima of a sub-tile
var<workgroup> slot_sh: array<i32, 2u * KEYS>;   // [2][key]: KV slot, -1 past the group
var<workgroup> mask_sh: array<u32, 2u * MAXW * KEYS>; // [2][word][key]
var<workgroup> rowq_sh: array<u32, ROWS>;        // Q offset (vec4) of each row

struct Group {
  row_start: u32,
  tokens: u32,
  slot_off: u32,
  q_begin: u32,
  q_count: u32,
  mask_words: u32,
  mask_off: u32,
}

// Four vec4 loaded together (4 rows or 4 keys at one vec4 of dims), held until stored transposed.
struct Quad {
  a: elem4,
  b: elem4,
  c: elem4,
  d: elem4,
}

fn zero_quad() -> Quad {
  return Quad(elem4(), elem4(), elem4(), elem4());
}

// The work item (and its group's record) at word b.
fn load_item(b: u32) -> Group {
  return Group(md[b], md[b + 1u], md[b + 2u], md[b + 3u], md[b + 4u], md[b + 5u], md[b + 6u]);
}

// Row r (< 4) of row group rg.
fn row_of(rg: u32, r: u32) -> u32 {
  return (rg / RGW) * RPW + rg % RGW + RGW * r;
}

// o += p (x) v: column c of o gains p * v[c] (p: 4 rows, v: 4 keys or 4 dims).
fn outer(o: mat4x4<f32>, p: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(p, vec4<f32>(v.x), o[0]), fma(p, vec4<f32>(v.y), o[1]),
                     fma(p, vec4<f32>(v.z), o[2]), fma(p, vec4<f32>(v.w), o[3]));
}

// Element i of the staged K^T or V, in f32.
fn kv_at(i: u32) -> vec4<f32> {
  return vec4<f32>(kv_sh[i]);
}

// o += P V for 4 keys (probabilities p0..p3) at V offset `at` (key stride V_STRIDE).
fn pv4(o: mat4x4<f32>, p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>, p3: vec4<f32>,
       at: u32) -> mat4x4<f32> {
  return outer(outer(outer(outer(o, p0, kv_at(at)), p1, kv_at(at + V_STRIDE)),
                     p2, kv_at(at + 2u * V_STRIDE)), p3, kv_at(at + 3u * V_STRIDE));
}

fn scaled(o: mat4x4<f32>, a: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(o[0] * a, o[1] * a, o[2] * a, o[3] * a);
}

// Entry e of the key table of sub-tile kt: e / KEYS = 0 is the KV slot of key e % KEYS (-1 past
// the group), e / KEYS = 1 + w its mask word w0 + w (0 when unused).
fn key_word(gr: Group, kt: u32, e: u32, w0: u32, nw: u32) -> u32 {
  let kind = e / KEYS;
  let t = kt * KEYS + e % KEYS;
  if (kind > MAXW) { return 0u; }
  if (t >= gr.tokens) { return select(0u, 0xffffffffu, kind == 0u); }
  if (kind == 0u) { return md[gr.slot_off + t]; }
  if (kind - 1u < nw) { return md[gr.mask_off + (w0 + kind - 1u) * gr.tokens + t]; }
  return 0u;
}

fn put_key_word(x: u32, e: u32, buf: u32) {
  let kind = e / KEYS;
  let key = e % KEYS;
  if (kind == 0u) {
    slot_sh[buf * KEYS + key] = bitcast<i32>(x);
  } else if (kind <= MAXW) {
    mask_sh[(buf * MAXW + kind - 1u) * KEYS + key] = x;
  }
}

// No load waits behind a branch (docs/performance.md, change 24): a padding row reads row 0 and a
// slot past the group slot 0, and zeros are selected after the load (slot 0 may be a hole that
// holds anything).
fn load_q(base: u32, v: u32) -> elem4 {
  let x = q_in[select(base, 0u, base == NO_ROW) + v];
  return select(x, elem4(), base == NO_ROW);
}

fn load_kv(slot: i32, kvh: u32, v: u32, key: bool) -> elem4 {
  let at = (u32(max(slot, 0)) * KV_HEADS + kvh) * DV + v;
  var x: elem4;
  if (key) { x = k_in[at]; } else { x = v_in[at]; }
  return select(elem4(), x, slot >= 0);
}

// K chunk c, element e: key quad e % KQ at dim vec4 e / KQ of the chunk (zeros outside).
fn load_kq(buf: u32, kvh: u32, c: u32, e: u32) -> Quad {
  let quad = e % KQ;
  let v = e / KQ;
  var r = zero_quad();
  let ok = v < CHUNK_V && c * CHUNK_V + v < DV;
  let s = buf * KEYS + quad;
  let dv = select(0u, c * CHUNK_V + v, ok);
  r.a = load_kv(select(-1, slot_sh[s], ok), kvh, dv, true);
  r.b = load_kv(select(-1, slot_sh[s + KQ], ok), kvh, dv, true);
  r.c = load_kv(select(-1, slot_sh[s + 2u * KQ], ok), kvh, dv, true);
  r.d = load_kv(select(-1, slot_sh[s + 3u * KQ], ok), kvh, dv, true);
  return r;
}

// Stores a K element transposed: kv_sh[dim * KQ + quad] holds the quad's 4 keys at one dim.
fn store_kq(r: Quad, e: u32) {
  let quad = e % KQ;
  let v = e / KQ;
  if (v < CHUNK_V) {
    let t0 = vec4<f32>(r.a);
    let t1 = vec4<f32>(r.b);
    let t2 = vec4<f32>(r.c);
    let t3 = vec4<f32>(r.d);
    let at = 4u * v * KQ + quad;
    kv_sh[at] = kvelem4(vec4<f32>(t0.x, t1.x, t2.x, t3.x));
    kv_sh[at + KQ] = kvelem4(vec4<f32>(t0.y, t1.y, t2.y, t3.y));
    kv_sh[at + 2u * KQ] = kvelem4(vec4<f32>(t0.z, t1.z, t2.z, t3.z));
    kv_sh[at + 3u * KQ] = kvelem4(vec4<f32>(t0.w, t1.w, t2.w, t3.w));
  }
}

// Q chunk c (dims of CHUNK_V vec4 from c * CHUNK_V; c = 0 and `span` = DV for resident Q),
// element e: row group e % RG at dim vec4 e / RG.
fn load_qq(c: u32, e: u32, span: u32) -> Quad {
  let g = e % RG;
  let v = e / RG;
  var r = zero_quad();
  let ok = v < span && c * span + v < DV;
  let dv = select(0u, c * span + v, ok);
  r.a = load_q(select(NO_ROW, rowq_sh[row_of(g, 0u)], ok), dv);
  r.b = load_q(select(NO_ROW, rowq_sh[row_of(g, 1u)], ok), dv);
  r.c = load_q(select(NO_ROW, rowq_sh[row_of(g, 2u)], ok), dv);
  r.d = load_q(select(NO_ROW, rowq_sh[row_of(g, 3u)], ok), dv);
  return r;
}

// Stores a Q element transposed: q_sh[dim * RG + g] holds the row group's 4 rows at one dim.
fn store_qq(r: Quad, e: u32, span: u32) {
  let g = e % RG;
  let v = e / RG;
  if (v < span) {
    let t0 = vec4<f32>(r.a);
    let t1 = vec4<f32>(r.b);
    let t2 = vec4<f32>(r.c);
    let t3 = vec4<f32>(r.d);
    let at = 4u * v * RG + g;
    q_sh[at] = qelem4(vec4<f32>(t0.x, t1.x, t2.x, t3.x));
    q_sh[at + RG] = qelem4(vec4<f32>(t0.y, t1.y, t2.y, t3.y));
    q_sh[at + 2u * RG] = qelem4(vec4<f32>(t0.z, t1.z, t2.z, t3.z));
    q_sh[at + 3u * RG] = qelem4(vec4<f32>(t0.w, t1.w, t2.w, t3.w));
  }
}

// V slice vs, element e: key e / DV of the slice at dim vec4 e % DV.
fn load_v(buf: u32, kvh: u32, vs: u32, e: u32) -> elem4 {
  let key = e / DV;
  let slot = slot_sh[buf * KEYS + vs * V_KEYS + min(key, V_KEYS - 1u)];
  return load_kv(select(-1, slot, key < V_KEYS), kvh, e % DV, false);
}

fn store_v(x: elem4, e: u32) {
  let key = e / DV;
  if (key < V_KEYS) { kv_sh[key * V_STRIDE + e % DV] = kvelem4(x); }
}

fn q_at(dim: u32, rg: u32) -> vec4<f32> {
  return vec4<f32>(q_sh[dim * RG + rg]);
}

// s += Q K^T over the 4 dims of vec4 `v` of the staged chunk, for key quad `quad`.
fn scores4(s: mat4x4<f32>, q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>,
           v: u32, quad: u32) -> mat4x4<f32> {
  let at = 4u * v * KQ + quad;
  return outer(outer(outer(outer(s, q0, kv_at(at)), q1, kv_at(at + KQ)),
                     q2, kv_at(at + 2u * KQ)), q3, kv_at(at + 3u * KQ));
}

// Scaled scores of key `key` for the 4 rows, NEG where the key is past the group or masked out.
fn score(col: vec4<f32>, key: u32, buf: u32, masked: bool, mw: vec4<u32>, mb: vec4<u32>) -> vec4<f32> {
  var ok = vec4<bool>(slot_sh[buf * KEYS + key] >= 0);
  if (masked) {
    let at = buf * MAXW * KEYS + key;
    let w = vec4<u32>(mask_sh[at + mw.x * KEYS], mask_sh[at + mw.y * KEYS],
                      mask_sh[at + mw.z * KEYS], mask_sh[at + mw.w * KEYS]);
    ok = ok & (((w >> mb) & vec4<u32>(1u)) != vec4<u32>(0u));
  }
  return select(vec4<f32>(NEG), col * SCALE, ok);
}

fn mask_scores(s: mat4x4<f32>, quad: u32, buf: u32, masked: bool, mw: vec4<u32>,
               mb: vec4<u32>) -> mat4x4<f32> {
  return mat4x4<f32>(score(s[0], quad, buf, masked, mw, mb),
                     score(s[1], quad + KQ, buf, masked, mw, mb),
                     score(s[2], quad + 2u * KQ, buf, masked, mw, mb),
                     score(s[3], quad + 3u * KQ, buf, masked, mw, mb));
}

fn prob(s: vec4<f32>, m: vec4<f32>) -> vec4<f32> {
  return select(vec4<f32>(0.0), exp(s - m), s > vec4<f32>(NEG));
}

// P of key quad `quad` to p_sh[key][row group].
fn store_p(s: mat4x4<f32>, m: vec4<f32>, quad: u32, rg: u32) {
  p_sh[quad * RG + rg] = kvelem4(prob(s[0], m));
  p_sh[(quad + KQ) * RG + rg] = kvelem4(prob(s[1], m));
  p_sh[(quad + 2u * KQ) * RG + rg] = kvelem4(prob(s[2], m));
  p_sh[(quad + 3u * KQ) * RG + rg] = kvelem4(prob(s[3], m));
}

fn row_max(s: mat4x4<f32>) -> vec4<f32> {
  return max(max(s[0], s[1]), max(s[2], s[3]));
}

// True when lane `sub` owns dim vec4 `sub + L j` (always, for head dims that are multiples of 4 L).
fn has_dims(sub: u32, j: u32) -> bool {
  return NV > j && (DV % L == 0u || sub + L * j < DV);
}

// Writes row r of row group rg: o (dims sub + L j in a0..a7) times f, and its lse.
fn emit(gr: Group, kvh: u32, row_start: u32, rows: u32, rg: u32, sub: u32, r: u32, f: f32,
        lse: f32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>,
        a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>) {
  let row = row_of(rg, r);
  if (row >= rows) { return; }
  let g_row = row_start + row;
  let out_row = (gr.q_begin + g_row / GROUP) * Q_HEADS + (kvh * GROUP + g_row % GROUP);
  let ob = out_row * DV + sub;
  if (has_dims(sub, 0u)) { partial_o[ob] = a0 * f; }
  if (has_dims(sub, 1u)) { partial_o[ob + L] = a1 * f; }
  if (has_dims(sub, 2u)) { partial_o[ob + 2u * L] = a2 * f; }
  if (has_dims(sub, 3u)) { partial_o[ob + 3u * L] = a3 * f; }
  if (has_dims(sub, 4u)) { partial_o[ob + 4u * L] = a4 * f; }
  if (has_dims(sub, 5u)) { partial_o[ob + 5u * L] = a5 * f; }
  if (has_dims(sub, 6u)) { partial_o[ob + 6u * L] = a6 * f; }
  if (has_dims(sub, 7u)) { partial_o[ob + 7u * L] = a7 * f; }
  if (sub == 0u) { partial_lse[out_row] = lse; }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * nwg.x;
  let item_count = md[0];
  if (flat >= item_count * KV_HEADS) { return; }
  // KV head major: the row tiles of one (group, KV head) run side by side and share the KV in L2.
  let kvh = flat / item_count;
  let gr = load_item(8u + 8u * (flat % item_count));
  let row_start = gr.row_start;
  let rows = min(ROWS, gr.q_count * GROUP - row_start);
  let masked = gr.mask_words != 0u;
  let w0 = row_start / GROUP / 32u;
  var nw = 0u;
  if (masked) { nw = min((row_start + rows - 1u) / GROUP / 32u, gr.mask_words - 1u) - w0 + 1u; }

  let sub = lid % L;
  let rg = lid / L;
  let busy = (lid / 32u) * RPW < rows;

  if (lid < ROWS) {
    var base = NO_ROW;
    if (lid < rows) {
      let r = row_start + lid;
      let query = md[md[1] + gr.q_begin + r / GROUP];
      base = (query * Q_HEADS + kvh * GROUP + r % GROUP) * DV;
    }
    rowq_sh[lid] = base;
  }
  let tiles = (gr.tokens + KEYS - 1u) / KEYS;
  put_key_word(key_word(gr, 0u, lid, w0, nw), lid, 0u);
  if (NE > 1u) { put_key_word(key_word(gr, 0u, lid + WG, w0, nw), lid + WG, 0u); }
  workgroupBarrier();

  // Prefetch: the first K (and Q) chunk; a resident Q is staged meanwhile.
  var kq0 = load_kq(0u, kvh, 0u, lid);
  var kq1 = zero_quad();
  if (NKI > 1u) { kq1 = load_kq(0u, kvh, 0u, lid + WG); }
  var qq0 = zero_quad();
  var qq1 = zero_quad();
  if (Q_RES) {
    // Q of the whole tile, transposed, once; 4 elements per thread in flight at a time.
    for (var e = lid; e < RG * DV; e += 4u * WG) {
      let a = load_qq(0u, e, DV);
      let b = load_qq(0u, e + WG, DV);
      let c = load_qq(0u, e + 2u * WG, DV);
      let d = load_qq(0u, e + 3u * WG, DV);
      store_qq(a, e, DV);
      store_qq(b, e + WG, DV);
      store_qq(c, e + 2u * WG, DV);
      store_qq(d, e + 3u * WG, DV);
    }
  } else {
    qq0 = load_qq(0u, lid, CHUNK_V);
    if (NQI > 1u) { qq1 = load_qq(0u, lid + WG, CHUNK_V); }
  }
  var v0 = elem4();
  var v1 = elem4();
  var v2 = elem4();
  var v3 = elem4();
  var v4 = elem4();
  var v5 = elem4();
  var v6 = elem4();
  var v7 = elem4();

  var o0 = mat4x4<f32>();
  var o1 = mat4x4<f32>();
  var o2 = mat4x4<f32>();
  var o3 = mat4x4<f32>();
  var o4 = mat4x4<f32>();
  var o5 = mat4x4<f32>();
  var o6 = mat4x4<f32>();
  var o7 = mat4x4<f32>();
  var l = vec4<f32>(0.0);
  var m = vec4<f32>(NEG);

  for (var kt = 0u; kt < tiles; kt++) {
    let buf = kt & 1u;
    // The next sub-tile's slots and mask words: loaded now, stored after the score math.
    var nx0 = 0u;
    var nx1 = 0u;
    if (kt + 1u < tiles) {
      nx0 = key_word(gr, kt + 1u, lid, w0, nw);
      if (NE > 1u) { nx1 = key_word(gr, kt + 1u, lid + WG, w0, nw); }
    }

    // Scores S = Q K^T, over the head dim in CHUNKS chunks.
    var s0 = mat4x4<f32>();
    var s1 = mat4x4<f32>();
    for (var c = 0u; c < CHUNKS; c++) {
      store_kq(kq0, lid);
      if (NKI > 1u) { store_kq(kq1, lid + WG); }
      if (!Q_RES) {
        store_qq(qq0, lid, CHUNK_V);
        if (NQI > 1u) { store_qq(qq1, lid + WG, CHUNK_V); }
      }
      workgroupBarrier();
      if (c + 1u < CHUNKS) {
        kq0 = load_kq(buf, kvh, c + 1u, lid);
        if (NKI > 1u) { kq1 = load_kq(buf, kvh, c + 1u, lid + WG); }
        if (!Q_RES) {
          qq0 = load_qq(c + 1u, lid, CHUNK_V);
          if (NQI > 1u) { qq1 = load_qq(c + 1u, lid + WG, CHUNK_V); }
        }
      } else {
        v0 = load_v(buf, kvh, 0u, lid);
        if (NVI > 1u) { v1 = load_v(buf, kvh, 0u, lid + WG); }
        if (NVI > 2u) { v2 = load_v(buf, kvh, 0u, lid + 2u * WG); }
        if (NVI > 3u) { v3 = load_v(buf, kvh, 0u, lid + 3u * WG); }
        if (NVI > 4u) { v4 = load_v(buf, kvh, 0u, lid + 4u * WG); }
        if (NVI > 5u) { v5 = load_v(buf, kvh, 0u, lid + 5u * WG); }
        if (NVI > 6u) { v6 = load_v(buf, kvh, 0u, lid + 6u * WG); }
        if (NVI > 7u) { v7 = load_v(buf, kvh, 0u, lid + 7u * WG); }
      }
      if (busy) {
        let cv = select(min(CHUNK_V, DV - c * CHUNK_V), CHUNK_V, DV % CHUNK_V == 0u);
        let qd = select(0u, 4u * CHUNK_V * c, Q_RES);
        for (var v = 0u; v < cv; v++) {
          let d = qd + 4u * v;
          let q0 = q_at(d, rg);
          let q1 = q_at(d + 1u, rg);
          let q2 = q_at(d + 2u, rg);
          let q3 = q_at(d + 3u, rg);
          s0 = scores4(s0, q0, q1, q2, q3, v, sub);
          if (NK > 1u) { s1 = scores4(s1, q0, q1, q2, q3, v, sub + L); }
        }
      }
      if (c + 1u < CHUNKS) { workgroupBarrier(); }
    }
    if (kt + 1u < tiles) {
      put_key_word(nx0, lid, buf ^ 1u);
      if (NE > 1u) { put_key_word(nx1, lid + WG, buf ^ 1u); }
    }

    // Scale and mask; this lane's row maxima.
    if (busy) {
      // Mask word (relative to w0, clamped for padding rows) and bit of each of this lane's rows
      // (recomputed here rather than held in registers through the loop).
      let lq = (vec4<u32>(row_start) + vec4<u32>(row_of(rg, 0u), row_of(rg, 1u), row_of(rg, 2u),
                                                 row_of(rg, 3u))) / GROUP;
      let mw = min(lq / 32u - vec4<u32>(w0), vec4<u32>(MAXW - 1u));
      let mb = lq % 32u;
      s0 = mask_scores(s0, sub, buf, masked, mw, mb);
      var mx = row_max(s0);
      if (NK > 1u) {
        s1 = mask_scores(s1, sub + L, buf, masked, mw, mb);
        mx = max(mx, row_max(s1));
      }
      red_sh[rg * L + sub] = mx;
    }
    workgroupBarrier();

    // Online softmax: new row max, probabilities P and the rescaled running sums. Every lane of a
    // row group computes the same max. A row that has seen no key keeps m = NEG and p = 0.
    if (busy) {
      var mt = red_sh[rg * L];
      for (var i = 1u; i < L; i++) { mt = max(mt, red_sh[rg * L + i]); }
      let m_new = max(m, mt);
      let al = exp(m - m_new);
      m = m_new;
      store_p(s0, m_new, sub, rg);
      if (NK > 1u) { store_p(s1, m_new, sub + L, rg); }
      l *= al;
      if (has_dims(sub, 0u)) { o0 = scaled(o0, al); }
      if (has_dims(sub, 1u)) { o1 = scaled(o1, al); }
      if (has_dims(sub, 2u)) { o2 = scaled(o2, al); }
      if (has_dims(sub, 3u)) { o3 = scaled(o3, al); }
      if (has_dims(sub, 4u)) { o4 = scaled(o4, al); }
      if (has_dims(sub, 5u)) { o5 = scaled(o5, al); }
      if (has_dims(sub, 6u)) { o6 = scaled(o6, al); }
      if (has_dims(sub, 7u)) { o7 = scaled(o7, al); }
    }

    // O += P V, V in V_SLICES slices; padded keys (P = 0, V = 0) are skipped 4 at a time.
    let left = gr.tokens - kt * KEYS;
    for (var vs = 0u; vs < V_SLICES; vs++) {
      if (vs > 0u) { workgroupBarrier(); }
      store_v(v0, lid);
      if (NVI > 1u) { store_v(v1, lid + WG); }
      if (NVI > 2u) { store_v(v2, lid + 2u * WG); }
      if (NVI > 3u) { store_v(v3, lid + 3u * WG); }
      if (NVI > 4u) { store_v(v4, lid + 4u * WG); }
      if (NVI > 5u) { store_v(v5, lid + 5u * WG); }
      if (NVI > 6u) { store_v(v6, lid + 6u * WG); }
      if (NVI > 7u) { store_v(v7, lid + 7u * WG); }
      workgroupBarrier();
      if (vs + 1u < V_SLICES) {
        v0 = load_v(buf, kvh, vs + 1u, lid);
        if (NVI > 1u) { v1 = load_v(buf, kvh, vs + 1u, lid + WG); }
        if (NVI > 2u) { v2 = load_v(buf, kvh, vs + 1u, lid + 2u * WG); }
        if (NVI > 3u) { v3 = load_v(buf, kvh, vs + 1u, lid + 3u * WG); }
        if (NVI > 4u) { v4 = load_v(buf, kvh, vs + 1u, lid + 4u * WG); }
        if (NVI > 5u) { v5 = load_v(buf, kvh, vs + 1u, lid + 5u * WG); }
        if (NVI > 6u) { v6 = load_v(buf, kvh, vs + 1u, lid + 6u * WG); }
        if (NVI > 7u) { v7 = load_v(buf, kvh, vs + 1u, lid + 7u * WG); }
      } else if (kt + 1u < tiles) {
        kq0 = load_kq(buf ^ 1u, kvh, 0u, lid);
        if (NKI > 1u) { kq1 = load_kq(buf ^ 1u, kvh, 0u, lid + WG); }
        if (!Q_RES) {
          qq0 = load_qq(0u, lid, CHUNK_V);
          if (NQI > 1u) { qq1 = load_qq(0u, lid + WG, CHUNK_V); }
        }
      }
      if (busy) {
        let base = vs * V_KEYS;
        let kn = select(0u, min(V_KEYS, left - base), left > base);
        for (var j = 0u; j < kn; j += 4u) {
          let pb = (base + j) * RG + rg;
          let p0 = vec4<f32>(p_sh[pb]);
          let p1 = vec4<f32>(p_sh[pb + RG]);
          let p2 = vec4<f32>(p_sh[pb + 2u * RG]);
          let p3 = vec4<f32>(p_sh[pb + 3u * RG]);
          l += (p0 + p1) + (p2 + p3);
          let vb = j * V_STRIDE + sub;
          if (has_dims(sub, 0u)) { o0 = pv4(o0, p0, p1, p2, p3, vb); }
          if (has_dims(sub, 1u)) { o1 = pv4(o1, p0, p1, p2, p3, vb + L); }
          if (has_dims(sub, 2u)) { o2 = pv4(o2, p0, p1, p2, p3, vb + 2u * L); }
          if (has_dims(sub, 3u)) { o3 = pv4(o3, p0, p1, p2, p3, vb + 3u * L); }
          if (has_dims(sub, 4u)) { o4 = pv4(o4, p0, p1, p2, p3, vb + 4u * L); }
          if (has_dims(sub, 5u)) { o5 = pv4(o5, p0, p1, p2, p3, vb + 5u * L); }
          if (has_dims(sub, 6u)) { o6 = pv4(o6, p0, p1, p2, p3, vb + 6u * L); }
          if (has_dims(sub, 7u)) { o7 = pv4(o7, p0, p1, p2, p3, vb + 7u * L); }
        }
      }
    }
    workgroupBarrier();
  }

  // Normalised partials and their lse; a row that saw no key writes o = 0 and lse = NEG
  // (EMPTY_LSE). Transposed, row r of a lane is column r of each t.
  if (busy) {
    let inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
    let lse = select(vec4<f32>(NEG), m + log(l), l > vec4<f32>(0.0));
    let t0 = transpose(o0);
    let t1 = transpose(o1);
    let t2 = transpose(o2);
    let t3 = transpose(o3);
    let t4 = transpose(o4);
    let t5 = transpose(o5);
    let t6 = transpose(o6);
    let t7 = transpose(o7);
    emit(gr, kvh, row_start, rows, rg, sub, 0u, inv.x, lse.x, t0[0], t1[0], t2[0], t3[0], t4[0],
         t5[0], t6[0], t7[0]);
    emit(gr, kvh, row_start, rows, rg, sub, 1u, inv.y, lse.y, t0[1], t1[1], t2[1], t3[1], t4[1],
         t5[1], t6[1], t7[1]);
    emit(gr, kvh, row_start, rows, rg, sub, 2u, inv.z, lse.z, t0[2], t1[2], t2[2], t3[2], t4[2],
         t5[2], t6[2], t7[2]);
    emit(gr, kvh, row_start, rows, rg, sub, 3u, inv.w, lse.w, t0[3], t1[3], t2[3], t3[3], t4[3],
         t5[3], t6[3], t7[3]);
  }
}

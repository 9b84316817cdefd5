// Flash-Decoding on a paged, tree-shaped KV cache: the sequence-based (Q-guided) baseline of the
// DeFT paper, section 2.1. Every query walks its own root-to-node KV, split into chunks; one
// workgroup per (chunk, KV head, head block) computes all HB query heads of that KV head's GQA
// group from a single read of the chunk's K and V, and writes the normalised partial o and its lse
// (or the final output when the query has one chunk; the host then binds `out` as `dst_o`).
//
// K and V go straight from global memory into registers (no staging in workgroup memory), and
// the chunk is walked in blocks of B keys with two barriers per block:
//   1. Scores. Thread (key kr of a pass, lane kl): L lanes share a key; lane kl reads the dim
//      quads kl, kl + L, ... of the key's K row (coalesced: the L lanes of a key read L adjacent
//      vec4s), and dots them with those quads of all HB heads (Q pre-scaled by log2(e)/sqrt(d),
//      in registers or in workgroup memory). The B keys of a block take PASSES = B / KPP passes,
//      unrolled, so each thread has PASSES x QC loads in flight. Per-lane partial dots (a vec4 of
//      heads) go to `wbuf` [key][lane] (rows padded by one vec4: no bank conflicts).
//   -- barrier --
//   2. Logits. Thread t < B sums the L partials of key t, stores the logits, and proposes a new
//      running max with a workgroup atomicMax only when a logit exceeds the current one by more
//      than THRESH (log2 units), i.e. almost never after the first block of a chunk. It writes
//      p = exp2(s - m) with the current max. Probabilities are then at most 2^THRESH: exact
//      softmax needs a common shift, not the maximum.
//   -- barrier --
//   3. Every thread reads the (possibly) new max. When it moved, accumulators and row sums are
//      rescaled and this block's probabilities are recomputed from the stored logits (in the
//      first block by the owners of the keys, plus one barrier; later, rarely, by the P·V threads
//      themselves).
//   4. P·V. Thread (key group vkg, dim quad vc): keys vkg, vkg + KG, ... of the block, one vec4 of
//      V each (a key group reads whole V rows, coalesced), accumulates p·v for all HB heads in
//      registers (optionally the V loads are issued before barrier 1, to overlap the scores).
// At the end the key groups' accumulators are merged in workgroup memory (a tree), the row sums
// of the B logit threads are added up, and thread (0, vc) writes o / l and the lse.
//
// Loops marked `// unroll` are unrolled by sequence.ts (`unrollWgsl`): their bounds are the
// constants below, so every register array is indexed by constants only, and no loop counter
// (Naga bounds every SPIR-V loop with one) sits in the inner loops. Blocks that lie inside one
// path segment and before the chunk end (almost all of them) run a copy of the block code without
// bounds checks or slot walks (`full` = 1).
//
// sequence.ts specialises the constants below (and the storage dtype) by string substitution.

alias KV4 = vec4<f32>;
const D4: u32 = 32u;         // head dim / 4
const KV_HEADS: u32 = 2u;
const Q_HEADS: u32 = 8u;
const GROUP: u32 = 4u;       // query heads per KV head
const HB: u32 = 4u;          // query heads per workgroup (divides GROUP)
const HB4: u32 = 1u;         // ceil(HB / 4): vec4s of heads
const HEAD_BLOCKS: u32 = 1u; // GROUP / HB
const WG: u32 = 256u;        // threads
const L: u32 = 8u;           // lanes per key in the score phase (power of two)
const QC: u32 = 4u;          // ceil(D4 / L): dim quads per lane
const KPP: u32 = 32u;        // WG / L: keys per score pass
const B: u32 = 128u;         // keys per block (a multiple of KPP, at most WG)
const PASSES: u32 = 4u;      // B / KPP
const KG: u32 = 8u;          // P·V key groups: min(floor(WG / D4), B)
const PVK: u32 = 16u;        // ceil(B / KG): keys per P·V thread and block
const Q_REGS: u32 = 1u;      // 1: each lane keeps its Q quads in registers; 0: read them from qs
const PREFETCH_V: u32 = 0u;  // 1: issue the block's V loads before barrier 1
const LANE_TAIL: u32 = 0u;   // 1 when L does not divide D4 (some lanes skip their last quad)
const PV_TAIL: u32 = 0u;     // 1 when KG does not divide B
const PV_IDLE: u32 = 0u;     // 1 when KG x D4 < WG (threads without a P·V key group)
const PROW: u32 = 9u;        // L x HB4 + 1: padded partial row, in vec4s
const MERGE: u32 = 512u;     // floor(KG / 2) x HB x D4: merge buffer, in vec4s
const WBUF: u32 = 1152u;     // max(B x PROW, MERGE + B x HB4)
const SCALE: f32 = 0.12751743074;  // log2(e) / sqrt(head dim)

const HBP: u32 = HB4 * 4u;
const THRESH: f32 = 8.0;     // log2 units: p <= 256 before the max moves
const NEG: f32 = -3.0e38;
const LN2: f32 = 0.6931471805599453;

// Bindings and slot_walk: sequence_common.wgsl, prepended by sequence.ts.

var<workgroup> wbuf: array<vec4<f32>, WBUF>;      // partial dots [key][PROW]; at the end the merge
var<workgroup> lg: array<vec4<f32>, B * HB4>;     // logits [key][HB4], log2 units
var<workgroup> pr: array<vec4<f32>, B * HB4>;     // probabilities [key][HB4]
var<workgroup> qs: array<vec4<f32>, HBP * D4 + L>; // scaled Q [head][D4] (+ padding for tail lanes)
var<workgroup> mxu: array<atomic<u32>, HBP>;      // running max per head, order-preserving bits

// Order-preserving map of f32 to u32 (for atomicMax) and back.
fn ord(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn unord(u: u32) -> f32 {
  return bitcast<f32>(select(~u, u & 0x7fffffffu, (u & 0x80000000u) != 0u));
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

  let kl = t % L;   // score lane
  let kr = t / L;   // score key within a pass
  let vc = t % D4;  // P·V dim quad
  let vkg = t / D4; // P·V key group
  let pv = PV_IDLE == 0u || vkg < KG;

  for (var e = t; e < HB * D4; e += WG) {
    qs[e] = vec4<f32>(q[(query * Q_HEADS + h0) * D4 + e]) * SCALE;
  }
  if (t < HB) { atomicStore(&mxu[t], ord(NEG)); }
  workgroupBarrier();
  var qr: array<vec4<f32>, HBP * QC>;
  if (Q_REGS == 1u) {
    for (var h = 0u; h < HB; h++) { // unroll
      for (var i = 0u; i < QC; i++) { // unroll
        if (LANE_TAIL == 0u || kl + i * L < D4) { qr[h * QC + i] = qs[h * D4 + kl + i * L]; }
      }
    }
  }

  var m: array<vec4<f32>, HB4>;    // running max per head (the same in every thread); padding 0
  var rsum: array<vec4<f32>, HB4>; // thread t < B: sum of p of key t of every block
  var acc: array<vec4<f32>, HBP>;  // P·V thread: sum of p·v over its keys, dims vc, per head
  for (var g = 0u; g < HB4; g++) { // unroll
    for (var hh = 0u; hh < 4u; hh++) { // unroll
      if (g * 4u + hh < HB) { m[g][hh] = NEG; }
    }
  }

  for (var bs = begin; bs < end; bs += B) {
    while (segs[cursor + 1u].x <= bs) { cursor++; }
    let seg = segs[cursor];
    let cursor_end = segs[cursor + 1u].x;
    let base = seg.y - seg.x; // slot = base + pos inside the segment (wrapping)
    let fast = bs + B <= min(end, cursor_end);
    let first = bs == begin;
    for (var full = 0u; full < 2u; full++) { // unroll
      if ((full == 1u) == fast) {
        // 1. Partial dots of the block's keys.
        for (var p = 0u; p < PASSES; p++) { // unroll
          let j = p * KPP + kr;
          let pos = bs + j;
          if (full == 1u || pos < end) {
            var slot = base + pos;
            if (full == 0u && pos >= cursor_end) { slot = slot_walk(pos, cursor); }
            let kb = (slot * KV_HEADS + kvh) * D4 + kl;
            var kv: array<vec4<f32>, QC>;
            for (var i = 0u; i < QC; i++) { // unroll
              if (LANE_TAIL == 0u || kl + i * L < D4) { kv[i] = vec4<f32>(k[kb + i * L]); }
            }
            for (var g = 0u; g < HB4; g++) { // unroll
              var s = vec4<f32>(0.0);
              for (var hh = 0u; hh < 4u; hh++) { // unroll
                if (g * 4u + hh < HB) {
                  var d = 0.0;
                  for (var i = 0u; i < QC; i++) { // unroll
                    if (Q_REGS == 1u) {
                      d += dot(kv[i], qr[(g * 4u + hh) * QC + i]);
                    } else {
                      d += dot(kv[i], qs[(g * 4u + hh) * D4 + kl + i * L]);
                    }
                  }
                  s[hh] = d;
                }
              }
              wbuf[j * PROW + kl * HB4 + g] = s;
            }
          }
        }
        var vp: array<KV4, PVK>;
        if (PREFETCH_V == 1u && pv) {
          for (var i = 0u; i < PVK; i++) { // unroll
            let j = vkg + i * KG;
            let pos = bs + j;
            if ((PV_TAIL == 0u || j < B) && (full == 1u || pos < end)) {
              var slot = base + pos;
              if (full == 0u && pos >= cursor_end) { slot = slot_walk(pos, cursor); }
              vp[i] = v[(slot * KV_HEADS + kvh) * D4 + vc];
            }
          }
        }
        workgroupBarrier();

        // 2. Logits and probabilities of key t; a new maximum only past THRESH.
        var sk: array<vec4<f32>, HB4>;
        var pk: array<vec4<f32>, HB4>;
        if (t < B) {
          let ok = full == 1u || bs + t < end;
          for (var g = 0u; g < HB4; g++) { // unroll
            var s = vec4<f32>(0.0);
            for (var l = 0u; l < L; l++) { // unroll
              s += wbuf[t * PROW + l * HB4 + g];
            }
            if (!ok) { s = vec4<f32>(NEG); }
            lg[t * HB4 + g] = s;
            let over = s > m[g] + THRESH;
            if (any(over)) {
              for (var hh = 0u; hh < 4u; hh++) { // unroll
                if (g * 4u + hh < HB) {
                  if (over[hh]) { atomicMax(&mxu[g * 4u + hh], ord(s[hh])); }
                }
              }
            }
            sk[g] = s;
            pk[g] = exp2(min(s - m[g], vec4<f32>(THRESH))); // (a key past THRESH is redone in 3.)
            pr[t * HB4 + g] = pk[g];
          }
        }
        workgroupBarrier();

        // 3. The running max after this block (every thread reads the same values).
        var changed = false;
        var alpha: array<vec4<f32>, HB4>;
        for (var g = 0u; g < HB4; g++) { // unroll
          var mn = m[g];
          for (var hh = 0u; hh < 4u; hh++) { // unroll
            if (g * 4u + hh < HB) { mn[hh] = unord(atomicLoad(&mxu[g * 4u + hh])); }
          }
          alpha[g] = vec4<f32>(1.0);
          if (any(mn != m[g])) {
            changed = true;
            alpha[g] = exp2(m[g] - mn);
            m[g] = mn;
          }
        }
        if (changed) {
          for (var h = 0u; h < HB; h++) { // unroll
            acc[h] *= alpha[h / 4u][h % 4u];
          }
          if (t < B) {
            for (var g = 0u; g < HB4; g++) { // unroll
              rsum[g] *= alpha[g];
              pk[g] = exp2(sk[g] - m[g]);
              if (first) { pr[t * HB4 + g] = pk[g]; }
            }
          }
        }
        for (var g = 0u; g < HB4; g++) { // unroll
          rsum[g] += pk[g];
        }
        if (first) { workgroupBarrier(); }
        let slow = changed && !first;

        // 4. P·V of key group vkg, dims vc.
        if (pv) {
          for (var sl = 0u; sl < 2u; sl++) { // unroll
            if ((sl == 1u) == slow) {
              for (var i = 0u; i < PVK; i++) { // unroll
                let j = vkg + i * KG;
                let pos = bs + j;
                if ((PV_TAIL == 0u || j < B) && (full == 1u || pos < end)) {
                  var vv: vec4<f32>;
                  if (PREFETCH_V == 1u) {
                    vv = vec4<f32>(vp[i]);
                  } else {
                    var slot = base + pos;
                    if (full == 0u && pos >= cursor_end) { slot = slot_walk(pos, cursor); }
                    vv = vec4<f32>(v[(slot * KV_HEADS + kvh) * D4 + vc]);
                  }
                  for (var g = 0u; g < HB4; g++) { // unroll
                    var pp: vec4<f32>;
                    if (sl == 1u) {
                      pp = exp2(lg[j * HB4 + g] - m[g]);
                    } else {
                      pp = pr[j * HB4 + g];
                    }
                    for (var hh = 0u; hh < 4u; hh++) { // unroll
                      if (g * 4u + hh < HB) {
                        acc[g * 4u + hh] = fma(vec4<f32>(pp[hh]), vv, acc[g * 4u + hh]);
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }

  // 5. Merge: row sums to wbuf[MERGE..], key groups' accumulators pairwise into key group 0.
  // (wbuf was last read before the last block's second barrier.)
  if (t < B) {
    for (var g = 0u; g < HB4; g++) { // unroll
      wbuf[MERGE + t * HB4 + g] = rsum[g];
    }
  }
  var n = KG;
  loop {
    if (n <= 1u) { break; }
    let half = (n + 1u) / 2u;
    if (pv && vkg >= half && vkg < n) {
      for (var h = 0u; h < HB; h++) { // unroll
        wbuf[((vkg - half) * HB + h) * D4 + vc] = acc[h];
      }
    }
    workgroupBarrier();
    if (pv && vkg < n - half) {
      for (var h = 0u; h < HB; h++) { // unroll
        acc[h] += wbuf[(vkg * HB + h) * D4 + vc];
      }
    }
    workgroupBarrier();
    n = half;
  }
  workgroupBarrier();
  if (pv && vkg == 0u) {
    var ls: array<vec4<f32>, HB4>;
    for (var i = 0u; i < B; i += 4u) {
      for (var u = 0u; u < 4u; u++) { // unroll
        for (var g = 0u; g < HB4; g++) { // unroll
          ls[g] += wbuf[MERGE + (i + u) * HB4 + g];
        }
      }
    }
    for (var h = 0u; h < HB; h++) { // unroll
      let l = ls[h / 4u][h % 4u];
      let row = chunk * Q_HEADS + h0 + h;
      dst_o[row * D4 + vc] = acc[h] / l;
      if (vc == 0u) { dst_lse[row] = (m[h / 4u][h % 4u] + log2(l)) * LN2; }
    }
  }
}

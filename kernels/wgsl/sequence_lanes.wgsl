// Flash-Decoding on a paged, tree-shaped KV cache without barriers in its loop: the `lanes` design
// of `sequence` (docs/performance.md, change 32). It takes the same chunks and bindings as
// sequence.wgsl: one workgroup per (chunk, KV head, head block) computes the HB query heads of
// that KV head's GQA group from a single read of the chunk's K and V, and writes the normalised
// partial o and its lse (or the final output when the query has one chunk).
//
// The workgroup is G = WG / L key groups of L adjacent lanes. Key group kg owns the keys
// bs + u * G + kg (u < U) of every step of B = G x U keys, and lane kl of a group owns the dim quads
// kl, kl + L, ... of the head dim, for the scores and for P·V alike:
//   1. the group issues the K and V loads of its U keys together (a key's L lanes read L adjacent
//      vec4s of its row: coalesced);
//   2. each lane dots its K quads with its Q quads of the HB heads (Q pre-scaled by
//      log2(e)/sqrt(d), in registers), and a butterfly of log2(L) subgroup shuffles gives every
//      lane of the group the keys' whole logits;
//   3. the group's own running max moves only when a logit exceeds it by more than THRESH (log2
//      units; probabilities are then at most 2^THRESH, a common shift is all exactness needs),
//      rescaling the lane's accumulators and row sums;
//   4. each lane accumulates p·v into its own dim quads.
// With SCATTER (at most 4 heads, at least 4 lanes), step 2 is a reduce-scatter instead: each lane
// finishes the logit of one head, keeps that head's running max and row sum and computes its
// exponentials alone, and 3 shuffles gather the 4 heads' probabilities for step 4.
// Nothing is exchanged between key groups, so no barrier and no workgroup memory is needed until
// the chunk ends. Then the groups' partial softmaxes are merged once: every group publishes its
// max and row sums, every lane scales its accumulators to the common max and total, and a halving
// tree through workgroup memory adds them up.
//
// Lanes of a key group must be lanes of one subgroup whose subgroup invocation ids differ in their
// low log2(L) bits as the local indices do (sequence.ts asks for subgroups of at least L lanes;
// the conformance suite checks the result on every device it runs on).
//
// Loops marked `// unroll` are unrolled by sequence.ts; steps that lie inside one path segment and
// before the chunk end (almost all of them) run a copy of the step without bounds checks or slot
// walks (`full` = 1). sequence.ts specialises the constants below (and the storage dtype).

alias KV4 = vec4<f32>;
const D4: u32 = 32u;         // head dim / 4
const KV_HEADS: u32 = 2u;
const Q_HEADS: u32 = 8u;
const GROUP: u32 = 4u;       // query heads per KV head
const HB: u32 = 4u;          // query heads per workgroup (divides GROUP)
const HB4: u32 = 1u;         // ceil(HB / 4): vec4s of heads
const HEAD_BLOCKS: u32 = 1u; // GROUP / HB
const WG: u32 = 64u;         // threads
const L: u32 = 16u;          // lanes per key (a power of two, at most the subgroup size)
const STEPS: u32 = 4u;       // log2(L): butterfly steps
const QC: u32 = 2u;          // ceil(D4 / L): dim quads per lane
const G: u32 = 4u;           // WG / L: key groups
const U: u32 = 4u;           // keys per key group and step
const B: u32 = 16u;          // G x U: keys per step
const LANE_TAIL: u32 = 0u;   // 1 when L does not divide D4 (some lanes skip their last quad)
const MERGE: u32 = 256u;     // floor(G / 2) x HB x D4: merge buffer, in vec4s
const SCATTER: u32 = 0u;     // 1: reduce-scatter the logits, one head per lane (HB <= 4, L >= 4)
const SCALE: f32 = 0.12751743074;  // log2(e) / sqrt(head dim)

const HBP: u32 = HB4 * 4u;
const THRESH: f32 = 8.0;     // log2 units: p <= 256 before the max moves
const NEG: f32 = -3.0e38;
const LN2: f32 = 0.6931471805599453;

// Bindings and slot_walk: sequence_common.wgsl, prepended by sequence.ts.

var<workgroup> mbuf: array<vec4<f32>, MERGE>;      // halving tree of the accumulators
var<workgroup> ml: array<vec4<f32>, 2u * G * HB4>; // per key group: running max, then row sums

// Every lane of a group of 4 (lanes kl ^ 0..3) gets the values of all four: lane kl holds head
// 2 b0 + b1, b0 and b1 being the low bits of kl.
fn gather4(x: f32, b0: bool, b1: bool) -> vec4<f32> {
  let o1 = subgroupShuffleXor(x, 2u);
  let q2 = select(vec2<f32>(x, o1), vec2<f32>(o1, x), b1);
  let o2 = subgroupShuffleXor(q2, 1u);
  return select(vec4<f32>(q2, o2), vec4<f32>(o2, q2), b0);
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

  let kl = t % L; // lane within the key group: dim quads kl, kl + L, ...
  let kg = t / L; // key group

  var qr: array<vec4<f32>, HBP * QC>; // padding heads stay 0
  for (var h = 0u; h < HB; h++) { // unroll
    for (var i = 0u; i < QC; i++) { // unroll
      if (LANE_TAIL == 0u || kl + i * L < D4) {
        qr[h * QC + i] = vec4<f32>(q[(query * Q_HEADS + h0 + h) * D4 + kl + i * L]) * SCALE;
      }
    }
  }

  var m: array<vec4<f32>, HB4>;    // the group's running max per head (padding heads too)
  var l: array<vec4<f32>, HB4>;    // the group's row sums
  var acc: array<vec4<f32>, HBP * QC>; // sum of p·v over the group's keys, dim quads of this lane (padding heads unused)
  for (var g = 0u; g < HB4; g++) { // unroll
    m[g] = vec4<f32>(NEG);
  }
  let b0 = (kl & 1u) == 1u;
  let b1 = (kl & 2u) == 2u;
  var ms = NEG; // SCATTER: the running max of the lane's head
  var ls = 0.0; // SCATTER: its row sum

  for (var bs = begin; bs < end; bs += B) {
    while (segs[cursor + 1u].x <= bs) { cursor++; }
    let seg = segs[cursor];
    let cursor_end = segs[cursor + 1u].x;
    let base = seg.y - seg.x; // slot = base + pos inside the segment (wrapping)
    let fast = bs + B <= min(end, cursor_end);
    for (var full = 0u; full < 2u; full++) { // unroll
      if ((full == 1u) == fast) {
        // 1. K and V of the group's U keys, all loads issued together.
        var kr: array<KV4, U * QC>;
        var vr: array<KV4, U * QC>;
        for (var u = 0u; u < U; u++) { // unroll
          let pos = bs + u * G + kg;
          if (full == 1u || pos < end) {
            var slot = base + pos;
            if (full == 0u && pos >= cursor_end) { slot = slot_walk(pos, cursor); }
            let kb = (slot * KV_HEADS + kvh) * D4 + kl;
            for (var i = 0u; i < QC; i++) { // unroll
              if (LANE_TAIL == 0u || kl + i * L < D4) {
                kr[u * QC + i] = k[kb + i * L];
                vr[u * QC + i] = v[kb + i * L];
              }
            }
          }
        }

        if (SCATTER == 1u) {
          // 2'. Reduce-scatter (HB <= 4 heads, L >= 4 lanes): lane kl ends with the whole logit of
          // head 2 b0 + b1 (b0, b1 the low bits of kl) after 2 + 1 + (log2 L - 2) scalar shuffles
          // instead of 4 log2 L, and computes that head's exponentials alone.
          var sh: array<f32, U>;
          for (var u = 0u; u < U; u++) { // unroll
            var d = vec4<f32>(0.0);
            for (var hh = 0u; hh < 4u; hh++) { // unroll
              if (hh < HB) {
                var x = 0.0;
                for (var i = 0u; i < QC; i++) { // unroll
                  x += dot(vec4<f32>(kr[u * QC + i]), qr[hh * QC + i]);
                }
                d[hh] = x;
              }
            }
            let r2 = select(d.xy, d.zw, b0) + subgroupShuffleXor(select(d.zw, d.xy, b0), 1u);
            var r1 = select(r2.x, r2.y, b1) + subgroupShuffleXor(select(r2.y, r2.x, b1), 2u);
            for (var st = 0u; st < STEPS; st++) { // unroll
              if (st >= 2u) { r1 += subgroupShuffleXor(r1, 1u << st); }
            }
            sh[u] = r1;
          }
          // 3'. The running max of the lane's head; 4'. every head's p gathered, then P·V.
          var mx = NEG;
          for (var u = 0u; u < U; u++) { // unroll
            if (full == 1u || bs + u * G + kg < end) { mx = max(mx, sh[u]); }
          }
          var alpha = 1.0;
          if (mx > ms + THRESH) {
            alpha = exp2(ms - mx);
            ls *= alpha;
            ms = mx;
          }
          let al = gather4(alpha, b0, b1);
          if (any(al != vec4<f32>(1.0))) {
            for (var hh = 0u; hh < 4u; hh++) { // unroll
              if (hh < HB) {
                for (var i = 0u; i < QC; i++) { // unroll
                  acc[hh * QC + i] *= al[hh];
                }
              }
            }
          }
          for (var u = 0u; u < U; u++) { // unroll
            var p = exp2(sh[u] - ms);
            if (full == 0u && bs + u * G + kg >= end) { p = 0.0; }
            ls += p;
            let p4 = gather4(p, b0, b1);
            for (var hh = 0u; hh < 4u; hh++) { // unroll
              if (hh < HB) {
                for (var i = 0u; i < QC; i++) { // unroll
                  acc[hh * QC + i] = fma(vec4<f32>(p4[hh]), vec4<f32>(vr[u * QC + i]), acc[hh * QC + i]);
                }
              }
            }
          }
        } else {
          // 2. Partial dots, then the butterfly: every lane of the group gets the whole logits.
          var s: array<vec4<f32>, U * HB4>;
          for (var u = 0u; u < U; u++) { // unroll
            for (var g = 0u; g < HB4; g++) { // unroll
              var d = vec4<f32>(0.0);
              for (var hh = 0u; hh < 4u; hh++) { // unroll
                if (g * 4u + hh < HB) {
                  var x = 0.0;
                  for (var i = 0u; i < QC; i++) { // unroll
                    x += dot(vec4<f32>(kr[u * QC + i]), qr[(g * 4u + hh) * QC + i]);
                  }
                  d[hh] = x;
                }
              }
              for (var st = 0u; st < STEPS; st++) { // unroll
                d += subgroupShuffleXor(d, 1u << st);
              }
              s[u * HB4 + g] = d;
            }
          }

          // 3. The group's running max, and 4. P·V into the lane's dim quads.
          for (var g = 0u; g < HB4; g++) { // unroll
            var mx = vec4<f32>(NEG);
            for (var u = 0u; u < U; u++) { // unroll
              if (full == 1u || bs + u * G + kg < end) { mx = max(mx, s[u * HB4 + g]); }
            }
            let over = mx > m[g] + THRESH;
            if (any(over)) {
              let mn = select(m[g], mx, over);
              let alpha = exp2(m[g] - mn);
              l[g] *= alpha;
              for (var hh = 0u; hh < 4u; hh++) { // unroll
                if (g * 4u + hh < HB) {
                  for (var i = 0u; i < QC; i++) { // unroll
                    acc[(g * 4u + hh) * QC + i] *= alpha[hh];
                  }
                }
              }
              m[g] = mn;
            }
            for (var u = 0u; u < U; u++) { // unroll
              var p = exp2(s[u * HB4 + g] - m[g]);
              if (full == 0u && bs + u * G + kg >= end) { p = vec4<f32>(0.0); }
              l[g] += p;
              for (var hh = 0u; hh < 4u; hh++) { // unroll
                if (g * 4u + hh < HB) {
                  for (var i = 0u; i < QC; i++) { // unroll
                    acc[(g * 4u + hh) * QC + i] =
                      fma(vec4<f32>(p[hh]), vec4<f32>(vr[u * QC + i]), acc[(g * 4u + hh) * QC + i]);
                  }
                }
              }
            }
          }
        }
      }
    }
  }

  // 5. Merge the key groups: publish max and row sums, scale to the common max and total, add up.
  if (SCATTER == 1u) {
    m[0] = gather4(ms, b0, b1);
    l[0] = gather4(ls, b0, b1);
  }
  if (kl == 0u) {
    for (var g = 0u; g < HB4; g++) { // unroll
      ml[(2u * kg) * HB4 + g] = m[g];
      ml[(2u * kg + 1u) * HB4 + g] = l[g];
    }
  }
  workgroupBarrier();
  var mm: array<vec4<f32>, HB4>; // common max
  var z: array<vec4<f32>, HB4>;  // total row sums at the common max
  for (var g = 0u; g < HB4; g++) { // unroll
    mm[g] = vec4<f32>(NEG);
  }
  for (var j = 0u; j < G; j++) {
    for (var g = 0u; g < HB4; g++) { // unroll
      mm[g] = max(mm[g], ml[(2u * j) * HB4 + g]);
    }
  }
  for (var j = 0u; j < G; j++) {
    for (var g = 0u; g < HB4; g++) { // unroll
      z[g] += ml[(2u * j + 1u) * HB4 + g] * exp2(ml[(2u * j) * HB4 + g] - mm[g]);
    }
  }
  for (var g = 0u; g < HB4; g++) { // unroll
    let f = exp2(m[g] - mm[g]) / z[g];
    for (var hh = 0u; hh < 4u; hh++) { // unroll
      if (g * 4u + hh < HB) {
        for (var i = 0u; i < QC; i++) { // unroll
          acc[(g * 4u + hh) * QC + i] *= f[hh];
        }
      }
    }
  }
  var n = G;
  loop {
    if (n <= 1u) { break; }
    let half = (n + 1u) / 2u;
    if (kg >= half && kg < n) {
      for (var h = 0u; h < HB; h++) { // unroll
        for (var i = 0u; i < QC; i++) { // unroll
          if (LANE_TAIL == 0u || kl + i * L < D4) {
            mbuf[((kg - half) * HB + h) * D4 + kl + i * L] = acc[h * QC + i];
          }
        }
      }
    }
    workgroupBarrier();
    if (kg < n - half) {
      for (var h = 0u; h < HB; h++) { // unroll
        for (var i = 0u; i < QC; i++) { // unroll
          if (LANE_TAIL == 0u || kl + i * L < D4) {
            acc[h * QC + i] += mbuf[(kg * HB + h) * D4 + kl + i * L];
          }
        }
      }
    }
    workgroupBarrier();
    n = half;
  }
  if (kg == 0u) {
    for (var h = 0u; h < HB; h++) { // unroll
      let row = chunk * Q_HEADS + h0 + h;
      for (var i = 0u; i < QC; i++) { // unroll
        if (LANE_TAIL == 0u || kl + i * L < D4) {
          dst_o[row * D4 + kl + i * L] = acc[h * QC + i];
        }
      }
      if (kl == 0u) { dst_lse[row] = (mm[h / 4u][h % 4u] + log2(z[h / 4u][h % 4u])) * LN2; }
    }
  }
}

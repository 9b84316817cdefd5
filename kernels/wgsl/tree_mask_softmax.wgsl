// Tree Attention-Medusa step 4 (DeFT paper, section 2.2): P = softmax(M) row by row, numerically
// stable: one workgroup per (query head, query) row makes one pass for the running max and sum
// (online softmax, merged across threads in workgroup memory), then a second pass writes P. Masked
// entries (-inf, or anything <= -3e38) get probability 0; a row with no visible token is all 0.
// Rows are padded to a multiple of 4 tokens (the pads are masked) and move as vec4s.

alias ST = f32;
const WG: u32 = 256u;
const NEG: f32 = -3.0e38;

struct Params {
  stride4: u32, // vec4s per row
  rows: u32,    // Q_HEADS x queries
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> masked: array<vec4<ST>>;
@group(0) @binding(2) var<storage, read_write> probs: array<vec4<ST>>;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_l: array<f32, WG>;

// Adds x to the running (max, sum of exp(. - max)).
fn online(ml: vec2<f32>, x: f32) -> vec2<f32> {
  if (!(x > NEG)) { return ml; }
  if (x > ml.x) { return vec2<f32>(x, ml.y * exp(ml.x - x) + 1.0); }
  return vec2<f32>(ml.x, ml.y + exp(x - ml.x));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.stride4;

  var ml = vec2<f32>(NEG, 0.0);
  for (var j = lid; j < p.stride4; j += WG) {
    let x = vec4<f32>(masked[base + j]);
    ml = online(online(online(online(ml, x.x), x.y), x.z), x.w);
  }
  red_m[lid] = ml.x;
  red_l[lid] = ml.y;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let m1 = red_m[lid];
      let m2 = red_m[lid + stride];
      let mm = max(m1, m2);
      red_l[lid] = red_l[lid] * exp(m1 - mm) + red_l[lid + stride] * exp(m2 - mm);
      red_m[lid] = mm;
    }
    workgroupBarrier();
  }
  let row_max = red_m[0];
  let total = red_l[0];
  let inv = select(0.0, 1.0 / total, total > 0.0);
  for (var j = lid; j < p.stride4; j += WG) {
    let x = vec4<f32>(masked[base + j]);
    let pr = select(vec4<f32>(0.0), exp(x - row_max) * inv, x > vec4<f32>(NEG));
    probs[base + j] = vec4<ST>(pr);
  }
}

// Split-K epilogue of Tree Attention-Medusa step 5: out = the sum of the f32 partial products of
// the token chunks, elementwise over [query][qHead][d] (as vec4s).

const WG: u32 = 256u;

struct Params {
  count4: u32, // vec4s of the output
  splits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<vec4<f32>>; // [split][query][qHead][d]
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wg.x + wg.y * nwg.x) * WG + lid;
  if (e >= p.count4) { return; }
  var acc = vec4<f32>(0.0);
  for (var s = 0u; s < p.splits; s++) { acc += partial[s * p.count4 + e]; }
  out[e] = acc;
}

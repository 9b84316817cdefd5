// Tree Attention-Medusa step 2 (DeFT paper, section 2.2): S' = S / sqrt(d), elementwise, read from
// and written to global memory in the storage dtype (both buffers padded to whole vec4s).

alias ST = f32;
const WG: u32 = 256u;
const PER_THREAD: u32 = 4u; // vec4s per thread

override SCALE_DIVISOR: f32; // sqrt(d)

struct Params {
  count4: u32, // vec4s in S
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<vec4<ST>>;
@group(0) @binding(2) var<storage, read_write> scaled: array<vec4<ST>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wg.x + wg.y * nwg.x) * WG * PER_THREAD + lid;
  for (var i = 0u; i < PER_THREAD; i++) {
    let e = first + i * WG;
    if (e < p.count4) { scaled[e] = vec4<ST>(vec4<f32>(s[e]) / SCALE_DIVISOR); }
  }
}

// Tree Attention-Medusa step 3 (DeFT paper, section 2.2): M = S' + DCM, where the dense causal mask
// DCM is [query][stride] (0 where the token's node lies on the query's path, -inf elsewhere and on
// the pad columns) and is broadcast over the query heads. Read from and written to global memory in
// the storage dtype, as vec4s (rows are padded to a multiple of 4 tokens).

alias ST = f32;
const WG: u32 = 256u;
const PER_THREAD: u32 = 4u; // vec4s per thread

struct Params {
  count4: u32, // vec4s in S'
  mask4: u32,  // vec4s in the mask: queries x stride / 4
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> scaled: array<vec4<ST>>;
@group(0) @binding(2) var<storage, read> dcm: array<vec4<ST>>;
@group(0) @binding(3) var<storage, read_write> masked: array<vec4<ST>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wg.x + wg.y * nwg.x) * WG * PER_THREAD + lid;
  for (var i = 0u; i < PER_THREAD; i++) {
    let e = first + i * WG;
    if (e < p.count4) {
      masked[e] = vec4<ST>(vec4<f32>(scaled[e]) + vec4<f32>(dcm[e % p.mask4]));
    }
  }
}

// What both kernels of `sequence` (sequence.wgsl, sequence_lanes.wgsl) share: the bind group that
// sequence.ts binds for either, and the walk along a query's path segments. sequence.ts prepends
// this to the kernel's source; KV4 and D4 come from the kernel.

@group(0) @binding(0) var<storage, read> chunks: array<vec4<u32>>; // (query, first segment, begin, end)
@group(0) @binding(1) var<storage, read> segs: array<vec2<u32>>;   // (path position, first slot), + sentinel
@group(0) @binding(2) var<storage, read> q: array<KV4>;            // [query][qHead][D4]
@group(0) @binding(3) var<storage, read> k: array<KV4>;            // [slot][kvHead][D4]
@group(0) @binding(4) var<storage, read> v: array<KV4>;            // [slot][kvHead][D4]
@group(0) @binding(5) var<storage, read_write> dst_o: array<vec4<f32>>; // [chunk][qHead][D4]
@group(0) @binding(6) var<storage, read_write> dst_lse: array<f32>;     // [chunk][qHead]

// Slot of path position `pos` at or past the end of the cursor's segment: walk forward; the
// query's sentinel segment (at its path length) ends the walk.
fn slot_walk(pos: u32, cursor: u32) -> u32 {
  var s = cursor + 1u;
  loop {
    if (segs[s + 1u].x > pos) { break; }
    s++;
  }
  let e = segs[s];
  return e.y + (pos - e.x);
}

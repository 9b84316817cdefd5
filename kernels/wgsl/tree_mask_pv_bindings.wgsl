// The uniforms and bindings of tree-mask's step 5 (O = P V) kernels, prepended to both the FMA
// kernel (wgsl/tree_mask_pv.wgsl) and the matrix kernel (tree_mask_mma.ts): both read the one
// uniform buffer and bind group that methods/tree_mask.ts builds. `ST` is the storage dtype (f32,
// or f16 where the TypeScript side rewrites the alias).

alias ST = f32;

struct Params {
  tokens: u32,    // N_tree
  stride: u32,    // row length of P: N_tree rounded up to 4 (the pad columns hold 0)
  queries: u32,   // l_n
  rows: u32,      // rows per KV head: group x queries
  row_tiles: u32,
  col_tiles: u32,
  splits: u32,
  chunk: u32,     // tokens per split, a multiple of BK
  tiles: u32,     // KV_HEADS x row_tiles x col_tiles x splits
  split_stride: u32, // vec4s per split in dst: queries x Q_HEADS x HEAD_DIM / 4
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> probs: array<vec4<ST>>;     // [qHead][query][stride]
@group(0) @binding(2) var<storage, read> v: array<vec4<ST>>;         // [slot][kvHead][d]
@group(0) @binding(3) var<storage, read> token_slot: array<u32>;     // [tree token] -> slot
@group(0) @binding(4) var<storage, read_write> dst: array<vec4<f32>>; // [split][query][qHead][d]

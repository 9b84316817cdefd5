/**
 * The kernel variants of the group-attention methods (deft-node, deft-node-chunk, deft-flatten,
 * cascade), part of their records: the FMA kernel (`wgsl/group_attention.wgsl`, tile in
 * `options.fma`) and the subgroup-matrix kernel (`group_attention_mma.ts`, tile in `options.mma`).
 *
 * @module
 */

import { DEFAULT_GROUP_KERNEL, DEFAULT_GROUP_KERNEL_F16 } from "./group_attention.ts";
import { DEFAULT_MMA_KERNEL } from "./group_attention_mma.ts";
import type { KernelVariant } from "./options.ts";

/** The FMA kernel: outer-product FMA tiles in registers. */
export const GROUP_FMA: KernelVariant = {
  family: "fma",
  description: "outer-product FMA tiles in registers (wgsl/group_attention.wgsl)",
  needs: [],
  params: {
    key: "fma",
    params: [
      {
        name: "threads",
        doc:
          `threads per workgroup: 64, 128 or 256 (default ${DEFAULT_GROUP_KERNEL_F16.threads} for f16 storage)`,
        default: DEFAULT_GROUP_KERNEL.threads,
      },
      {
        name: "rows",
        doc:
          `rows (query x head) per tile: 4 x threads / lanes, for 4, 8, 16 or 32 lanes (default ${DEFAULT_GROUP_KERNEL_F16.rows} for f16 storage)`,
        default: DEFAULT_GROUP_KERNEL.rows,
      },
      {
        name: "keys",
        doc:
          `keys per sub-tile: 4 or 8 per lane (default ${DEFAULT_GROUP_KERNEL_F16.keys} for f16 storage)`,
        default: DEFAULT_GROUP_KERNEL.keys,
      },
      {
        name: "qResident",
        doc: "where Q lives: re-staged per sub-tile (none), or in workgroup memory as f16 or f32",
        default: DEFAULT_GROUP_KERNEL.qResident,
        choices: ["auto", "f16", "f32", "none"],
      },
      {
        name: "storage",
        doc:
          "workgroup memory the kernel may declare, bytes (0: the device's limit); less buys workgroups per SM with barriers",
        default: DEFAULT_GROUP_KERNEL.storage,
        min: 0,
      },
      {
        name: "kvHalf",
        doc:
          "1: K, V and P staged in workgroup memory in f16 (f16 storage only, and its default there), half the bytes, so a sub-tile needs fewer chunks and barriers; 0: f32",
        default: 0,
        min: 0,
        max: 1,
      },
    ],
    tune: fmaTiles(),
  },
};

/**
 * The FMA kernel's tiles worth tuning (docs/performance.md, changes 26 and 28): the f16 default
 * (two workgroups per SM with f16 staging), the 64-key tile of change 25 (one per SM, whole
 * sub-tiles), a 32-row tile (four per SM, fewer empty rows where a KV head has few rows), and two
 * under a workgroup-memory budget (more per SM, more chunks). A 128-row tile of 256 threads, alone
 * on an SM, lost 21-25% (change 30). Staging follows the storage dtype; tiles the device cannot hold
 * fail their plan and drop out.
 */
function fmaTiles(): Record<string, number | string>[] {
  const { threads, rows, keys } = DEFAULT_GROUP_KERNEL_F16;
  return [
    { threads, rows, keys, qResident: "none" },
    { threads: 256, rows: 64, keys: 64, qResident: "f16" },
    { threads: 64, rows: 32, keys: 32, qResident: "none" },
    // Two per SM with 64-key sub-tiles (4 K chunks, 2 V slices), three with 32 (4 and 2).
    { threads: 128, rows: 64, keys: 64, qResident: "none", storage: 24576 },
    { threads, rows, keys, qResident: "none", storage: 16384 },
  ];
}

/**
 * The matrix kernel's tiles worth tuning: the default, one step either way in rows and in keys, and
 * the head-dim split in two (within 0.94-1.08x of the default on the H200, depending on the tree;
 * docs/performance.md, change 8). Tiles the device cannot run fail their plan and drop out.
 */
function mmaTiles(): Record<string, number>[] {
  const { rows, keys } = DEFAULT_MMA_KERNEL;
  return [
    { rows, keys },
    { rows: rows / 2, keys },
    { rows: rows * 2, keys },
    { rows, keys: keys / 2 },
    { rows, keys: keys * 2 },
    { rows, keys, split: 2 },
  ];
}

/** The matrix kernel: Q K^T and P V as subgroup-matrix multiply-accumulates (f16 inputs). */
export const GROUP_MMA: KernelVariant = {
  family: "mma",
  description: "subgroup-matrix multiply-accumulates, f16 x f16 -> f32 (group_attention_mma.ts)",
  needs: ["shader-f16", "subgroups", "subgroup-matrix"],
  dtypes: ["f16"],
  params: {
    key: "mma",
    params: [
      {
        name: "rows",
        doc: "rows per tile: a multiple of the matrix configuration's M",
        default: DEFAULT_MMA_KERNEL.rows,
      },
      {
        name: "keys",
        doc: "keys per sub-tile: a multiple of its N and K",
        default: DEFAULT_MMA_KERNEL.keys,
      },
      {
        name: "split",
        doc: "subgroups per row block, each with 1/split of the head dim: 1, 2 or 4",
        default: DEFAULT_MMA_KERNEL.split ?? 1,
      },
      {
        name: "outRounds",
        doc:
          "rounds of the output pass, a divisor of a subgroup's output fragments (0: the fewest that need no more workgroup memory)",
        default: 0,
        min: 0,
      },
      {
        name: "fit",
        doc:
          "1: halve the rows (down to 32) where the blocks would leave most of a tile's rows empty; 0: keep them as given",
        default: 1,
        min: 0,
        max: 1,
      },
    ],
    tune: mmaTiles(),
  },
};

/** The variants of every group-attention method, the FMA kernel first. */
export const GROUP_VARIANTS: readonly KernelVariant[] = [GROUP_FMA, GROUP_MMA];

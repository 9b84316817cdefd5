/**
 * SVG drawings of workload trees: nodes on one row per depth in DFS order, the DFS-flattened KV,
 * DeFT-Flatten's blocks and the queries each block serves. The geometry is the one flattening of
 * `workloads/tree.ts` ({@linkcode flattenTree}); the drawing is computed here and embedded as SVG.
 *
 * @module
 */

import { flattenTree, type Tree } from "../workloads/tree.ts";
import type { ResultsDocument, WorkloadResult } from "../results/schema.ts";
import { workloadLabel } from "./common.ts";
import { escapeHtml as esc } from "./escape.ts";

/** Largest value (at least `floor`), in a loop: `Math.max(...a)` overflows on large inputs. */
function maxOf(values: ArrayLike<number>, floor: number): number {
  let m = floor;
  for (let i = 0; i < values.length; i++) m = Math.max(m, values[i]!);
  return m;
}

const fmtNum = (x: number) => Math.round(x * 10) / 10;
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** Most blocks drawn one by one; larger trees draw groups of consecutive blocks. */
export const MAX_DRAWN_BLOCKS = 2048;

/**
 * An SVG of a tree: nodes as bars on one row per depth, placed left to right in DFS order at their
 * offset in the flattened KV (so children sit right of their parent, joined by elbows); the
 * flattened KV strip; DeFT-Flatten's blocks of `blockSize` tokens; and the queries per block.
 */
export function renderTreeSvg(tree: Tree, blockSize: number): string {
  const f = flattenTree(tree, blockSize);
  const { ix, order, offset } = f;
  const n = ix.nodeCount;
  // Width per node: a small minimum keeps one-token nodes visible next to long prompts.
  const W = Math.min(16000, Math.max(1120, n * 6));
  const minW = Math.min(4, (W * 0.4) / n);
  const k = (W - n * minW) / f.totalTokens;
  const X = new Array<number>(n).fill(0);
  const Wd = new Array<number>(n).fill(0);
  let x = 0;
  for (const v of order) {
    X[v] = x;
    Wd[v] = minW + k * ix.tokens(v);
    x += Wd[v]!;
  }
  const posX = (tok: number): number => {
    // Binary search for the node holding token `tok` in DFS order.
    let lo = 0, hi = order.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offset[order[mid]!]! <= tok) lo = mid;
      else hi = mid - 1;
    }
    const v = order[lo]!;
    const frac = Math.min(1, (tok - offset[v]!) / ix.tokens(v));
    return X[v]! + Wd[v]! * frac;
  };
  let depth = 0;
  for (let v = 0; v < n; v++) depth = Math.max(depth, ix.depth[v]!);
  const rowH = Math.max(5, Math.min(22, 380 / depth));
  const left = 70;
  const top = 8;
  const treeH = depth * rowH;
  const stripY = top + treeH + 14;
  const stripH = 16;
  const blockY = stripY + stripH + 4;
  const blockH = 14;
  const qY = blockY + blockH + 6;
  const qH = 34;
  const height = qY + qH + 18;
  const width = left + W + 10;
  const queriesOn = new Array<number>(n).fill(0);
  for (let q = 0; q < ix.queryCount; q++) queriesOn[ix.queryNode[q]!]!++;
  const hue = (i: number) => (i * 137.508) % 360;
  const dfsIndex = new Array<number>(n).fill(0);
  order.forEach((v, i) => (dfsIndex[v] = i));
  const out: string[] = [];
  const maxQ = maxOf(f.blockQueries, 1);
  // Past MAX_DRAWN_BLOCKS, consecutive blocks are drawn as one group (a pixel cannot hold more).
  const group = Math.max(1, Math.ceil(f.blocks / MAX_DRAWN_BLOCKS));
  const units = Math.ceil(f.blocks / group);
  const label =
    `Tree of ${n} nodes and ${ix.queryCount} queries, ${f.totalTokens} KV tokens flattened in DFS order and cut into ${f.blocks} blocks of ${blockSize} tokens${
      group > 1 ? `, drawn in groups of ${group} blocks` : ""
    }`;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" ${
      W <= 1120 ? `width="100%"` : `width="${fmtNum(width)}" height="${fmtNum(height)}"`
    } viewBox="0 0 ${fmtNum(width)} ${fmtNum(height)}" role="img" aria-label="${esc(label)}">`,
  );
  out.push(
    `<g font-family="system-ui, sans-serif" font-size="10" fill="#5b6570"><text x="4" y="${
      fmtNum(top + 10)
    }">depth 1</text><text x="4" y="${fmtNum(top + treeH)}">depth ${depth}</text><text x="4" y="${
      fmtNum(stripY + 12)
    }">DFS KV</text><text x="4" y="${fmtNum(blockY + 11)}">blocks</text><text x="4" y="${
      fmtNum(qY + 12)
    }">queries</text><text x="4" y="${fmtNum(qY + 24)}">per block</text></g>`,
  );
  // Block bands behind everything, alternating shades (one band per drawn group of blocks).
  const bands: string[] = [];
  for (let u = 0; u < units; u++) {
    const x0 = posX(u * group * blockSize);
    const x1 = u === units - 1
      ? X[order[order.length - 1]!]! + Wd[order[order.length - 1]!]!
      : posX((u + 1) * group * blockSize);
    if (u % 2 === 0) continue;
    bands.push(
      `M${fmtNum(left + x0)} ${top}h${fmtNum(Math.max(0.5, x1 - x0))}V${fmtNum(blockY + blockH)}h${
        fmtNum(-Math.max(0.5, x1 - x0))
      }Z`,
    );
  }
  if (bands.length) out.push(`<path d="${bands.join("")}" fill="#eef3fa"/>`);
  // Elbows from each parent to its children.
  const elbows: string[] = [];
  for (let v = 0; v < n; v++) {
    const p = ix.parent[v]!;
    if (p < 0) continue;
    const px = left + X[p]! + Math.min(2, Wd[p]! / 2);
    const py = top + (ix.depth[p]! - 1) * rowH + rowH - 2;
    const cy = top + (ix.depth[v]! - 1) * rowH + rowH / 2;
    elbows.push(`M${fmtNum(px)} ${fmtNum(py)}V${fmtNum(cy)}H${fmtNum(left + X[v]!)}`);
  }
  if (elbows.length) {
    out.push(`<path d="${elbows.join("")}" fill="none" stroke="#9aa5b1" stroke-width="0.8"/>`);
  }
  // Nodes on their depth rows and again in the flattened strip.
  for (const v of order) {
    const node = ix.tree.nodes[v]!;
    const tokens = ix.tokens(v);
    const first = Math.floor(offset[v]! / blockSize);
    const last = Math.floor((offset[v]! + tokens - 1) / blockSize);
    const colour = `hsl(${fmtNum(hue(dfsIndex[v]!))} 55% ${queriesOn[v]! > 0 ? 48 : 62}%)`;
    const tip = `node ${node.id}: ${tokens} tokens, depth ${ix.depth[v]}, ${
      plural(queriesOn[v]!, "query", "queries")
    } here; KV tokens ${offset[v]}–${offset[v]! + tokens - 1} of the DFS flattening, block${
      first === last ? ` ${first}` : `s ${first}–${last}`
    }`;
    const y = top + (ix.depth[v]! - 1) * rowH;
    const w = fmtNum(Math.max(0.6, Wd[v]! - 0.6));
    out.push(
      `<g><title>${esc(tip)}</title><rect x="${fmtNum(left + X[v]!)}" y="${
        fmtNum(y + 1)
      }" width="${w}" height="${fmtNum(rowH - 3)}" fill="${colour}"${
        queriesOn[v]! > 0 ? ` stroke="#1d2329" stroke-width="0.6"` : ""
      }/><rect x="${
        fmtNum(left + X[v]!)
      }" y="${stripY}" width="${w}" height="${stripH}" fill="${colour}"/></g>`,
    );
  }
  // Block boundaries across the drawing, block labels, padding and queries per block.
  const cuts: string[] = [];
  const qbars: string[] = [];
  const labels: string[] = [];
  const endX = X[order[order.length - 1]!]! + Wd[order[order.length - 1]!]!;
  for (let u = 0; u < units; u++) {
    const b0 = u * group;
    const b1 = Math.min(f.blocks, b0 + group) - 1;
    const x0 = posX(b0 * blockSize);
    const x1 = u === units - 1 ? endX : posX((b1 + 1) * blockSize);
    const name = b0 === b1 ? `b${b0}` : `b${b0}–${b1}`;
    if (u > 0) cuts.push(`M${fmtNum(left + x0)} ${top}V${fmtNum(blockY + blockH)}`);
    if (x1 - x0 >= 16 * (name.length / 3)) {
      labels.push(
        `<text x="${fmtNum(left + (x0 + x1) / 2)}" y="${fmtNum(blockY + 10.5)}">${name}</text>`,
      );
    }
    let q = 0;
    for (let b = b0; b <= b1; b++) q = Math.max(q, f.blockQueries[b]!);
    const h = (qH * q) / maxQ;
    qbars.push(
      `<rect x="${fmtNum(left + x0 + 0.3)}" y="${fmtNum(qY + qH - h)}" width="${
        fmtNum(Math.max(0.4, x1 - x0 - 0.6))
      }" height="${fmtNum(h)}"><title>${b0 === b1 ? `block ${b0}` : `blocks ${b0}–${b1}`}: tokens ${
        b0 * blockSize
      }–${Math.min(f.totalTokens, (b1 + 1) * blockSize) - 1}, ${b0 === b1 ? "" : "at most "}${
        plural(q, "query", "queries")
      }</title></rect>`,
    );
  }
  if (cuts.length) {
    out.push(
      `<path d="${
        cuts.join("")
      }" stroke="#1f5fa8" stroke-width="0.8" stroke-dasharray="3 2" opacity="0.7"/>`,
    );
  }
  out.push(
    `<rect x="${left}" y="${blockY}" width="${
      fmtNum(endX)
    }" height="${blockH}" fill="none" stroke="#1f5fa8" stroke-width="0.8"/>`,
  );
  out.push(
    `<g font-family="system-ui, sans-serif" font-size="9" fill="#1f5fa8" text-anchor="middle">${
      labels.join("")
    }</g>`,
  );
  out.push(`<g fill="#76b7b2">${qbars.join("")}</g>`);
  out.push(
    `<text x="${fmtNum(left + endX)}" y="${
      fmtNum(qY - 1)
    }" font-family="system-ui, sans-serif" font-size="9" fill="#5b6570" text-anchor="end">max ${maxQ}</text>`,
  );
  out.push(`</svg>`);
  return out.join("");
}

/** DeFT-Flatten's block size on a workload (its first case's, which tuning may set), else the run's. */
export function flattenBlockSize(doc: ResultsDocument, w: WorkloadResult): number {
  for (const s of w.snapshots) {
    for (const c of s.cases) {
      const b = c.method === "deft-flatten" ? c.options.blockSize : undefined;
      if (typeof b === "number" && Number.isSafeInteger(b) && b > 0) return b;
    }
  }
  return doc.settings.blockSize;
}

/**
 * A workload's tree drawing in a `<details>` element (open for the first workload), or why there
 * is none.
 */
export function treeFigure(w: WorkloadResult, blockSize: number, open: boolean): string {
  const snap = w.snapshots.find((s) => s.tree !== null);
  const head = `<summary>${esc(workloadLabel(w))}: tree and DeFT-Flatten blocks</summary>`;
  if (!snap) {
    return `<details${
      open ? " open" : ""
    }>${head}<p class="sub">No snapshot of this workload stored its tree (trees over 4096 nodes are not kept).</p></details>`;
  }
  let body: string;
  try {
    const f = flattenTree(snap.tree!, blockSize);
    const pad = f.blocks * blockSize - f.totalTokens;
    const meanQ = f.blockQueries.reduce((s, q) => s + q, 0) / Math.max(1, f.blocks);
    body = `<div class="tree">${
      renderTreeSvg(snap.tree!, blockSize)
    }</div><p class="sub">Iteration ${esc(snap.iteration)} of ${
      esc(w.iterations)
    }: ${f.ix.nodeCount} nodes, ${f.ix.queryCount} queries, N_tree = ${f.totalTokens} tokens in ${f.blocks} block(s) of b_s = ${blockSize} (the last padded by ${pad}); queries per block: mean ${
      meanQ.toFixed(1)
    }, max ${maxOf(f.blockQueries, 0)}${
      f.blocks > MAX_DRAWN_BLOCKS
        ? `; drawn in groups of ${Math.ceil(f.blocks / MAX_DRAWN_BLOCKS)} blocks`
        : ""
    }. Hover a node or a block for details.</p>`;
  } catch (e) {
    body = `<p class="notice bad">The stored tree cannot be drawn: ${
      esc((e as Error).message)
    }</p>`;
  }
  return `<details${
    open ? " open" : ""
  }>${head}<figure><figcaption>The workload tree (one row per depth; children right of their parent in depth-first order, at their place in the flattened KV), the DFS-flattened KV below it, and how DeFT-Flatten cuts that KV into equal blocks of b_s tokens (dashed lines, shaded bands), with the number of queries each block serves.</figcaption>${body}</figure></details>`;
}

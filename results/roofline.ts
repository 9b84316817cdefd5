/**
 * The roofline model: where a case sits against the calibrated ceilings of its adapter.
 *
 * A case has three time floors, each a lower bound on its GPU time:
 *
 * - **DRAM**: the bytes that must cross DRAM at least once (`counts.dramBytes`: the KV the plan
 *   reads once per KV head, Q, uploaded masks and the output, nothing re-read) at the calibrated
 *   DRAM read bandwidth (`peakReadBytesPerS`).
 * - **L2**: every byte the kernels load and store (`counts.real.totalBytes`, re-reads included)
 *   at the calibrated cache bandwidth (`l2ReadBytesPerS`: reads of a working set well inside L2,
 *   repeated; never taken below the DRAM bandwidth). Repeated prefix reads that L2 serves count
 *   here, not against DRAM.
 * - **compute**: executed FLOPs at the dtype's FMA peak, or, for a case on matrix units (kernel
 *   variant `mma-*`), at the calibrated subgroup-matrix peak (`matrixFlopsPerS`).
 *
 * The roofline fraction is the largest floor divided by the median: at most 1 when the byte counts
 * and ceilings are right. It is never clamped; a case that beats a floor gets a `roof-exceeded`
 * warning, since then the model (a byte count or a ceiling) is wrong for it. Documents written
 * before this model divided all real bytes by the DRAM bandwidth (and could show 148 %); reading
 * one recomputes its rooflines with {@linkcode upgradeRooflines}.
 *
 * @module
 */

import type { PlanCounts } from "../kernels/method.ts";
import type { Dtype, ModelShape } from "../workloads/shapes.ts";
import type { TreeFacts } from "../workloads/tree.ts";
import type { Calibration, ResultsDocument, Roofline } from "./schema.ts";

/** Tag of the current model in {@linkcode Roofline.model}. */
export const ROOFLINE_MODEL = "dram-l2-compute";

/** The cache bandwidth used for the L2 floor, or null without an L2 calibration. */
export function cacheBytesPerS(c: Calibration): number | null {
  const l2 = c.l2ReadBytesPerS;
  if (typeof l2 !== "number" || !(l2 > 0)) return null;
  // A cache is never slower than DRAM; a lower reading is the probe's limit, not the cache's.
  return Math.max(l2, c.peakReadBytesPerS);
}

/**
 * Roofline of a case from its counts, median and the device ceilings; null without a usable
 * calibration or median.
 */
export function roofline(
  counts: Pick<PlanCounts, "real" | "dramBytes" | "flops">,
  medianNs: number,
  dtype: Dtype,
  c: Calibration | null,
  kernel?: string,
): Roofline | null {
  if (!c || !(medianNs > 0) || !(c.peakReadBytesPerS > 0) || !(c.f32FlopsPerS > 0)) return null;
  const matrix = kernel?.startsWith("mma") && typeof c.matrixFlopsPerS === "number" &&
    c.matrixFlopsPerS > 0;
  const flopsPerS = matrix
    ? c.matrixFlopsPerS!
    : dtype === "f16"
    ? (c.f16FlopsPerS ?? c.f32FlopsPerS)
    : c.f32FlopsPerS;
  const dramTimeNs = (counts.dramBytes / c.peakReadBytesPerS) * 1e9;
  const cache = cacheBytesPerS(c);
  const l2TimeNs = cache === null ? null : (counts.real.totalBytes / cache) * 1e9;
  const flopTimeNs = (counts.flops / flopsPerS) * 1e9;
  const floors: [Roofline["bound"], number][] = [
    ["dram", dramTimeNs],
    ["l2", l2TimeNs ?? 0],
    ["compute", flopTimeNs],
  ];
  const [bound, floor] = floors.reduce((a, b) => (b[1] > a[1] ? b : a));
  return {
    model: ROOFLINE_MODEL,
    achievedBytesPerS: counts.real.totalBytes / (medianNs * 1e-9),
    achievedFlopsPerS: counts.flops / (medianNs * 1e-9),
    dramBytes: counts.dramBytes,
    dramTimeNs,
    l2TimeNs,
    ioTimeNs: Math.max(dramTimeNs, l2TimeNs ?? 0),
    flopTimeNs,
    fraction: floor / medianNs,
    bound,
  };
}

/**
 * An estimate of `counts.dramBytes` for a case of a document written before the field existed:
 * every tree token's K and V per KV head, Q and the f32 output, once (exact when every tree token
 * is on some query's path, as in the generators' trees).
 */
export function estimateDramBytes(
  facts: Pick<TreeFacts, "treeTokens" | "queries">,
  shape: ModelShape,
  dtype: Dtype,
): number {
  const b = dtype === "f16" ? 2 : 4;
  const kv = 2 * facts.treeTokens * shape.kvHeads * shape.headDim * b;
  const row = facts.queries * shape.qHeads * shape.headDim;
  return kv + row * b + row * 4;
}

/** Names the floor of a roofline: "DRAM", "L2", "compute", or a legacy bound as stored. */
export function boundName(bound: Roofline["bound"]): string {
  return bound === "dram" ? "DRAM" : bound === "l2" ? "L2" : bound;
}

/**
 * Brings a parsed document written before this model up to it, in place: a case without
 * `counts.dramBytes` gets {@linkcode estimateDramBytes}, a roofline of another model is recomputed
 * (with the L2 roof only if its calibration has one), and one `roofline-recomputed` warning says
 * so. Returns the number of rooflines recomputed.
 */
export function upgradeRooflines(doc: ResultsDocument): number {
  const { shape, dtype } = doc.settings;
  let recomputed = 0;
  for (const w of doc.workloads) {
    for (const s of w.snapshots) {
      for (const c of s.cases) {
        if (typeof c.counts.dramBytes !== "number") {
          c.counts.dramBytes = estimateDramBytes(s.facts, shape, dtype);
        }
        if (c.roofline && c.roofline.model !== ROOFLINE_MODEL) {
          c.roofline = c.timing
            ? roofline(c.counts, c.timing.medianNs, dtype, doc.calibration, c.kernel)
            : null;
          recomputed++;
        }
      }
    }
  }
  if (recomputed > 0) {
    doc.warnings.push({
      code: "roofline-recomputed",
      message:
        `${recomputed} rooflines of this document used an older model (every real byte at DRAM bandwidth, which could exceed 100 %) and were recomputed on reading: the KV of every tree token, Q and the output against DRAM${
          doc.calibration && cacheBytesPerS(doc.calibration) !== null
            ? ", all real bytes against L2"
            : " (its calibration has no L2 roof)"
        }, FLOPs against the FMA peak`,
      key: null,
    });
  }
  return recomputed;
}

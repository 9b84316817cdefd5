/**
 * The report's tables: environment, settings and calibration of a run, its totals per workload
 * and method, and one row per case (with the status badge the dashboard shares).
 *
 * @module
 */

import { caseProblem, caseRefs, formatBytes, formatNs, formatSi } from "../results/document.ts";
import { boundName } from "../results/roofline.ts";
import type { Calibration, CaseResult, ResultsDocument } from "../results/schema.ts";
import { methodStatus, seriesOf, totalOf, workloadLabel } from "./common.ts";
import { escapeHtml as esc } from "./escape.ts";

/** A two-column table of `[label, HTML]` rows (labels escaped here, values already HTML). */
export function kvTable(rows: [string, string][]): string {
  return `<table class="kv">${
    rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("")
  }</table>`;
}

/** Where the run happened: adapter, runtimes, host, commit, time, command and checks. */
export function environmentTable(doc: ResultsDocument): string {
  const e = doc.environment;
  const a = e.adapter;
  const duration = (Date.parse(e.finishedAt) - Date.parse(e.startedAt)) / 1000;
  const rows: [string, string][] = [
    [
      "adapter",
      `${esc([a.vendor, a.architecture, a.device].filter((s) => s).join(" / ") || "unknown")}${
        a.description ? ` — ${esc(a.description)}` : ""
      }${a.isFallbackAdapter ? ` <span class="badge warn">fallback (software)</span>` : ""}`,
    ],
    [
      "features",
      a.features.length ? a.features.map((f) => `<code>${esc(f)}</code>`).join(" ") : "none",
    ],
    ["Deno / V8 / TypeScript", `${esc(e.deno)} / ${esc(e.v8)} / ${esc(e.typescript)}`],
    ...doc.runtimes.map((r): [string, string] => [
      `runtime ${r.name}`,
      `${esc(r.version)}${r.source ? ` from <code>${esc(r.source)}</code>` : ""}${
        r.flags.length ? `; flags ${r.flags.map((f) => `<code>${esc(f)}</code>`).join(" ")}` : ""
      }; adapter ${
        esc(r.adapter.description || [r.adapter.vendor, r.adapter.architecture].join(" "))
      }${
        r.adapter.isFallbackAdapter ? ` <span class="badge warn">fallback</span>` : ""
      }; features ${r.adapter.features.map((f) => `<code>${esc(f)}</code>`).join(" ")}${
        r.adapter.subgroupMatrixConfigs?.length
          ? `; subgroup matrices ${
            esc(
              r.adapter.subgroupMatrixConfigs.map((c) =>
                `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`
              ).join(", "),
            )
          }`
          : ""
      }; ${esc(r.timingMode)} timing${
        r.tickRatio === null ? "" : `, tick check ${esc(r.tickRatio.toFixed(4))}`
      }`,
    ]),
    ["OS / arch / CPU", `${esc(e.os)} / ${esc(e.arch)} / ${esc(e.cpu ?? "unknown")}`],
    [
      "commit",
      e.gitCommit
        ? `<code>${esc(e.gitCommit)}</code>${
          e.gitDirty ? ` <span class="badge warn">dirty</span>` : ""
        }`
        : "unknown",
    ],
    [
      "time",
      `${esc(e.startedAt)} → ${esc(e.finishedAt)}${
        Number.isFinite(duration) ? ` (${duration.toFixed(0)} s)` : ""
      }`,
    ],
    ["command", `<code>${esc(["deft-bench", ...e.command].join(" "))}</code>`],
    [
      "timestamp tick check",
      e.tickRatio === null
        ? "not checked"
        : `${esc(e.tickRatio.toFixed(4))} (GPU time / wall time)`,
    ],
    ["clock check", clockText(e.clock ?? null)],
  ];
  const limits = Object.entries(a.limits);
  let extra = "";
  if (limits.length) {
    extra += `<details><summary>Device limits</summary>${
      kvTable(limits.map(([k, v]) => [k, esc(v)]))
    }</details>`;
  }
  if (e.nvidiaSmi) {
    const keys = [
      ...new Set([...Object.keys(e.nvidiaSmi.before), ...Object.keys(e.nvidiaSmi.after)]),
    ];
    extra += `<details><summary>nvidia-smi before / after</summary>${
      kvTable(
        keys.map((
          k,
        ) => [k, `${esc(e.nvidiaSmi!.before[k] ?? "–")} / ${esc(e.nvidiaSmi!.after[k] ?? "–")}`]),
      )
    }</details>`;
  }
  return kvTable(rows) + extra;
}

function clockText(k: ResultsDocument["environment"]["clock"] | null): string {
  if (!k) return `not checked <span class="badge warn">no clock guard</span>`;
  const smi = k.smi
    ? `; nvidia-smi: ${esc(k.smi.readings)} readings, working SM clock ${
      k.smi.workingSmMHz === null ? "–" : `${esc(k.smi.workingSmMHz)} MHz`
    } of ${k.smi.maxSmMHz === null ? "–" : `${esc(k.smi.maxSmMHz)} MHz`}`
    : "";
  return `reference ${esc(formatNs(k.workingNs))} per dispatch at the working clock (${
    esc(k.workingSource === "calibration" ? "calibrated" : "best of this run")
  }); ${esc(k.stableSpinUps)}/${esc(k.spinUps)} spin-ups stable (${
    esc((k.spinUpMs / 1000).toFixed(1))
  } s); lead ${esc(formatNs(k.leadNs))}${smi}${
    k.retriedSamples ? `; ${esc(k.retriedSamples)} sample(s) of low-clock rounds taken again` : ""
  }; ${
    k.lowClockCases > 0
      ? `<span class="badge bad">${esc(k.lowClockCases)} case(s) below ${
        esc(k.lowClockFraction * 100)
      } % of the working speed</span>`
      : `no case below ${esc(k.lowClockFraction * 100)} % of the working speed`
  }`;
}

/** What the run asked for: methods, shape, dtype, sizes, runtimes, tuning, scale and timing. */
export function settingsTable(doc: ResultsDocument): string {
  const s = doc.settings;
  const t = s.timing;
  const rows: [string, string][] = [
    ["methods", s.methods.map((m) => `<code>${esc(m)}</code>`).join(" ")],
    [
      "model shape / dtype",
      `${esc(s.shape.name)}: ${esc(s.shape.qHeads)} query heads, ${
        esc(s.shape.kvHeads)
      } KV heads, d = ${esc(s.shape.headDim)}, ${esc(s.shape.layers)} layers / ${esc(s.dtype)}`,
    ],
    ["block size / chunk size", `${esc(s.blockSize)} / ${esc(s.chunkSize)} tokens`],
    ["runtimes / kernel family", `${esc(s.runtimes.join(", "))} / ${esc(s.kernel)}`],
    ...doc.runtimes.filter((r) => r.tuning).map((r): [string, string] => [
      `stored tuning (${r.name})`,
      `<code>${esc(r.tuning!.file)}</code>, tuned ${esc(r.tuning!.tunedAt)}: ${
        esc(
          Object.entries(r.tuning!.applied).map(([m, o]) =>
            `${m} ${Object.entries(o ?? {}).map(([k, v]) => `${k}=${v}`).join(" ")}`
          ).join("; "),
        )
      }`,
    ]),
    [
      "scale",
      s.scale === 1
        ? "1 (the paper's sizes)"
        : `${esc(s.scale)} <span class="badge warn">scaled</span>${
          s.scaleReason ? ` — ${esc(s.scaleReason)}` : ""
        }`,
    ],
    ...(s.smoke
      ? [["run", `smoke run <span class="badge warn">smoke</span> — ${esc(s.smoke)}`] as [
        string,
        string,
      ]]
      : []),
    ["sampled iterations / seed", `${esc(s.samplesPerRun)} per workload / ${esc(s.seed)}`],
    [
      "verification",
      s.verify ? `on, ${esc(s.verifyRows)} rows per case against the float64 reference` : "off",
    ],
    [
      "timing mode",
      t.mode === "timestamp"
        ? "timestamp queries around each sample's compute pass"
        : `wall clock, batched <span class="badge warn">coarse</span> — no timestamp-query; many repetitions per submit timed by the wall clock`,
    ],
    [
      "samples",
      `${
        t.repetitionsPerSample > 0
          ? `${esc(t.repetitionsPerSample)} repetition(s) per sample`
          : "repetitions per sample chosen per case"
      }; ${esc(t.minSamples)}–${esc(t.maxSamples)} samples, stop at a 95 % CI half-width below ${
        esc(+(t.targetRelativeCi * 100).toFixed(2))
      } % of the median`,
    ],
    [
      "budget",
      `warm-up ${esc(t.warmupMs)} ms, ${esc(t.budgetMs)} ms per case; ${
        t.cold ? "cold (L2 flushed between samples)" : "hot"
      }; ${t.interleaved ? "methods interleaved round-robin" : "methods in sequence"}`,
    ],
  ];
  return kvTable(rows);
}

/** The calibrated ceilings of the run, one table per runtime when it has several. */
export function calibrationTable(doc: ResultsDocument): string {
  if (doc.runtimes.length > 1) {
    return doc.runtimes.map((r) => `<h3>${esc(r.name)}</h3>${calibrationRows(r.calibration)}`).join(
      "",
    );
  }
  return calibrationRows(doc.calibration);
}

function calibrationRows(c: Calibration | null): string {
  if (!c) return `<p class="sub">No calibration in this run: the roofline has no ceiling.</p>`;
  return kvTable([
    ["adapter", esc(c.adapterKey)],
    ["measured", esc(c.measuredAt)],
    ["DRAM read bandwidth (peak)", esc(formatSi(c.peakReadBytesPerS, "B/s"))],
    [
      "L2 read bandwidth",
      typeof c.l2ReadBytesPerS === "number"
        ? `${esc(formatSi(c.l2ReadBytesPerS, "B/s"))}${
          c.l2ReadBandwidth?.length
            ? ` (working sets ${
              c.l2ReadBandwidth.map((x) => esc(formatBytes(x.bytes))).join(", ")
            })`
            : ""
        }`
        : "not measured (older calibration): no L2 roof",
    ],
    [
      "clock reference",
      c.reference
        ? `${esc(formatNs(c.reference.nsPerDispatch))} per dispatch (${esc(c.reference.kernel)}, ${
          esc(c.reference.workgroups)
        } workgroups × ${esc(c.reference.iterations)} iterations, ${esc(c.reference.timingMode)})`
        : "not calibrated",
    ],
    [
      "f32 / f16 FMA peak",
      `${esc(formatSi(c.f32FlopsPerS, "FLOP/s"))} / ${
        c.f16FlopsPerS === null ? "n/a" : esc(formatSi(c.f16FlopsPerS, "FLOP/s"))
      }`,
    ],
    [
      "subgroup-matrix f16->f32 peak (mma kernels)",
      typeof c.matrixFlopsPerS === "number" ? esc(formatSi(c.matrixFlopsPerS, "FLOP/s")) : "n/a",
    ],
    [
      "empty dispatch / extra dispatch",
      `${esc(formatNs(c.dispatchNs))} / ${esc(formatNs(c.extraDispatchNs))}`,
    ],
  ]);
}

/** A status badge of a case: ok, FAILED, ERROR, or NO TIMING (ok status without samples). */
export function statusBadge(c: CaseResult): string {
  const problem = caseProblem(c);
  if (problem === null) return `<span class="badge ok">ok</span>`;
  const word = c.status !== "ok"
    ? c.status.toUpperCase()
    : c.verification.checked && !c.verification.passed
    ? "FAILED"
    : "NO TIMING";
  return `<span class="badge bad">${esc(word)}</span>`;
}

/** One row per case: status, timing, roofline, clock and verification. */
export function caseTable(doc: ResultsDocument): string {
  const rows = caseRefs(doc).map((r) => {
    const c = r.case;
    const problem = caseProblem(c);
    const t = problem === null ? c.timing : null;
    const v = c.verification;
    const ver = v.checked
      ? `${v.passed ? "" : `<span class="badge bad">FAILED</span> `}${
        v.maxRelError.toExponential(2)
      } / ${esc(v.tolerance)}${v.unwritten ? `, ${esc(v.unwritten)} unwritten` : ""}${
        v.nonFinite ? `, ${esc(v.nonFinite)} non-finite` : ""
      }`
      : "not checked";
    const o = c.timing?.outliers;
    const outl = o ? o.lowSevere + o.lowMild + o.highMild + o.highSevere : 0;
    const cells = t
      ? [
        formatNs(t.medianNs),
        `${formatNs(t.ci95Ns[0])} – ${formatNs(t.ci95Ns[1])}`,
        formatNs(t.madNs),
        `${t.samplesNs.length}${(t.repetitions ?? 1) > 1 ? ` × ${t.repetitions} reps` : ""}${
          outl ? ` (${outl} outl.)` : ""
        }`,
      ].map((s) => `<td class="num">${esc(s)}</td>`).join("")
      : `<td class="num" colspan="4">— ${esc(problem ?? "")}</td>`;
    const roof = t && c.roofline
      ? `${(c.roofline.fraction * 100).toFixed(1)} % (${esc(boundName(c.roofline.bound))})${
        c.roofline.fraction > 1 ? ` <span class="badge bad">exceeds roof: model wrong</span>` : ""
      }`
      : "–";
    const k = c.clock;
    const clock = !t || !k
      ? "–"
      : `${k.lowClock ? `<span class="badge bad">low clock</span> ` : ""}${
        esc((k.fraction * 100).toFixed(0))
      } %${k.smMHz !== null ? ` · ${esc(k.smMHz.toFixed(0))} MHz` : ""}`;
    return `<tr${problem === null ? "" : ` class="bad"`}><td class="mono">${esc(r.key)}</td><td>${
      esc(c.method)
    }</td><td>${statusBadge(c)}</td><td>${esc(c.runtime)}</td><td class="mono">${
      esc(c.kernel)
    }</td>${cells}<td class="num">${roof}</td><td class="num">${clock}</td><td>${ver}</td><td class="mono">${
      esc(c.sourceHash.slice(0, 12))
    }</td></tr>`;
  });
  return `<div class="scroll"><table><thead><tr><th>case</th><th>method</th><th>status</th><th>runtime</th><th>kernel</th><th>median</th><th>95 % CI of median</th><th>MAD</th><th>samples</th><th>roofline (binding floor)</th><th>clock (reference speed / working speed)</th><th>verification (max rel. error / tolerance)</th><th>source</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table></div>`;
}

/** Run totals per workload and series: latency, speedup and IO. */
export function totalsTable(doc: ResultsDocument): string {
  const series = seriesOf(doc);
  const rows: string[] = [];
  for (const w of doc.workloads) {
    const f = w.runFacts;
    rows.push(
      `<tr><th colspan="9">${esc(workloadLabel(w))} <span class="sub">— ${esc(w.kind)}, ${
        esc(w.iterations)
      } iterations, ${esc(w.snapshots.length)} sampled; mean N_tree ${
        esc((f.treeTokens / w.iterations).toFixed(0))
      }, mean ΣN_i ${esc((f.pathTokens / w.iterations).toFixed(0))}, KV IO reduction ${
        esc((f.kvIoReduction * 100).toFixed(2))
      } %</span></th></tr>`,
    );
    for (const x of series) {
      const st = methodStatus(w, x.method, x.runtime);
      if (st === "missing") continue;
      const t = totalOf(w, x);
      const ok = st === "ok" && t !== undefined && t.complete;
      const num = (s: string) => `<td class="num">${esc(s)}</td>`;
      rows.push(
        `<tr${ok ? "" : ` class="bad"`}><td>${esc(x.label)}</td><td>${
          ok
            ? `<span class="badge ok">ok</span>`
            : `<span class="badge bad">${esc(st === "ok" ? "INCOMPLETE" : st.toUpperCase())}</span>`
        }</td>${
          ok
            ? num(formatNs(t.meanIterationNs)) + num(formatNs(t.modelRunNs)) +
              num(t.speedupVsSequence === null ? "–" : `${t.speedupVsSequence.toFixed(2)}×`) +
              num(formatBytes(t.paperIo.kvBytes)) + num(formatBytes(t.paperIo.maskBytes)) +
              num(formatBytes(t.paperIo.partialBytes)) + num(formatBytes(t.realBytes))
            : `<td colspan="7">— not every sampled iteration ran and verified, so no run total</td>`
        }</tr>`,
      );
    }
  }
  return `<div class="scroll"><table><thead><tr><th>method</th><th>status</th><th>mean iteration (1 layer)</th><th>whole run (model)</th><th>speedup vs sequence</th><th>KV IO (paper)</th><th>mask IO (paper)</th><th>partial IO (paper)</th><th>real bytes</th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table></div>`;
}

/**
 * The comparison as Markdown: a headline, one table row per case, geometric means, then details,
 * changed metrics, cases not compared and notes. Printed by `compare` on standard output (it reads
 * well in a terminal) and fit for `$GITHUB_STEP_SUMMARY`. It formats the data that `compareRuns`
 * (`compare.ts`) computed and decides nothing.
 *
 * @module
 */

import { formatNs } from "../results/document.ts";
import { type Comparison, formatChange, formatP, nameSome, type Verdict } from "./compare.ts";

/** Escapes text for a Markdown table cell (also safe where the summary renders HTML). */
export function escapeMarkdown(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/([\\`*_[\]|#~])/g, "\\$1")
    .replace(/\r?\n/g, " ");
}

function fmtRatio(r: number): string {
  return Number.isFinite(r) ? r.toFixed(3) : String(r);
}

const VERDICT_TEXT: Record<Verdict, string> = {
  regression: "**regression**",
  improvement: "improvement",
  noise: "noise",
  "unreliable-clock": "unreliable clock ⚠",
};

/** Formats a comparison as Markdown for a CI job summary (a headline, a table, then details). */
export function formatMarkdown(c: Comparison): string {
  const s = c.summary;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const L: string[] = [];
  L.push(
    `### deft-bench compare: ${plural(s.regressions, "regression")}, ${
      plural(s.improvements, "improvement")
    }, ${s.noise} unchanged${
      s.unreliableClock > 0 ? `, ${s.unreliableClock} not judged (low clock)` : ""
    }`,
  );
  L.push("");
  L.push(
    `Base ${escapeMarkdown(c.base.label)} (${escapeMarkdown(c.base.adapter)}; ${
      escapeMarkdown(c.base.runtimes.join(", "))
    }) → head ${escapeMarkdown(c.head.label)} (${escapeMarkdown(c.head.adapter)}; ${
      escapeMarkdown(c.head.runtimes.join(", "))
    }). Ratio = head median / base median with a 95 % bootstrap interval; a change counts when the ratio is beyond ±${+(c
      .threshold * 100).toFixed(2)} % (above ${(1 + c.threshold).toFixed(3)} or below ${
      (1 / (1 + c.threshold)).toFixed(3)
    }) and the Mann-Whitney U test gives p < ${c.alpha}. IO bytes and FLOPs must match exactly; a case that fails in head is a regression.`,
  );
  L.push("");
  L.push("| case | base | head | ratio | 95 % CI | p | verdict |");
  L.push("|:-----|-----:|-----:|------:|:-------:|--:|:--------|");
  for (const k of c.cases) {
    const name = `${escapeMarkdown(k.key)}${k.sourceChanged ? " †" : ""}${
      k.metricChanges.length > 0 ? " ‡" : ""
    }${k.lowClock.base || k.lowClock.head ? " §" : ""}`;
    const l = k.latency;
    const verdict = k.headProblem !== null
      ? `**regression** (head ${escapeMarkdown(k.headProblem.split(":")[0]!)})`
      : k.baseProblem !== null
      ? `improvement (fixed)`
      : VERDICT_TEXT[k.verdict];
    if (l) {
      L.push(
        `| ${name} | ${formatNs(l.baseMedianNs)} | ${formatNs(l.headMedianNs)} | ${
          fmtRatio(l.ratio)
        } | ${fmtRatio(l.ratioCi95[0])} – ${fmtRatio(l.ratioCi95[1])} | ${formatP(l.p)}${
          l.enough ? "" : "*"
        } | ${verdict} |`,
      );
    } else {
      const side = (p: string | null) => p === null ? "ok" : escapeMarkdown(p.split(":")[0]!);
      L.push(
        `| ${name} | ${side(k.baseProblem)} | ${side(k.headProblem)} | – | – | – | ${verdict} |`,
      );
    }
  }
  for (const g of s.geomean) {
    const label = g.group === "all"
      ? `**geometric mean** (${plural(g.cases, "case")})`
      : `geometric mean, ${escapeMarkdown(g.group)} (${plural(g.cases, "case")})`;
    L.push(`| ${label} | | | ${fmtRatio(g.ratio)} | | | |`);
  }
  L.push("");
  const marks: string[] = [];
  if (c.cases.some((k) => k.sourceChanged)) marks.push("† kernel source changed");
  if (c.cases.some((k) => k.metricChanges.length > 0)) marks.push("‡ IO bytes or FLOPs changed");
  if (c.cases.some((k) => k.latency && !k.latency.enough)) {
    marks.push("\\* too few samples for the U test; the interval decided");
  }
  if (c.cases.some((k) => k.lowClock.base || k.lowClock.head)) {
    marks.push("§ measured below the working clock on a side: latency not judged");
  }
  if (marks.length > 0) L.push(marks.join(" · "), "");

  const flagged = c.cases.filter((k) => k.verdict !== "noise" || k.reasons.length > 0);
  if (flagged.length > 0) {
    L.push("#### Details", "");
    for (const k of flagged) {
      L.push(
        `- ${escapeMarkdown(k.key)}: ${k.verdict}; ${escapeMarkdown(k.reasons.join("; "))}`,
      );
    }
    L.push("");
  }
  const changed = c.cases.filter((k) => k.metricChanges.length > 0);
  if (changed.length > 0) {
    L.push("#### Deterministic metrics that differ", "");
    L.push("| case | metric | base | head | change |");
    L.push("|:-----|:-------|-----:|-----:|-------:|");
    for (const k of changed) {
      for (const m of k.metricChanges) {
        L.push(
          `| ${escapeMarkdown(k.key)} | ${m.field} | ${m.base} | ${m.head} | ${
            m.base === 0 ? "new" : formatChange(m.head / m.base)
          } |`,
        );
      }
    }
    L.push("");
  }
  if (c.onlyInBase.length > 0 || c.onlyInHead.length > 0) {
    L.push("#### Cases not compared", "");
    if (c.onlyInBase.length > 0) {
      L.push(`- only in base: ${escapeMarkdown(nameSome(c.onlyInBase, 20))}`);
    }
    if (c.onlyInHead.length > 0) {
      L.push(`- only in head: ${escapeMarkdown(nameSome(c.onlyInHead, 20))}`);
    }
    L.push("");
  }
  if (c.settingsDiffs.length > 0 || c.notes.length > 0) {
    L.push("#### Notes", "");
    for (const d of c.settingsDiffs) L.push(`- ${escapeMarkdown(d)}`);
    for (const n of c.notes) L.push(`- ${escapeMarkdown(n)}`);
    L.push("");
  }
  return L.join("\n");
}

/**
 * Progress of a `bench` run on standard error: the terminal's {@linkcode ProgressReporter} (the
 * run's events, `bench/progress.ts`). One line redrawn in place on a terminal (cases done of
 * total, the current case, estimated time left), one plain line per finished case otherwise (CI
 * logs), nothing at all with `--json` or `--quiet`.
 *
 * @module
 */

import { type ProgressReporter, silentProgress } from "../bench/progress.ts";
import type { CaseResult } from "../results/schema.ts";
import type { CliIo } from "./io.ts";

/** `1.23 ms`-style durations from ns. */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return String(ns);
  const a = Math.abs(ns);
  if (a >= 1e9) return `${(ns / 1e9).toFixed(3)} s`;
  if (a >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (a >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(0)} ns`;
}

/** `1h02m`, `3m05s`, `42s`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** One-line summary of a finished case. */
export function describeCase(c: CaseResult): string {
  if (c.status === "error") return `${c.key}: error: ${c.message}`;
  if (c.status === "failed") return `${c.key}: FAILED verification: ${c.message}`;
  const t = c.timing;
  if (!t) return `${c.key}: no timing`;
  const half = (t.ci95Ns[1] - t.ci95Ns[0]) / 2;
  return `${c.key}: ${formatNs(t.medianNs)} ±${
    ((half / t.medianNs) * 100).toFixed(1)
  }% (${t.samplesNs.length} samples)`;
}

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** Print nothing (`--json`, `--quiet`). */
  silent?: boolean;
  /** Clock (ms) for the time-left estimate. */
  now?: () => number;
}

/** The reporter that fits `io`: live line on a terminal, plain lines otherwise, or silence. */
export function createProgress(io: CliIo, options: ProgressOptions = {}): ProgressReporter {
  if (options.silent) return silentProgress;
  const now = options.now ?? (() => performance.now());
  const live = io.errIsTerminal;
  let total = 0, done = 0, t0 = 0, label = "", width = 0;
  const left = () => {
    if (done === 0) return "estimating";
    return `~${formatDuration(((now() - t0) / done) * (total - done))} left`;
  };
  const redraw = () => {
    if (!live) return;
    let line = `[${done}/${total}] ${label} (${left()})`;
    const cols = 120;
    if (line.length > cols) line = line.slice(0, cols - 1) + "…";
    io.err(`\r${line.padEnd(width)}`);
    width = line.length;
  };
  const clear = () => {
    if (live && width > 0) io.err(`\r${" ".repeat(width)}\r`);
    width = 0;
  };
  return {
    start(n) {
      total = n;
      done = 0;
      t0 = now();
      redraw();
    },
    current(l) {
      label = l;
      redraw();
    },
    caseDone(c) {
      done++;
      if (live) redraw();
      else io.err(`[${done}/${total}] ${describeCase(c)}\n`);
    },
    note(message) {
      clear();
      io.err(`${message}\n`);
      redraw();
    },
    finish() {
      clear();
    },
  };
}

/**
 * What a `bench` run tells whoever watches it: the run loop reports its events through a
 * {@linkcode ProgressReporter} and never prints. The command line implements it for the terminal
 * (`cli/progress.ts`); tests pass their own; {@linkcode silentProgress} ignores everything.
 *
 * @module
 */

import type { CaseResult } from "../results/schema.ts";

/** The events of a run, in order: `start`, then `current`, `caseDone` and `note`, then `finish`. */
export interface ProgressReporter {
  /** The run starts with `total` cases (method x snapshot). */
  start(total: number): void;
  /** Work on a group of cases begins (e.g. one snapshot: `few-shot-b20@200`). */
  current(label: string): void;
  /** A case is done. */
  caseDone(c: CaseResult): void;
  /** A message worth showing in every mode but silent (notes, warnings). */
  note(message: string): void;
  /** The run is over: clears the live line. */
  finish(): void;
}

/** A reporter that prints nothing. */
export const silentProgress: ProgressReporter = {
  start() {},
  current() {},
  caseDone() {},
  note() {},
  finish() {},
};

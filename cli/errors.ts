/**
 * Errors the command line turns into exit codes: {@linkcode UsageError} (bad input: exit 2) and
 * {@linkcode ExitCode} (a command that printed its own verdict, such as `compare` finding a
 * regression: exit 1); anything else is an internal failure (exit 1, stack only with `--debug`).
 *
 * Layers below the command line throw the built-in class that fits (`RangeError` for a size or
 * name out of range) and cannot know whether the value came from the user or from a harness bug.
 * So the command line converts at its boundary: option parsers throw {@linkcode UsageError}, and
 * calls that check what the user typed go through {@linkcode fromInput}.
 *
 * @module
 */

/** Bad input from the user: a malformed file, an impossible size, an unknown name. Exit code 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Exit codes of the command line. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Thrown by a command to end with a specific exit code after it printed its own message. */
export class ExitCode extends Error {
  /** Creates the signal. */
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = "ExitCode";
  }
}

/**
 * Runs `check`, a call whose only input is what the user typed (a shape, a method name): a
 * `RangeError` it throws names the user's mistake, so it is rethrown as a {@linkcode UsageError}
 * with the same message. Every other error passes through unchanged.
 *
 * @example A RangeError from user input becomes a UsageError
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromInput, UsageError } from "./errors.ts";
 *
 * const positive = (n: number) => {
 *   if (n < 1) throw new RangeError(`Size must be positive, got ${n}`);
 *   return n;
 * };
 * assert.equal(fromInput(() => positive(3)), 3);
 * assert.throws(() => fromInput(() => positive(0)), UsageError);
 * // Any other error passes through as it is.
 * const bug = () => {
 *   throw new TypeError("A harness bug");
 * };
 * assert.throws(() => fromInput(bug), TypeError);
 * ```
 */
export function fromInput<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

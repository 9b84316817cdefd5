/**
 * Errors the command line turns into exit codes: {@linkcode UsageError} (bad input: exit 2) and
 * {@linkcode RegressionFound} (exit 1); anything else is an internal failure (exit 1, stack only
 * with `--debug`).
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

/**
 * Where commands write: standard output for results, standard error for progress and messages.
 * Tests pass a capturing implementation.
 *
 * @module
 */

/** Output sinks of a command. */
export interface CliIo {
  /** Writes text to standard output (results, tables, JSON). */
  out(text: string): void;
  /** Writes text to standard error (progress, warnings, errors). */
  err(text: string): void;
  /** True when standard error is an interactive terminal (progress may redraw in place). */
  readonly errIsTerminal: boolean;
}

const enc = new TextEncoder();

/** The process's real standard streams. */
export const denoIo: CliIo = {
  out: (t) => {
    Deno.stdout.writeSync(enc.encode(t));
  },
  err: (t) => {
    Deno.stderr.writeSync(enc.encode(t));
  },
  get errIsTerminal() {
    return Deno.stderr.isTerminal();
  },
};

/** An io that records everything, for tests. */
export function captureIo(): CliIo & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    errIsTerminal: false,
    out(t: string) {
      io.stdout += t;
    },
    err(t: string) {
      io.stderr += t;
    },
  };
  return io;
}

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

/**
 * Writes all of `bytes` (a pipe may take fewer bytes per call than given). A closed reader
 * (`BrokenPipe`) propagates, and the command line ends quietly with exit 0 (see `main`).
 */
function writeAllSync(file: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
}

/** The process's real standard streams. */
export const denoIo: CliIo = {
  out: (t) => {
    writeAllSync(Deno.stdout, enc.encode(t));
  },
  err: (t) => {
    try {
      writeAllSync(Deno.stderr, enc.encode(t));
    } catch (e) {
      // Nobody reads standard error any more: messages have nowhere to go.
      if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
    }
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

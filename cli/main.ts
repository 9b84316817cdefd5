/**
 * The deft-bench command line: `deno task cli <command> --help`.
 *
 * Exit codes: 0 success, 1 failure (a GPU error, a failed verification, a regression found by
 * `compare`), 2 bad input (malformed files, impossible sizes, unknown names, bad options).
 *
 * @module
 */

import { Command, CommanderError } from "../deps/commander.ts";
import { GpuError } from "../kernels/gpu.ts";
import { OutputPathError } from "../results/files.ts";
import { TreeError } from "../workloads/tree.ts";
import { genCommand } from "./commands/gen.ts";
import { inspectCommand } from "./commands/inspect.ts";
import { EXIT, ExitCode, UsageError } from "./errors.ts";
import { type CliIo, denoIo } from "./io.ts";
import { COMMANDS } from "./registry.ts";

/** Builds the program; `io` receives all output. */
export function buildProgram(io: CliIo): Command {
  const program = new Command()
    .name("deft-bench")
    .description(
      "Tree-structured LLM decoding attention on WebGPU: DeFT (arXiv 2404.00242) and its baselines, the paper's workloads, latency and IO reports.",
    )
    .version("0.1.0")
    .option("--debug", "print stack traces of internal errors")
    .showHelpAfterError("(add --help for usage)")
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride();
  for (const make of [genCommand, inspectCommand, ...COMMANDS]) {
    const cmd = make(io);
    cmd.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    cmd.exitOverride();
    cmd.showHelpAfterError("(add --help for usage)");
    program.addCommand(cmd);
  }
  return program;
}

/**
 * Is this error the user's fault (exit 2)? Only classes that always mean bad input: a
 * {@linkcode UsageError} (the command line's own checks, and user input converted at its boundary
 * by `fromInput`), a malformed tree or results file, an output path that must not be written, and
 * file-system refusals. A bare `RangeError` or `Error` is an internal invariant that broke: exit 1.
 */
export function isUsage(e: unknown): boolean {
  return e instanceof UsageError || e instanceof TreeError || e instanceof OutputPathError ||
    e instanceof SyntaxError || e instanceof Deno.errors.NotFound ||
    e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.IsADirectory ||
    e instanceof Deno.errors.NotADirectory || e instanceof Deno.errors.PermissionDenied;
}

/**
 * The exit code for an error that ended a command, after writing its message to `io`: 2 with the
 * message for bad input, 1 for a GPU error, 1 with "internal error" (and the stack when `debug`)
 * for anything else.
 */
export function exitCodeOf(e: unknown, io: CliIo, debug: boolean): number {
  if (e instanceof CommanderError) {
    if (
      e.code === "commander.helpDisplayed" || e.code === "commander.help" ||
      e.code === "commander.version"
    ) return EXIT.ok;
    return EXIT.usage; // commander already printed the message
  }
  if (e instanceof ExitCode) return e.code;
  // The reader of standard output went away (`gen ... | head`): a normal end, not a failure.
  if (e instanceof Deno.errors.BrokenPipe) return EXIT.ok;
  if (isUsage(e)) {
    io.err(`error: ${(e as Error).message}\n`);
    return EXIT.usage;
  }
  if (e instanceof GpuError) {
    io.err(`error: ${e.message}\n`);
    return EXIT.failure;
  }
  io.err(`internal error: ${(e as Error)?.message ?? e}\n`);
  if (debug) io.err(`${(e as Error)?.stack ?? ""}\n`);
  else io.err("(run with --debug for the stack trace)\n");
  return EXIT.failure;
}

/** Runs the command line with `args`; returns the exit code instead of exiting. */
export async function main(args: string[], io: CliIo = denoIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(args, { from: "user" });
    return EXIT.ok;
  } catch (e) {
    return exitCodeOf(e, io, args.includes("--debug"));
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

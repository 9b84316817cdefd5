/**
 * Commands beyond `gen` and `inspect`, in help order. Each entry builds one command
 * (`cli/commands/<name>.ts`) writing through the given io.
 *
 * @module
 */

import type { Command } from "../deps/commander.ts";
import type { CliIo } from "./io.ts";
import { runCommand } from "./commands/run.ts";
import { compareCommand } from "./commands/compare.ts";
import { benchCommand } from "./commands/bench.ts";
import { calibrateCommand } from "./commands/calibrate.ts";
import { tuneCommand } from "./commands/tune.ts";
import { reportCommand } from "./commands/report.ts";
import { dashboardCommand } from "./commands/dashboard.ts";

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

/** Command factories, in the order `--help` lists them. */
export const COMMANDS: ((io: CliIo) => AnyCommand)[] = [
  runCommand,
  benchCommand,
  calibrateCommand,
  tuneCommand,
  reportCommand,
  compareCommand,
  dashboardCommand,
];

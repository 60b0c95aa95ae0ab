#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=20
import { Command, CommanderError } from 'commander';
import { analyzeCommand } from './commands/analyze.js';
import { demoCommand } from './commands/demo.js';
import { doctorCommand } from './commands/doctor.js';
import { exportCommand } from './commands/export.js';
import { runCommand } from './commands/run.js';
import { VERSION } from './version.js';

/** The `tokenwatt` command line: one sub-command per file in agent/commands/. */
export function buildProgram(): Command {
  const program = new Command('tokenwatt')
    .description('Joules per token and per task for GPU inference: per-request energy attribution, Prometheus metrics, SQLite ledger, ESG export.')
    .version(VERSION)
    .showHelpAfterError()
    .addCommand(runCommand())
    .addCommand(demoCommand())
    .addCommand(analyzeCommand())
    .addCommand(exportCommand())
    .addCommand(doctorCommand());
  // A usage error (unknown option, bad or missing argument) exits 2, as each command's help says;
  // commander would exit 1, which doctor and analyze give other meanings. Commands added with
  // addCommand() do not inherit this, so each gets it.
  for (const command of [program, ...program.commands]) command.exitOverride();
  return program;
}

/** The exit status for an error: commander's own (0 after --help or --version, 2 for usage), else 1. */
export function exitStatusOf(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : USAGE_ERROR_EXIT;
  return 1;
}

const USAGE_ERROR_EXIT = 2;

// `tokenwatt analyze ... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    // Commander has already printed its own message (and the help) for usage errors.
    if (!(error instanceof CommanderError)) process.stderr.write(`tokenwatt: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(exitStatusOf(error));
  });

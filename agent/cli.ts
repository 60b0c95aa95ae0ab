#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=20
import { Command } from 'commander';
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
  return program;
}

// `tokenwatt analyze ... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    process.stderr.write(`tokenwatt: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });

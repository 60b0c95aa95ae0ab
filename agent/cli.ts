#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=20 --single-threaded-gc
import { CommanderError } from 'commander';
import { buildProgram, commandsFor, exitStatusOf } from './cli-program.js';

// `tokenwatt analyze ... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

buildProgram(commandsFor(process.argv.slice(2)))
  .then((program) => program.parseAsync(process.argv))
  .catch((error: unknown) => {
    // Commander has already printed its own message (and the help) for usage errors.
    if (!(error instanceof CommanderError)) process.stderr.write(`tokenwatt: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(exitStatusOf(error));
  });

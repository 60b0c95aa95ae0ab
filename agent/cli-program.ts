import { Command, CommanderError } from 'commander';
import { UsageError } from './usage-error.js';
import { VERSION } from './version.js';

/**
 * The sub-commands, one per file in agent/commands/, loaded on demand: `tokenwatt run` is a
 * long-lived process on every GPU node, and the other commands' modules (the ESG export with its
 * JSON-schema validator, analyze, doctor's host probes) would stay in its memory for nothing.
 */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  run: async () => (await import('./commands/run.js')).runCommand(),
  demo: async () => (await import('./commands/demo.js')).demoCommand(),
  analyze: async () => (await import('./commands/analyze.js')).analyzeCommand(),
  export: async () => (await import('./commands/export.js')).exportCommand(),
  doctor: async () => (await import('./commands/doctor.js')).doctorCommand(),
};

/**
 * The commands an argument list needs: the one it names first, else all of them (for the
 * program's help, --version, and commander's "did you mean" on an unknown command).
 */
export function commandsFor(args: readonly string[]): string[] {
  const named = args[0];
  return named !== undefined && Object.hasOwn(COMMANDS, named) ? [named] : Object.keys(COMMANDS);
}

/** The `tokenwatt` command line with the given sub-commands (all by default). */
export async function buildProgram(names: readonly string[] = Object.keys(COMMANDS)): Promise<Command> {
  const program = new Command('tokenwatt')
    .description('Joules per token and per task for GPU inference: per-request energy attribution, Prometheus metrics, SQLite ledger, ESG export.')
    .version(VERSION)
    .showHelpAfterError();
  for (const name of names) {
    const load = COMMANDS[name];
    if (load === undefined) throw new Error(`no command ${JSON.stringify(name)}`);
    program.addCommand(await load());
  }
  // A usage error (unknown option, bad or missing argument) exits 2, as each command's help says;
  // commander would exit 1, which doctor and analyze give other meanings. Commands added with
  // addCommand() do not inherit this, so each gets it.
  for (const command of [program, ...program.commands]) command.exitOverride();
  return program;
}

/** The exit status for an error: commander's own (0 after --help or --version, 2 for usage), a {@link UsageError} 2, else 1. */
export function exitStatusOf(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : USAGE_ERROR_EXIT;
  if (error instanceof UsageError) return USAGE_ERROR_EXIT;
  return 1;
}

const USAGE_ERROR_EXIT = 2;

import { Command } from 'commander';
import { addConfigOptions } from '../config.js';
import { loadConfigOrExit, runAgentUntilSignal } from '../run-agent.js';

/** `tokenwatt run`: the agent on a real node (or a replayed trace). */
export function runCommand(): Command {
  const command = new Command('run')
    .description('Run the agent: sample GPU power, take request records, attribute every joule, serve /metrics.');
  addConfigOptions(command);
  command.action(async (flags: Record<string, unknown>) => {
    const { config, warnings } = loadConfigOrExit(flags);
    await runAgentUntilSignal(config, {}, warnings);
  });
  return command;
}

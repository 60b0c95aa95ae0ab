import type { PowerSource } from '../collectors/power-source.js';
import type { RequestSource } from '../collectors/request-sink.js';
import { Agent } from './agent.js';
import { loadConfig, redactConfig, type ConfigSource, type TokenwattConfig } from './config.js';
import { exitProcess } from './exit-process.js';
import { createLogger, type Logger } from './logger.js';
import { createPowerSource } from './power-source-factory.js';
import { createRequestCapture } from './request-capture.js';

/** Load and validate the config from flags, environment and file; print every error and exit 2 on failure. */
export function loadConfigOrExit(flags: Record<string, unknown>): { config: TokenwattConfig; warnings: readonly string[] } {
  const { config, warnings } = loadConfigWithSources(flags);
  return { config, warnings };
}

/** As loadConfigOrExit, also saying where each value came from (default, file, env, flag). */
export function loadConfigWithSources(flags: Record<string, unknown>): { config: TokenwattConfig; sources: Readonly<Record<string, ConfigSource>>; warnings: readonly string[] } {
  const configFile = typeof flags.config === 'string' ? flags.config : undefined;
  const result = loadConfig({ flags: stripUndefined(flags), env: process.env, ...(configFile ? { configFile } : {}) });
  if (!result.ok) {
    process.stderr.write(`tokenwatt: invalid configuration (${result.errors.length} error${result.errors.length === 1 ? '' : 's'}):\n`);
    for (const error of result.errors) process.stderr.write(`  - ${error}\n`);
    process.exit(2);
  }
  return { config: result.config, sources: result.sources, warnings: result.warnings };
}

function stripUndefined(flags: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(flags).filter(([key, value]) => value !== undefined && key !== 'config'));
}

export interface RunHooks {
  /** Use this power source instead of the one the config names (the demo's simulated node). */
  readonly powerSource?: PowerSource;
  readonly requestSources?: readonly RequestSource[];
  /** Called once the agent serves; its return value is called at shutdown, and awaited before the agent stops. */
  readonly onStarted?: (agent: Agent, log: Logger) => (() => void | Promise<void>) | void;
}

/** Start the agent and keep it running until SIGINT/SIGTERM; then shut down in order and exit 0. */
export async function runAgentUntilSignal(config: TokenwattConfig, hooks: RunHooks, warnings: readonly string[] = []): Promise<void> {
  const log = createLogger({ level: config.logLevel, name: 'tokenwatt' });
  // The handlers go in before anything starts: a SIGTERM during start-up (a pod deleted while it
  // comes up) would otherwise take the default action and kill the process without its shutdown.
  // A signal that arrives before the agent serves is acted on once start-up is done; a second one
  // ends the process at once (a start-up stuck in a driver call can still be interrupted; SQLite
  // transactions are atomic, so exiting there half-writes nothing).
  let stopRequested: string | null = null;
  let stop: ((signal: string) => void) | null = null;
  const onSignal = (signal: string): void => {
    if (stop) return stop(signal);
    if (stopRequested === null) {
      stopRequested = signal;
      log.info({ signal }, 'signal received during start-up: shutting down once started (send it again to exit now)');
      return;
    }
    process.stderr.write(`tokenwatt: ${signal} again during start-up: exiting now\n`);
    process.exit(1);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  for (const warning of warnings) log.warn(warning);
  log.debug({ config: redactConfig(config) }, 'configuration');
  let powerSource: PowerSource;
  try {
    powerSource = hooks.powerSource ?? (await createPowerSource(config, log));
  } catch (error) {
    log.error({ err: error }, 'no usable power source');
    process.stderr.write(`tokenwatt: ${error instanceof Error ? error.message : String(error)}\n`);
    // A driver call that hung while NVML was tried must not hold the exit (exitProcess).
    exitProcess(3, log);
  }
  // The callback runs only once capture has started, after the agent below exists.
  const capture = await createRequestCapture(
    config,
    log,
    (source) => agent.metrics.captureError(source),
    (source, field) => agent.metrics.labelValueLeftOut(source, field),
  );
  const agent = new Agent({
    config,
    powerSource,
    log,
    requestSources: [...capture.sources, ...(hooks.requestSources ?? [])],
    routes: capture.routes,
  });
  try {
    await agent.init();
    await agent.start();
  } catch (error) {
    log.error({ err: error }, 'agent failed to start');
    process.stderr.write(`tokenwatt: ${error instanceof Error ? error.message : String(error)}\n`);
    await agent.shutdown().catch(() => undefined);
    exitProcess(1, log);
  }
  const onStop = hooks.onStarted?.(agent, log);
  let stopping = false;
  stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    Promise.resolve()
      .then(() => onStop?.())
      .catch((error: unknown) => log.error({ err: error }, 'shutdown hook failed'))
      .then(() => agent.shutdown())
      .then(() => {
        // A worker stuck inside a hung driver call (of this source, or of NVML tried and given up
        // on at start-up) cannot be terminated and would hold process.exit() until the driver
        // returns: exitProcess ends the process without waiting for it.
        exitProcess(0, log);
      })
      .catch((error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        exitProcess(1, log);
      });
  };
  if (stopRequested !== null) stop(stopRequested);
}

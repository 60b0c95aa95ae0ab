import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

/** The agent's logger (pino). Components that only log take {@link Log}. */
export type Logger = PinoLogger;
/** What a component needs to log: lets tests pass a recorder. */
export type Log = Pick<PinoLogger, 'info' | 'warn' | 'error' | 'debug'>;

export interface LoggerOptions {
  /** fatal, error, warn, info (default), debug, trace or silent. */
  readonly level?: string;
  /** Shown as `name` on every line. */
  readonly name?: string;
  /**
   * File descriptor or file path. Default 2 (stderr): stdout belongs to the CLI's tables and
   * JSON reports, so logs never mix into them.
   */
  readonly destination?: number | string;
  /** Fields on every line, e.g. `{ simulated: true }` so a demo's logs can never pass for a measurement. */
  readonly bindings?: Readonly<Record<string, unknown>>;
}

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/**
 * JSON lines, one per event, ISO timestamps and level names (what log pipelines such as Loki or
 * Cloud Logging parse without configuration). Writes are synchronous so nothing is lost when the
 * process exits right after logging a fatal start-up error.
 */
export function createLogger(options: LoggerOptions | string = {}): Logger {
  const { level = 'info', name, destination = 2, bindings = {} } = typeof options === 'string' ? { name: options } : options;
  if (!LEVELS.has(level)) throw new Error(`log level must be one of ${[...LEVELS].join(', ')}, got '${level}'`);
  const stream: DestinationStream = pino.destination({ dest: destination, sync: true, mkdir: typeof destination === 'string' });
  return pino(
    {
      level,
      ...(name === undefined ? {} : { name }),
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

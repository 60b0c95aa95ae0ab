import type { SourceLog } from '../../collectors/proxy/record-delivery.js';

export interface LogLine {
  readonly level: 'info' | 'warn' | 'error' | 'debug';
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

/** A pino-shaped logger that keeps what is logged, for assertions on warnings and errors. */
export function captureLog(): { log: SourceLog; lines: LogLine[]; messages: (level?: LogLine['level']) => string[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) =>
    ((first: unknown, second?: unknown) => {
      if (typeof first === 'string') lines.push({ level, msg: first, fields: {} });
      else lines.push({ level, msg: typeof second === 'string' ? second : '', fields: (first ?? {}) as Record<string, unknown> });
    }) as never;
  const log = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as SourceLog;
  const messages = (level?: LogLine['level']) => lines.filter((l) => level === undefined || l.level === level).map((l) => l.msg);
  return { log, lines, messages };
}

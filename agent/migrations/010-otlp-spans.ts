import type { Migration } from './migration.js';

/**
 * The OTLP spans a request row was taken from, by side: JSON `{"client":"<span id>","server":"<span
 * id>"}`, NULL for rows of other sources and rows stored before this version. The request id of an
 * OTLP call (`<call id>/<trace id>`) is shared by the app's client span and the engine's server
 * span of that call, so the id alone cannot tell that span sent again from another span of the
 * same side (two calls of one trace under a reused call id): the span id can, and it is kept with
 * the row it belongs to (pruned with it).
 */
export const otlpSpans: Migration = {
  version: 10,
  name: 'OTLP span ids of request rows',
  sql: `
    ALTER TABLE requests ADD COLUMN otlp_spans TEXT;
  `,
};

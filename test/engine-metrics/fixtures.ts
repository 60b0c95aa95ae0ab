import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../fixtures/engine-metrics/', import.meta.url));

/** A /metrics page from test/fixtures/engine-metrics (each names its source in its header). */
export function fixture(name: string): string {
  return readFileSync(`${dir}${name}`, 'utf8');
}

/**
 * Set the value of one series in exposition text: the line starting with `series` (name plus
 * its exact label set as written) gets `value`. Throws if no such line, so a test cannot pass
 * by editing nothing.
 */
export function withValue(text: string, series: string, value: number): string {
  let found = false;
  const out = text
    .split('\n')
    .map((line) => {
      if (!line.startsWith(`${series} `)) return line;
      found = true;
      return `${series} ${value}`;
    })
    .join('\n');
  if (!found) throw new Error(`no series ${series} in the text`);
  return out;
}

/** Add `delta` to one series' value. */
export function bump(text: string, series: string, delta: number): string {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no series ${series} in the text`);
  return withValue(text, series, Number(line.slice(series.length + 1).trim().split(/\s+/)[0]) + delta);
}

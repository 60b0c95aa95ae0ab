/**
 * Every key of the file-only sections (carbon, hostPower, proxy, engineMetrics, otlp) is named in
 * README.md's reference of them: a key the agent accepts must be one a reader can find.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configSchema } from '../../agent/config-schema.js';

interface ZodLike {
  readonly _zod: { readonly def: { readonly type: string; readonly innerType?: ZodLike; readonly element?: ZodLike; readonly in?: ZodLike; readonly shape?: Record<string, ZodLike> } };
  readonly shape?: Record<string, ZodLike>;
}

/** Key paths under a schema: `a.b`, `a.list[].c`; a record (user-chosen keys) is a leaf. */
function keyPaths(schema: ZodLike, prefix: string): string[] {
  let s = schema;
  for (;;) {
    const def = s._zod.def;
    if (['optional', 'default', 'prefault', 'nullable', 'readonly'].includes(def.type) && def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else break;
  }
  const def = s._zod.def;
  // A list of objects has keys of its own (`targets[].url`); a list of values (`gpus`) is a leaf.
  if (def.type === 'array' && def.element) {
    const inner = keyPaths(def.element, `${prefix}[]`);
    return inner.length === 1 && inner[0] === `${prefix}[]` ? [prefix] : inner;
  }
  const shape = s.shape ?? def.shape;
  if (def.type !== 'object' || shape === undefined) return [prefix];
  return Object.entries(shape).flatMap(([key, child]) => keyPaths(child, `${prefix}.${key}`));
}

const SECTIONS = ['carbon', 'hostPower', 'proxy', 'engineMetrics', 'otlp'] as const;

test('README names every key of the config file\'s sections, as `section.key`', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const shape = (configSchema as unknown as ZodLike).shape ?? {};
  const paths = SECTIONS.flatMap((section) => keyPaths(shape[section] as ZodLike, section));
  assert.ok(paths.includes('proxy.requestTimeoutMs') && paths.includes('engineMetrics.targets[].url') && paths.includes('carbon.market.instruments[].validFrom'), `the walk sees nested keys: ${paths.join(', ')}`);
  const missing = paths.filter((p) => !readme.includes(`\`${p}\``));
  assert.deepEqual(missing, []);
});

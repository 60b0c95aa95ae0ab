import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../agent/config.js';

/** Files in a fresh directory; `body` gets their paths by name. */
export function withFiles<T>(files: Record<string, string>, body: (path: (name: string) => string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-config-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return body((name) => join(dir, name));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The errors of a configuration that must be refused. */
export function errorsOf(input: Parameters<typeof loadConfig>[0]): readonly string[] {
  const result = loadConfig(input);
  if (result.ok) assert.fail('expected the config to be refused');
  return result.errors;
}

/** Assert each pattern matches exactly one error, and nothing else was reported. */
export function assertExactly(errors: readonly string[], patterns: readonly RegExp[]): void {
  for (const pattern of patterns) {
    const hits = errors.filter((e) => pattern.test(e));
    assert.equal(hits.length, 1, `expected one error matching ${pattern}, got:\n${errors.join('\n')}`);
  }
  assert.equal(errors.length, patterns.length, `unexpected extra errors:\n${errors.join('\n')}`);
}

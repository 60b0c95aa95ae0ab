import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../../agent/cli-program.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FOLDERS = ['agent', 'collectors', 'model', 'exporters', 'schemas', 'deploy', 'bench', 'scripts', 'test'];

/** Repository paths a text names: `*.md` files, and paths under the repository's folders. */
function namedPaths(text: string): string[] {
  const docs = [...text.matchAll(/(?<![\w/.-])([A-Za-z][\w-]*(?:\/[\w.-]+)*\.md)\b/g)].map((m) => m[1] as string);
  const under = [...text.matchAll(new RegExp(`(?<![\\w/.:-])((?:${FOLDERS.join('|')})/[\\w./-]*[\\w/])`, 'g'))].map((m) => m[1] as string);
  return [...new Set([...docs, ...under])];
}

test('the READMEs and every command\'s --help name only files the repository has', async () => {
  const program = await buildProgram();
  const texts: [string, string][] = [
    ['README.md', readFileSync(join(REPO, 'README.md'), 'utf8')],
    ['deploy/README.md', readFileSync(join(REPO, 'deploy/README.md'), 'utf8')],
    ...program.commands.map((c): [string, string] => [`${c.name()} --help`, c.helpInformation()]),
  ];
  const missing = texts.flatMap(([where, text]) => namedPaths(text).filter((p) => !existsSync(join(REPO, p))).map((p) => `${where}: ${p}`));
  assert.deepEqual(missing, []);
  // The check sees what it must: README names the record schema's file, and analyze's help the report type's.
  assert.ok(namedPaths(texts[0]?.[1] ?? '').includes('model/request-record.ts'));
  assert.ok(namedPaths(texts.find(([w]) => w === 'analyze --help')?.[1] ?? '').includes('model/analysis.ts'));
});

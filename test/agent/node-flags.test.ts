/**
 * The agent's node flags (agent/node-flags.ts) are given wherever the agent process starts: the
 * bin's shebang and `npm start` (the Dockerfile's ENTRYPOINT is checked in test/deploy), and the
 * shebang's `env -S` form really starts node with them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

test('the bin shebang starts node with the agent flags', async () => {
  const shebang = readFileSync(join(ROOT, 'agent/cli.ts'), 'utf8').split('\n')[0] as string;
  assert.equal(shebang, `#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
  // What the kernel runs for that line: env splits the flags and node accepts them.
  const { stdout } = await run('/usr/bin/env', ['-S', `node ${AGENT_NODE_FLAGS.join(' ')}`, '-p', 'JSON.stringify(process.execArgv)']);
  assert.deepEqual((JSON.parse(stdout) as string[]).slice(0, AGENT_NODE_FLAGS.length), AGENT_NODE_FLAGS);
});

test('npm start runs the demo, and npm run bench its in-process benchmarks, with the agent flags', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.match(pkg.scripts.start ?? '', new RegExp(`node ${AGENT_NODE_FLAGS.join(' ')} dist/agent/cli\\.js demo$`));
  assert.match(pkg.scripts.bench ?? '', new RegExp(`node ${AGENT_NODE_FLAGS.join(' ')} --import tsx bench/run\\.ts$`));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildProgram, commandsFor } from '../../agent/cli-program.js';

const ALL = ['run', 'demo', 'analyze', 'export', 'doctor'];

test('commandsFor: the command named first, else every command (help, --version, a typo to suggest for)', () => {
  assert.deepEqual(commandsFor(['run', '--power', 'simulated']), ['run']);
  assert.deepEqual(commandsFor(['export', '--quarter', '2026-Q3']), ['export']);
  for (const args of [[], ['--help'], ['--version'], ['help', 'run'], ['rnu'], ['toString'], ['__proto__']]) {
    assert.deepEqual(commandsFor(args), ALL, args.join(' '));
  }
});

test('buildProgram adds the commands asked for, each with its own options, and refuses an unknown one', async () => {
  const all = await buildProgram();
  assert.deepEqual(all.commands.map((c) => c.name()), ALL);
  const run = await buildProgram(['run']);
  assert.deepEqual(run.commands.map((c) => c.name()), ['run']);
  assert.ok(run.commands[0]?.options.some((o) => o.long === '--power'), 'run keeps its options');
  await assert.rejects(buildProgram(['nosuch']), /no command "nosuch"/);
});

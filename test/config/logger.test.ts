import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../agent/logger.js';

test('JSON lines with level name, ISO time, name and bindings; below the level is dropped', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-log-'));
  try {
    const file = join(dir, 'sub', 'agent.log');
    const log = createLogger({ level: 'info', name: 'tokenwatt', destination: file, bindings: { simulated: true } });
    log.debug('not shown');
    log.info({ gpus: 2 }, 'power source ready');
    log.warn('careful');
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    const [first, second] = lines;
    assert.equal(first?.level, 'info');
    assert.equal(first?.msg, 'power source ready');
    assert.equal(first?.gpus, 2);
    assert.equal(first?.name, 'tokenwatt');
    assert.equal(first?.simulated, true);
    assert.ok(!Number.isNaN(Date.parse(String(first?.time))), 'ISO timestamp');
    assert.equal(second?.level, 'warn');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('createLogger(name) works as a shorthand and a bad level is refused by name', () => {
  assert.equal(createLogger({ level: 'silent' }).level, 'silent');
  assert.equal(createLogger('tokenwatt').level, 'info');
  assert.throws(() => createLogger({ level: 'loud' }), /log level must be one of .*got 'loud'/);
});

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import Database, { SQLITE_DRIVER_PACKAGE, sqliteDriverDescription } from '../../agent/sqlite-driver.js';

const require = createRequire(import.meta.url);

describe('the SQLite driver for this Node', () => {
  it('is better-sqlite3 13 (Node-API) where Node has Node-API 10, else better-sqlite3 12', () => {
    const napi = Number(process.versions.napi);
    const expected = napi >= 10 ? { pkg: 'better-sqlite3-napi', major: '13' } : { pkg: 'better-sqlite3', major: '12' };
    assert.equal(SQLITE_DRIVER_PACKAGE, expected.pkg, `Node ${process.version}, Node-API ${napi}`);
    const { version } = require(`${expected.pkg}/package.json`) as { version: string };
    assert.equal(version.split('.')[0], expected.major);
    assert.match(sqliteDriverDescription(), new RegExp(`^better-sqlite3 ${version.replaceAll('.', '\\.')} \\(`));
  });

  it('opens, prepares, iterates raw rows and runs transactions (the API the ledger uses)', () => {
    const db = new Database(':memory:');
    try {
      db.exec('CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER) STRICT');
      const insert = db.prepare('INSERT INTO t VALUES (?, ?) ON CONFLICT (id) DO NOTHING');
      const many = db.transaction((rows: [string, number][]) => rows.reduce((sum, r) => sum + insert.run(...r).changes, 0));
      assert.equal(many([['a', 1], ['b', 2], ['a', 3]]), 2);
      const rows = [...(db.prepare('SELECT id, n FROM t ORDER BY id').raw(true).iterate() as IterableIterator<unknown[]>)];
      assert.deepEqual(rows, [['a', 1], ['b', 2]]);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'memory');
    } finally {
      db.close();
    }
  });
});

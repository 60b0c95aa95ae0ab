import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import * as ledgerModule from '../../agent/ledger.js';
import { Ledger } from '../../agent/ledger.js';
import { migrate } from '../../agent/migrations/index.js';
import { initialSchema } from '../../agent/migrations/001-initial.js';
import { epochMs } from '../../model/units.js';
import { RETENTION, T0, tempDir } from './temp-ledger.js';

const TOKENWATT_APP_ID = 0x546f6b57;
const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

function fileState(path: string): { tables: string[]; userVersion: number; journal: string; appId: number } {
  const db = new Database(path, { readonly: true });
  try {
    return {
      tables: (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name),
      userVersion: db.pragma('user_version', { simple: true }) as number,
      journal: db.pragma('journal_mode', { simple: true }) as string,
      appId: db.pragma('application_id', { simple: true }) as number,
    };
  } finally {
    db.close();
  }
}

function writerRow(path: string): Record<string, unknown> | undefined {
  const db = new Database(path, { readonly: true });
  try {
    const row = db.prepare("SELECT value FROM agent_state WHERE key = 'writer'").get() as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as Record<string, unknown>) : undefined;
  } finally {
    db.close();
  }
}

// --- defect 1: a second writer on the same file ---

test('a second writer on the same file is refused, naming the file and the holder; after the first closes it opens', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'shared.db');
  const first = Ledger.open(path, { node: 'n', retention: RETENTION });
  let firstOpen = true;
  t.after(() => firstOpen && first.close());
  assert.throws(
    () => Ledger.open(path, { node: 'n', retention: RETENTION }),
    (err: Error) => err.message.startsWith(`cannot open the ledger ${path}: another tokenwatt agent writes to it (pid ${process.pid} on host ${hostname()}`),
  );
  // Readers (export) take no lease.
  const reader = Ledger.openReadOnly(path);
  reader.close();
  first.close();
  firstOpen = false;
  assert.equal(writerRow(path), undefined, 'close releases the lease');
  const second = Ledger.open(path, { node: 'n', retention: RETENTION });
  assert.equal(second.leaseTakenOver, null);
  second.close();
});

test('an older ledger a live agent writes is refused before this open migrates or stamps it: not a byte changes', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'live.db');
  const live = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => live.close());
  // As a ledger written before application_id existed: an open that migrates stamps it.
  const db = new Database(path);
  db.pragma('application_id = 0');
  db.close();
  const bytes = readFileSync(path);
  const wal = readFileSync(`${path}-wal`);
  assert.throws(() => Ledger.open(path, { node: 'n', retention: RETENTION }), /another tokenwatt agent writes to it/);
  assert.equal(fileState(path).appId, 0, 'not stamped by the refused open');
  assert.deepEqual(readFileSync(path), bytes, 'the file is as it was');
  assert.deepEqual(readFileSync(`${path}-wal`), wal, 'and so is its WAL');
});

test('a lease left by a dead process on this host is taken over, and says so', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'crashed.db');
  // A process that opens the ledger and dies without closing it (as kill -9 would leave it).
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', `
    import { Ledger } from ${JSON.stringify(new URL('../../agent/ledger.ts', import.meta.url).pathname)};
    Ledger.open(${JSON.stringify(path)}, { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
    console.log(process.pid);
    process.exit(0);
  `], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  const deadPid = Number(child.stdout.trim());
  assert.equal(writerRow(path)?.pid, deadPid, 'the dead process left its lease');
  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  assert.equal(ledger.leaseTakenOver?.holder.pid, deadPid);
  assert.match(ledger.leaseTakenOver?.reason ?? '', new RegExp(`process ${deadPid} is gone`));
  assert.equal(writerRow(path)?.pid, process.pid);
});

test('a holder on another host is refused while its heartbeat is fresh and taken over once it is stale', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'remote.db');
  Ledger.open(path, { node: 'n', retention: RETENTION }).close();
  const plant = (heartbeatMs: number): void => {
    const db = new Database(path);
    db.prepare("INSERT OR REPLACE INTO agent_state (key, value) VALUES ('writer', ?)").run(JSON.stringify({
      host: 'other-node', pid: 4242, boot: 'x', pidNamespace: 'y', token: 'remote', startedMs: heartbeatMs, heartbeatMs,
    }));
    db.close();
  };
  plant(Date.now());
  assert.throws(() => Ledger.open(path, { node: 'n', retention: RETENTION }), /another tokenwatt agent writes to it \(pid 4242 on host other-node/);
  plant(Date.now() - 120_000);
  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  assert.match(ledger.leaseTakenOver?.reason ?? '', /heartbeat is 12\d s old/);
  // The heartbeat refreshes the lease, and reports a takeover by someone else.
  assert.equal(ledger.heartbeat(0), null);
  assert.ok(Math.abs(Number(writerRow(path)?.heartbeatMs) - Date.now()) < 5_000);
  plant(Date.now());
  assert.equal(ledger.heartbeat(0)?.host, 'other-node');
});

test('a settlement whose expected settled_until is not the ledger\'s is refused with a typed error and writes nothing', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ledger = Ledger.open(join(dir, 'l.db'), { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const empty = { gpuTotals: [], requestDeltas: [], finalized: [], usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [] };
  ledger.commitSettlement({ ...empty, periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 1000), settledUntilMs: epochMs(T0 + 1000) });
  const Mismatch = (ledgerModule as Record<string, unknown>).SettledUntilMismatchError as (new (...args: never[]) => Error) | undefined;
  assert.ok(Mismatch, 'ledger.ts exports SettledUntilMismatchError');
  assert.throws(
    () => ledger.commitSettlement({ ...empty, periodStartMs: epochMs(T0 + 2000), periodEndMs: epochMs(T0 + 3000), settledUntilMs: epochMs(T0 + 3000), expectedSettledUntilMs: epochMs(T0 + 2000) } as never),
    (err: unknown) => err instanceof Mismatch && (err as unknown as { storedMs: number }).storedMs === T0 + 1000,
  );
  assert.equal(ledger.getSettledUntil(), T0 + 1000);
});

// --- defect 2: a foreign SQLite file ---

test('another application\'s SQLite file is refused before anything is written to it', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const cases: [string, (db: InstanceType<typeof Database>) => void, RegExp][] = [
    ['users.db', (db) => db.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)'), /it has tables users and no tokenwatt schema/],
    ['requests.db', (db) => db.exec('CREATE TABLE requests (id INTEGER PRIMARY KEY)'), /it has tables requests and no tokenwatt schema/],
    ['versioned.db', (db) => { db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY)'); db.pragma('user_version = 1'); }, /schema version 1 but not the tokenwatt tables/],
    ['app.db', (db) => db.pragma('application_id = 1234'), /application_id is 1234/],
    ['views.db', (db) => db.exec('CREATE VIEW v AS SELECT 1 AS one'), /it has 1 view\(s\), trigger\(s\) or index\(es\) and no tokenwatt schema/],
  ];
  for (const [name, make, why] of cases) {
    const path = join(dir, name);
    const db = new Database(path);
    make(db);
    db.close();
    const before = fileState(path);
    const bytes = readFileSync(path);
    assert.throws(
      () => Ledger.open(path, { node: 'n', retention: RETENTION }),
      (err: Error) => err.message.startsWith(`cannot open the ledger ${path}: it is not a tokenwatt ledger`) && why.test(err.message) && /--db/.test(err.message),
      name,
    );
    assert.deepEqual(fileState(path), before, `${name} is left as it was`);
    assert.deepEqual(readFileSync(path), bytes, `${name}: not a byte changed`);
    assert.throws(() => Ledger.openReadOnly(path), /not a tokenwatt ledger|no schema version/, `${name}: read-only open refuses it too`);
  }
});

test('a ledger gets tokenwatt\'s application_id; one written before it existed (schema 1, id 0) still opens', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const fresh = join(dir, 'fresh.db');
  Ledger.open(fresh, { node: 'n', retention: RETENTION }).close();
  assert.equal(fileState(fresh).appId, TOKENWATT_APP_ID);

  const old = join(dir, 'v1.db');
  const v1 = new Database(old);
  v1.pragma('journal_mode = WAL');
  migrate(v1, [initialSchema], old);
  v1.close();
  assert.equal(fileState(old).appId, 0);
  const reader = Ledger.openReadOnly(old);
  reader.close();
  const ledger = Ledger.open(old, { node: 'n', retention: RETENTION });
  ledger.close();
  assert.equal(fileState(old).appId, TOKENWATT_APP_ID);
});

// --- defect 4: errors that name the file and say what to do ---

test('a ledger that cannot be opened gives an error naming the file, the reason and a hint', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const garbage = join(dir, 'garbage.db');
  writeFileSync(garbage, 'this is not a sqlite file at all'.repeat(200));
  assert.throws(
    () => Ledger.open(garbage, { node: 'n', retention: RETENTION }),
    (err: Error) => err.message === `cannot open the ledger ${garbage}: the file is not a SQLite database (move it away or point --db / TOKENWATT_DB at another file)`,
  );

  // A valid header with its schema pages overwritten.
  const corrupt = join(dir, 'corrupt.db');
  Ledger.open(corrupt, { node: 'n', retention: RETENTION }).close();
  const bytes = readFileSync(corrupt);
  bytes.fill(0x5a, 100, Math.min(bytes.length, 8192));
  writeFileSync(corrupt, bytes);
  assert.throws(
    () => Ledger.open(corrupt, { node: 'n', retention: RETENTION }),
    (err: Error) => err.message.startsWith(`cannot open the ledger ${corrupt}: the database file is corrupt`) && /backup/.test(err.message),
  );

  // --db naming a directory.
  const directory = join(dir, 'a-directory');
  mkdirSync(directory);
  assert.throws(
    () => Ledger.open(directory, { node: 'n', retention: RETENTION }),
    (err: Error) => err.message.startsWith(`cannot open the ledger ${directory}: `) && /writable|directory/.test(err.message),
  );

  // A path below a regular file (its directory cannot be created).
  const belowFile = join(garbage, 'ledger.db');
  assert.throws(
    () => Ledger.open(belowFile, { node: 'n', retention: RETENTION }),
    (err: Error) => err.message.startsWith(`cannot open the ledger ${belowFile}: `) && /not a directory/.test(err.message),
  );
});

// --- defect 7: readers accept every version they can read ---

test('a reader (export) opens a version-1 ledger as it is, without migrating it', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v1.db');
  const v1 = new Database(path);
  v1.pragma('journal_mode = WAL');
  migrate(v1, [initialSchema], path);
  v1.prepare(`INSERT INTO hourly_energy VALUES (?, 'node-a', 'GPU-0', 10, 2, 3, 5, 0, 0, 1000, 0, 0, 0)`).run(T0);
  v1.prepare(`INSERT INTO hourly_host VALUES (?, 'node-a', 7, 1)`).run(T0);
  v1.close();
  const reader = Ledger.openReadOnly(path);
  t.after(() => reader.close());
  assert.equal(reader.schemaVersion(), 1);
  assert.deepEqual(reader.readHourlyEnergy(...ALL).map((r) => r.measuredJ), [10]);
  const totals = reader.counterTotals();
  assert.deepEqual(totals.gpus.map((g) => [g.gpuUuid, g.measuredJ]), [['GPU-0', 10]]);
  assert.equal(totals.hostJ, 7);
  assert.equal(fileState(path).userVersion, 1, 'the reader changed nothing');
});

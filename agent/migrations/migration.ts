import type { Database } from 'better-sqlite3';

/** One step of the ledger schema. Versions start at 1 and increase by one. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** SQL run as one script, inside the migration's transaction. */
  readonly sql: string;
}

/** The ledger file was written by a newer tokenwatt (or is not a ledger this code can use). */
export class LedgerVersionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LedgerVersionError';
  }
}

/** Latest schema version of an ordered migration list (0 for an empty list). */
export function latestVersion(migrations: readonly Migration[]): number {
  return migrations.at(-1)?.version ?? 0;
}

function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration list out of order: position ${i} has version ${m.version}`);
  });
}

/**
 * Bring the database to the latest schema. The version lives in PRAGMA user_version; each
 * migration runs in its own IMMEDIATE transaction together with the version bump, so a failed
 * step leaves the file at the previous version, and two processes opening the same new file
 * cannot both apply a step. Returns the version the file had before.
 */
export function migrate(db: Database, migrations: readonly Migration[], file: string): number {
  checkOrder(migrations);
  const latest = latestVersion(migrations);
  const versionOf = (): number => db.pragma('user_version', { simple: true }) as number;
  const before = versionOf();
  assertNotNewer(before, latest, file);
  for (const m of migrations) {
    if (m.version <= before) continue;
    db.transaction(() => {
      const now = versionOf(); // another process may have migrated since we looked
      if (now >= m.version) return;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return before;
}

/** Refuse a file whose schema is newer than this code, with what to do about it. */
export function assertNotNewer(version: number, latest: number, file: string): void {
  if (version > latest) {
    throw new LedgerVersionError(
      `ledger ${file} has schema version ${version}, newer than this tokenwatt understands (${latest}): ` +
        'upgrade tokenwatt, or point --db at another file',
    );
  }
}

import type { Database as Db } from 'better-sqlite3';
import { LedgerVersionError } from './migrations/index.js';

/**
 * PRAGMA application_id of a tokenwatt ledger ("TokW"), written in the file header at open. A
 * ledger written before it existed (schema versions 1 and 2) has 0 and is recognised by its tables.
 */
export const TOKENWATT_APPLICATION_ID = 0x546f6b57;

/** The lowest schema version the readers (export, the demo summary) can read. */
export const MIN_READABLE_VERSION = 1;

/** Tables every tokenwatt ledger has had since schema version 1. */
const CORE_TABLES = ['agent_state', 'power_samples', 'requests', 'periods', 'hourly_energy', 'hourly_usage'] as const;

const OTHER_FILE_HINT = 'point --db / TOKENWATT_DB at another file';

/** What the file says it is, read without writing anything. */
export interface LedgerFileFacts {
  readonly userVersion: number;
  readonly applicationId: number;
  readonly tables: readonly string[];
  /** Views, triggers and indexes: a file with only these is not empty either. */
  readonly otherObjects: number;
}

/** Read the header fields and the table names (reads only; a file that is not SQLite throws SQLITE_NOTADB here). */
export function readFileFacts(db: Db): LedgerFileFacts {
  const userVersion = db.pragma('user_version', { simple: true }) as number;
  const applicationId = db.pragma('application_id', { simple: true }) as number;
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  const otherObjects = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type <> 'table' AND name NOT LIKE 'sqlite_%'").get() as { n: number }).n;
  return { userVersion, applicationId, tables, otherObjects };
}

/**
 * Refuse a file that another application wrote, before anything is written to it: one whose
 * application_id is not tokenwatt's, one with tables but no schema version, and one with a schema
 * version but without the tokenwatt tables. An empty file (or a new one) passes: it becomes a ledger.
 */
export function assertTokenwattFile(path: string, facts: LedgerFileFacts): void {
  const { userVersion, applicationId, tables, otherObjects } = facts;
  if (applicationId === TOKENWATT_APPLICATION_ID) return;
  const list = tables.length <= 8 ? tables.join(', ') : `${tables.slice(0, 8).join(', ')}, ... (${tables.length} in all)`;
  let why: string | null = null;
  if (applicationId !== 0) why = `its application_id is ${applicationId} (tokenwatt's is ${TOKENWATT_APPLICATION_ID}): another application's database`;
  else if (userVersion === 0 && tables.length > 0) why = `it has tables ${list} and no tokenwatt schema`;
  else if (userVersion === 0 && otherObjects > 0) why = `it has ${otherObjects} view(s), trigger(s) or index(es) and no tokenwatt schema`;
  else if (userVersion > 0) {
    const missing = CORE_TABLES.filter((t) => !tables.includes(t));
    if (missing.length > 0) why = `it has schema version ${userVersion} but not the tokenwatt tables (${missing.join(', ')} missing; it has ${list || 'no tables'})`;
  }
  if (why !== null) {
    throw new LedgerVersionError(`cannot open the ledger ${path}: it is not a tokenwatt ledger: ${why} (tokenwatt does not change a file it did not create: ${OTHER_FILE_HINT})`);
  }
}

/** The ledger file cannot be opened: the message names the file, the reason and what to do. */
export class LedgerOpenError extends Error {
  constructor(
    message: string,
    /** SQLite or system error code of the cause, when there is one (SQLITE_NOTADB, EACCES...). */
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LedgerOpenError';
  }
}

/**
 * An error from opening the ledger, as `cannot open the ledger <path>: <reason> (<hint>)`, with the
 * original as its cause. Errors that already say so (a foreign file, a held lease, a newer schema)
 * are returned as they are.
 */
export function openError(path: string, err: unknown): Error {
  if (err instanceof LedgerVersionError || err instanceof LedgerOpenError) return err;
  if (err instanceof Error && err.name === 'LedgerLockedError') return err;
  const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
  const message = err instanceof Error ? err.message : String(err);
  const uid = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '';
  let reason = message;
  let hint = OTHER_FILE_HINT;
  if (code === 'SQLITE_NOTADB') {
    reason = 'the file is not a SQLite database';
    hint = `move it away or ${OTHER_FILE_HINT}`;
  } else if (code?.startsWith('SQLITE_CORRUPT')) {
    reason = `the database file is corrupt (${message})`;
    hint = `restore it from a backup, or move it away (\`sqlite3 FILE .recover\` may salvage its rows) and let the agent start a new ledger, or ${OTHER_FILE_HINT}`;
  } else if (code?.startsWith('SQLITE_CANTOPEN')) {
    reason = `SQLite cannot open the file (${message})`;
    hint = `check that --db names a file, not a directory, and that the file and its directory exist and are writable by this user${uid}; or ${OTHER_FILE_HINT}`;
  } else if (code?.startsWith('SQLITE_READONLY')) {
    reason = `the file or its directory is read-only (${message})`;
    hint = `the agent needs to write the file and, beside it, its -wal and -shm files: make the directory and the file writable by this user${uid} or mount the volume read-write; or ${OTHER_FILE_HINT}`;
  } else if (code === 'SQLITE_BUSY' || code?.startsWith('SQLITE_BUSY_')) {
    reason = `another process keeps it locked (${message})`;
    hint = 'stop the process that holds a write transaction on it (a sqlite3 shell?), then start again';
  } else if (code === 'SQLITE_FULL') {
    reason = `the disk is full (${message})`;
    hint = 'free space on its volume';
  } else if (code?.startsWith('SQLITE_IOERR')) {
    reason = `I/O error (${message})`;
    hint = `check the disk and the volume the file is on, or ${OTHER_FILE_HINT}`;
  } else if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    reason = `cannot create its directory (${message})`;
    hint = `make the directory writable by this user${uid}, or ${OTHER_FILE_HINT}`;
  } else if (code === 'ENOTDIR' || code === 'EEXIST') {
    reason = `a part of its path is not a directory (${message})`;
  }
  return new LedgerOpenError(`cannot open the ledger ${path}: ${reason} (${hint})`, code, { cause: err });
}

import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * The SQLite driver for this Node: better-sqlite3 13 (built on Node-API) where Node offers
 * Node-API 10 (Node 22.14 and later), better-sqlite3 12 (compiled at install) on Node 20.
 *
 * Why two: better-sqlite3 12 wraps its objects with node::ObjectWrap, and since Node 24.19 the
 * destructor of an ObjectWrap aborts the process when the garbage collector runs it outside a
 * JavaScript context (an idle-time collection): the agent died with SIGABRT within two minutes on
 * Node 24.21 (StatementIterator::~StatementIterator). better-sqlite3 13 does not use ObjectWrap,
 * but needs Node-API 10, which Node 20 lacks. Both have the same JavaScript API.
 */
export const SQLITE_DRIVER_PACKAGE: 'better-sqlite3-napi' | 'better-sqlite3' = Number(process.versions.napi) >= 10 ? 'better-sqlite3-napi' : 'better-sqlite3';

const require = createRequire(import.meta.url);

/** better-sqlite3's Database constructor, from {@link SQLITE_DRIVER_PACKAGE}. */
const Database = require(SQLITE_DRIVER_PACKAGE) as typeof BetterSqlite3;
export default Database;

/** "better-sqlite3 13.2.0 (Node-API)": for logs and `tokenwatt doctor`. */
export function sqliteDriverDescription(): string {
  const { version } = require(`${SQLITE_DRIVER_PACKAGE}/package.json`) as { version: string };
  return `better-sqlite3 ${version} (${SQLITE_DRIVER_PACKAGE === 'better-sqlite3-napi' ? 'Node-API' : 'compiled for this Node'})`;
}

import { parentPort, workerData } from 'node:worker_threads';
import Database from '../../agent/sqlite-driver.js';
import { aggregateUsageInSqlite } from './sqlite-usage-aggregate.js';
import type { UsageWorkerJob } from './parallel-usage-aggregate.js';

/** Worker thread: sums one day range of a ledger's usage on its own read-only connection. */
const job = workerData as UsageWorkerJob;
const db = new Database(job.path, { readonly: true, fileMustExist: true });
try {
  db.pragma('temp_store = MEMORY');
  parentPort?.postMessage(aggregateUsageInSqlite(db, job.range, job.factors));
} finally {
  db.close();
}

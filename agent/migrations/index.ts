import { initialSchema } from './001-initial.js';
import { prunedTotals } from './002-pruned-totals.js';
import { taskRequestsIndex } from './003-task-requests.js';
import { hostReadings } from './004-host-readings.js';
import { requestIdIndex } from './005-request-id-index.js';
import { counterRunStart } from './006-counter-run-start.js';
import { usageByEnergyHour } from './007-usage-by-energy-hour.js';
import { seededCoveredAndHost } from './008-seeded-covered-and-host.js';
import { seedConsistency } from './009-seed-consistency.js';
import { otlpSpans } from './010-otlp-spans.js';
import { gpusAsSent } from './011-gpus-as-sent.js';
import { taskCounters } from './012-task-counters.js';
import { prunedUsageBySimulated } from './013-pruned-usage-by-simulated.js';
import { taskCounted } from './014-task-counted.js';
import type { Migration } from './migration.js';

/** Every ledger migration, in order. Append only: never edit a released step. */
export const LEDGER_MIGRATIONS: readonly Migration[] = [initialSchema, prunedTotals, taskRequestsIndex, hostReadings, requestIdIndex, counterRunStart, usageByEnergyHour, seededCoveredAndHost, seedConsistency, otlpSpans, gpusAsSent, taskCounters, prunedUsageBySimulated, taskCounted];

export { LedgerVersionError, latestVersion, migrate } from './migration.js';
export type { Migration } from './migration.js';

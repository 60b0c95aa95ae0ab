import { Ledger } from '../../agent/ledger.js';
import type { SettlementCommit } from '../../agent/ledger-types.js';
import { epochMs } from '../../model/units.js';
import type { Rollups } from './rollup-fixtures.js';

export const RETENTION = { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } as const;

/**
 * Write rollups into a ledger file through the ledger's own settlement path (one commit per
 * day), as the agent does; returns the path.
 */
export function writeLedger(path: string, node: string, rollups: Rollups): string {
  const ledger = Ledger.open(path, { node, retention: RETENTION });
  try {
    const hours = [...new Set(rollups.energy.map((r) => r.hourStartMs as number))].sort((a, b) => a - b);
    const days = [...new Set(hours.map((h) => Math.floor(h / 86_400_000)))];
    for (const day of days) {
      const from = day * 86_400_000;
      const to = from + 86_400_000;
      const inDay = <T extends { hourStartMs: number }>(rows: readonly T[]): T[] => rows.filter((r) => r.hourStartMs >= from && r.hourStartMs < to);
      const commit: SettlementCommit = {
        periodStartMs: epochMs(from),
        periodEndMs: epochMs(to),
        gpuTotals: [],
        requestDeltas: [],
        finalized: [],
        usageRows: inDay(rollups.usage),
        energyRows: inDay(rollups.energy),
        hostRows: inDay(rollups.host),
        qualityRows: inDay(rollups.quality),
        taskDeltas: rollups.tasks
          .filter((t) => t.lastEndMs >= from && t.lastEndMs < to)
          .map((t) => ({
            taskId: t.taskId,
            requests: t.requests,
            joules: t.joules,
            wasteJ: t.wasteJ,
            completionTokens: t.completionTokens,
            firstStartMs: t.firstStartMs,
            lastEndMs: t.lastEndMs,
            lastStatus: t.succeeded ? 'ok' : 'error',
            tier: t.tier,
            team: t.team,
            feature: t.feature,
          })),
        settledUntilMs: epochMs(to),
      };
      ledger.commitSettlement(commit);
    }
  } finally {
    ledger.close();
  }
  return path;
}

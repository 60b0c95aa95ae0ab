import type { Migration } from './migration.js';

/**
 * Hourly usage rows book a request's energy in the hours it was drawn, no longer whole in the hour
 * it ended (its request and token counts stay there): an hour's usage energy then matches the
 * attributed energy of its energy rows, which the ESG export's fully loaded shares rely on.
 *
 * - requests.before_end_hour_j holds, while a request settles, the energy it drew in hours before
 *   the one it ends in (JSON: hour start ms -> [static, dynamic, prefill, decode] joules); the rest
 *   is in that last hour. Requests settling when the file is migrated have drawn nothing recorded
 *   there yet, so their energy so far stays with their end hour, as before.
 * - agent_state 'usage_by_energy_hour_from' records where settlement stood at the migration: the
 *   hourly usage rows of earlier hours were written the old way (a reader can say so).
 *
 * The hourly_usage table itself is unchanged: readers of every version read it alike.
 */
export const usageByEnergyHour: Migration = {
  version: 7,
  name: 'usage booked in the hours its energy was drawn',
  sql: `
    ALTER TABLE requests ADD COLUMN before_end_hour_j TEXT NOT NULL DEFAULT '{}';
    INSERT OR REPLACE INTO agent_state (key, value)
      SELECT 'usage_by_energy_hour_from', coalesce((SELECT value FROM agent_state WHERE key = 'settled_until_ms'), '0');
  `,
};

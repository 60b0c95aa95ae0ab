import type { Migration } from './migration.js';

/**
 * requests.gpus_sent: the GPU references a record gave (JSON), where they are not the resolved
 * UUIDs themselves (indexes, MIG device UUIDs, another case). A resend under the same request_id
 * is compared with what was sent, so one naming index 1 again after the index-to-UUID mapping
 * changed (a GPU added, MIG reconfigured, another device order after a restart) is the duplicate it
 * is, not a different record. NULL: the references were the UUIDs stored in `gpus`, no GPU was
 * named (the replica's), or the row was written before this version.
 */
export const gpusAsSent: Migration = {
  version: 11,
  name: 'request GPU references as sent',
  sql: `
    ALTER TABLE requests ADD COLUMN gpus_sent TEXT;
  `,
};

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { Ledger } from '../../agent/ledger.js';
import type { LedgerOptions } from '../../agent/ledger.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';

/** A fresh directory under the OS temp dir; `cleanup` removes it. */
export function tempDir(prefix = 'tokenwatt-ledger-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const RETENTION = { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } as const;

/** A real ledger file in a temp dir, closed and removed by `cleanup`. */
export function tempLedger(opts: Partial<LedgerOptions> = {}): { ledger: Ledger; path: string; cleanup: () => void } {
  const { dir, cleanup } = tempDir();
  const path = join(dir, 'ledger.db');
  const ledger = Ledger.open(path, { node: 'node-a', retention: RETENTION, ...opts });
  return {
    ledger,
    path,
    cleanup: () => {
      ledger.close();
      cleanup();
    },
  };
}

export const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);

/** A resolved request ending `i` seconds after T0 (2 s long), with every optional field set. */
export function request(i: number, overrides: Partial<ResolvedRequest> = {}): ResolvedRequest {
  return {
    requestId: `req-${i}`,
    taskId: `task-${i % 3}`,
    attempt: 1,
    model: 'llama-8b',
    tier: 'small',
    gpus: ['GPU-0'],
    startMs: epochMs(T0 + i * 1000 - 2000),
    firstTokenMs: epochMs(T0 + i * 1000 - 1500),
    endMs: epochMs(T0 + i * 1000),
    promptTokens: 100 + i,
    cachedTokens: 10,
    completionTokens: 20,
    reasoningTokens: 5,
    batchSize: 4,
    status: 'ok',
    labels: { team: 'search' },
    tokensEstimated: false,
    granularity: 'request',
    source: 'http',
    ...overrides,
  };
}

export const never = (): boolean => false;

/**
 * Settlement has reached `ms`: an empty settlement moves settled_until there (when it is behind).
 * Pruning takes its ages from min(now, settled_until), so a test that prunes "400 days later"
 * first lets settlement get there, as a running agent would.
 */
export function settleUpTo(ledger: Ledger, ms: number): void {
  const settled = ledger.getSettledUntil();
  if (settled !== null && settled >= ms) return;
  ledger.commitSettlement({
    periodStartMs: epochMs(ms - 1), periodEndMs: epochMs(ms), settledUntilMs: epochMs(ms),
    gpuTotals: [], requestDeltas: [], finalized: [], usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [],
  });
}

/** Prune at `nowMs` after settlement has reached it. */
export function pruneAt(ledger: Ledger, nowMs: number) {
  settleUpTo(ledger, nowMs);
  return ledger.prune(epochMs(nowMs));
}

/** Every row of every ledger table, read through a separate connection (for before/after comparisons). */
export function dumpTables(path: string): Record<string, unknown[]> {
  const db = new Database(path, { readonly: true });
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    return Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all()]));
  } finally {
    db.close();
  }
}

/** The request ids the ledger file holds, sorted, read by a connection of its own (what is committed). */
export function storedIds(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT request_id FROM requests ORDER BY request_id').all() as { request_id: string }[]).map((r) => r.request_id);
  } finally {
    db.close();
  }
}

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../agent/ledger.js';
import type { ResolvedRequest } from '../model/request-record.js';
import { epochMs } from '../model/units.js';

/**
 * Ledger.insertRequests on its own, without HTTP: the CPU time per stored record, in two shapes:
 *  - `random`: 100-record batches of random ids (`chatcmpl-<uuid>`), as the agent benchmark posts
 *    them and as OpenAI-compatible servers name requests;
 *  - `sequential`: 1,000-record batches of increasing ids, as the ingest benchmark sends them.
 * Records per shape: TOKENWATT_BENCH_LEDGER_RECORDS (default 200,000); shapes:
 * TOKENWATT_BENCH_LEDGER_SHAPES (default `random,sequential`). Only the insertRequests calls are
 * timed (process.cpuUsage), not building the records.
 *
 * On a shared VM the CPU time moves by 10-20% from run to run. `bench/instructions-per-record.sh`
 * runs this under valgrind at two sizes and prints the instructions per record, which do not.
 */
const RETENTION = { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } as const;
const SHAPES = { random: { batch: 100, id: (): string => `chatcmpl-${randomUUID()}` }, sequential: { batch: 1000, id: (n: number): string => `raw-${n}` } } as const;
type ShapeName = keyof typeof SHAPES;

function shapesWanted(): ShapeName[] {
  const names = (process.env.TOKENWATT_BENCH_LEDGER_SHAPES ?? 'random,sequential').split(',').map((s) => s.trim());
  for (const name of names) if (!(name in SHAPES)) throw new Error(`TOKENWATT_BENCH_LEDGER_SHAPES: unknown shape ${JSON.stringify(name)} (random, sequential)`);
  return names as ShapeName[];
}

function recordsWanted(): number {
  const n = Number(process.env.TOKENWATT_BENCH_LEDGER_RECORDS ?? 200_000);
  if (!(Number.isInteger(n) && n >= 0)) throw new Error(`TOKENWATT_BENCH_LEDGER_RECORDS: a whole number >= 0, got ${process.env.TOKENWATT_BENCH_LEDGER_RECORDS}`);
  return n;
}

/** Stores `total` records in `shape`; returns the CPU microseconds spent in insertRequests. */
function run(shape: ShapeName, total: number): { cpuUs: number; stored: number } {
  const { batch, id } = SHAPES[shape];
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-bench-ledger-'));
  // Virtual time: 1,000 records per second of it, so settlement windows and retention look real.
  let nowMs = Date.UTC(2026, 10, 20);
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'bench', retention: RETENTION, now: () => nowMs });
  let cpuUs = 0;
  let stored = 0;
  try {
    for (let n = 0; n < total; ) {
      const records: ResolvedRequest[] = [];
      for (let i = 0; i < batch && n < total; i++, n++) {
        records.push({
          requestId: id(n), taskId: null, attempt: null, model: 'llama-3.1-8b', tier: 'small', gpus: [`GPU-${n % 8}`],
          startMs: epochMs(nowMs - 900), firstTokenMs: epochMs(nowMs - 700), endMs: epochMs(nowMs - 100), promptTokens: 800,
          cachedTokens: (n % 3) * 200, completionTokens: 120, reasoningTokens: 0, batchSize: 1 + (n % 64), status: 'ok',
          labels: { team: `team${n % 5}` }, tokensEstimated: false, granularity: 'request', source: 'http',
        });
      }
      nowMs += batch;
      const before = process.cpuUsage();
      stored += ledger.insertRequests(records, () => false).inserted.length;
      const spent = process.cpuUsage(before);
      cpuUs += spent.user + spent.system;
    }
  } finally {
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { cpuUs, stored };
}

export async function benchLedgerInsert(): Promise<void> {
  const total = recordsWanted();
  console.log(`Ledger.insertRequests without HTTP, ${total.toLocaleString('en-US')} records per shape`);
  for (const shape of shapesWanted()) {
    const { cpuUs, stored } = run(shape, total);
    if (stored !== total) throw new Error(`${shape}: stored ${stored} of ${total} records`);
    const per = total === 0 ? 0 : cpuUs / total;
    console.log(`${shape.padEnd(11)} ${String(SHAPES[shape].batch).padStart(5)}-record batches   ${per.toFixed(2)} µs CPU per record   ${total === 0 ? '-' : Math.round(1e6 / per).toLocaleString('en-US')} records/s of CPU`);
  }
}

/**
 * Ingest throughput: the real HttpServer + IngestService + Ledger on a temp file, driven over
 * loopback by a separate client process (bench/ingest-client.ts) over keep-alive connections.
 * Measures records/s for single-record POSTs and for 1,000-record NDJSON batches, beside two
 * baselines in the same process: raw better-sqlite3 (a prepared one-row INSERT of the same rows
 * into the ledger's requests table, 1,000 to a transaction; the ratio column is against it) and
 * Ledger.insertRequests on resolved records (what the ledger adds: id lookup and index merge).
 * Prints figures and targets; asserts nothing.
 * TOKENWATT_BENCH_INGEST_PREFILL=N first stores N records with random ids (`chatcmpl-<uuid>`) in
 * the HTTP modes' ledger, an hour before the records the client sends, so those modes run on a
 * ledger as big as days of a node's records (default 0: a new ledger, as the figures recorded so
 * far). The two baselines still run on new files.
 * Standalone: node --import tsx bench/ingest.ts
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HttpServer } from '../agent/http-server.js';
import { IngestService } from '../agent/ingest-service.js';
import { Ledger, applyWriterPragmas } from '../agent/ledger.js';
import { REQUEST_INSERT_COLUMNS, RequestJsonText, writeRequestParams } from '../agent/ledger-rows.js';
import Database from '../agent/sqlite-driver.js';
import { createIngestHandler } from '../collectors/http-ingest.js';
import type { RecordContext, ResolvedRequest } from '../model/request-record.js';
import { epochMs } from '../model/units.js';

const CLIENT = fileURLToPath(new URL('./ingest-client.ts', import.meta.url));
const RETENTION = { samplesHours: 48, requestsDays: 7, rollupsDays: 400 };
const DURATION_MS = 3000;
const TARGET_SINGLE = 10_000;
const TARGET_BATCH = 100_000;
const T0 = Date.UTC(2026, 10, 1, 10);
const silent = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

interface ClientResult {
  records: number;
  requests: number;
  failures: number;
  elapsedMs: number;
  p50Ms: number;
  p99Ms: number;
}

/** A two-GPU node that accepts any time (the bench replays a fixed hour). */
const context: RecordContext = {
  resolveGpu: (ref) => (ref === '0' || ref === 'GPU-0' ? 'GPU-0' : ref === '1' || ref === 'GPU-1' ? 'GPU-1' : undefined),
  defaultGpus: () => ['GPU-0'],
  tierOf: () => 'small',
  retainedFromMs: epochMs(0),
  acceptUntilMs: epochMs(Number.MAX_SAFE_INTEGER),
};

function runClient(port: number, mode: 'single' | 'batch', connections: number): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, String(port), mode, String(DURATION_MS), String(connections)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`bench client exited with ${code}`));
      else resolve(JSON.parse(out.trim()) as ClientResult);
    });
  });
}

/** The rows the client sends (ids and times increasing), resolved, for the raw insert baseline. */
function rows(from: number, n: number): ResolvedRequest[] {
  return Array.from({ length: n }, (_, k): ResolvedRequest => {
    const i = from + k;
    const start = T0 + i;
    return {
      requestId: `raw-${i}`, taskId: null, attempt: null, model: 'llama-8b', tier: 'small', gpus: [`GPU-${i % 2}`],
      startMs: epochMs(start), firstTokenMs: epochMs(start + 80), endMs: epochMs(start + 900), promptTokens: 512,
      cachedTokens: 128, completionTokens: 64, reasoningTokens: 0, batchSize: null, status: 'ok', labels: { team: 'search' },
      tokensEstimated: false, granularity: 'request', source: 'http',
    };
  });
}

/** Ledger.insertRequests rate: resolved records, 1,000 per call, for about DURATION_MS / 2. */
function ledgerInsertRate(dir: string): number {
  const ledger = Ledger.open(join(dir, 'ledger-insert.db'), { node: 'bench', retention: RETENTION });
  try {
    const batch = 1000;
    const batches = Array.from({ length: 100 }, (_, b) => rows(b * batch, batch)); // built outside the timing
    let inserted = 0;
    let elapsedMs = 0;
    for (let round = 0; elapsedMs < DURATION_MS / 2; round += 1) {
      const rows = (batches[round % batches.length] ?? []).map((r) => ({ ...r, requestId: `${r.requestId}/${round}` }));
      const began = performance.now();
      inserted += ledger.insertRequests(rows, () => false).inserted.length;
      elapsedMs += performance.now() - began;
    }
    return inserted / (elapsedMs / 1000);
  } finally {
    ledger.close();
  }
}

/**
 * Raw better-sqlite3 insert rate: the same rows as parameter lists built outside the timing, one
 * prepared single-row INSERT each (seq left to AUTOINCREMENT), 1,000 to a transaction, into a file
 * with the ledger's schema and the ledger's pragmas. No id lookup, no index merge, no validation.
 */
function rawSqliteInsertRate(dir: string): number {
  const path = join(dir, 'raw-sqlite.db');
  Ledger.open(path, { node: 'bench', retention: RETENTION }).close(); // the schema
  const db = new Database(path);
  try {
    applyWriterPragmas(db);
    const insert = db.prepare(`INSERT INTO requests (${REQUEST_INSERT_COLUMNS.join(', ')}) VALUES (${REQUEST_INSERT_COLUMNS.map(() => '?').join(', ')})`);
    const insertBatch = db.transaction((params: readonly unknown[][]) => {
      for (const p of params) insert.run(...p);
    });
    const json = new RequestJsonText();
    const toParams = (r: ResolvedRequest, round: number): unknown[] => {
      const p: unknown[] = new Array<unknown>(REQUEST_INSERT_COLUMNS.length);
      writeRequestParams(p, 0, { ...r, requestId: `${r.requestId}/${round}` }, false, T0, json);
      return p;
    };
    const batch = 1000;
    const batches = Array.from({ length: 100 }, (_, b) => rows(b * batch, batch));
    let inserted = 0;
    let elapsedMs = 0;
    for (let round = 0; elapsedMs < DURATION_MS / 2; round += 1) {
      const params = (batches[round % batches.length] ?? []).map((r) => toParams(r, round));
      const began = performance.now();
      insertBatch(params);
      elapsedMs += performance.now() - began;
      inserted += params.length;
    }
    return inserted / (elapsedMs / 1000);
  } finally {
    db.close();
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function prefillWanted(): number {
  const n = Number(process.env.TOKENWATT_BENCH_INGEST_PREFILL ?? 0);
  if (!(Number.isInteger(n) && n >= 0)) throw new Error(`TOKENWATT_BENCH_INGEST_PREFILL: a whole number >= 0, got ${process.env.TOKENWATT_BENCH_INGEST_PREFILL}`);
  return n;
}

/** Store `n` random-id records, 1,000 to a call, ending an hour before the client's first record. */
function prefill(ledger: Ledger, n: number): void {
  const template = rows(0, 1)[0] as ResolvedRequest;
  for (let stored = 0; stored < n; ) {
    const batch: ResolvedRequest[] = [];
    for (let i = 0; i < 1000 && stored < n; i++, stored++) {
      const start = T0 - 3_600_000 - n + stored;
      batch.push({ ...template, requestId: `chatcmpl-${randomUUID()}`, gpus: [`GPU-${stored % 2}`], startMs: epochMs(start), firstTokenMs: epochMs(start + 80), endMs: epochMs(start + 900) });
    }
    ledger.insertRequests(batch, () => false);
  }
}

export async function benchIngest(): Promise<void> {
  const prefilled = prefillWanted();
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-bench-ingest-'));
  const ledgerPath = join(dir, 'ledger.db');
  const ledger = Ledger.open(ledgerPath, { node: 'bench', retention: RETENTION });
  const ingest = new IngestService({ ledger, context: () => context, settledUntil: () => null, onAccepted: () => {}, queueLimit: 200_000 });
  const server = new HttpServer({ host: '127.0.0.1', port: 0, log: silent });
  server.route('POST', '/v1/requests', createIngestHandler({ sink: ingest, bodyLimitBytes: 32 * 1024 * 1024 }));
  try {
    let prefillNote = '';
    if (prefilled > 0) {
      const began = performance.now();
      prefill(ledger, prefilled);
      const mb = statSync(ledgerPath).size / 1e6;
      prefillNote = `; the HTTP modes' ledger first holds ${fmt(prefilled)} random-id records (${fmt(mb)} MB, stored in ${((performance.now() - began) / 1000).toFixed(0)} s)`;
    }
    const { port } = await server.listen();
    const raw = rawSqliteInsertRate(dir);
    const ledgerRate = ledgerInsertRate(dir);
    // Single-record throughput is bound by round trips, so it is shown at two client
    // concurrencies: group commit merges concurrent requests into one transaction.
    const single4 = await runClient(port, 'single', 4);
    const single16 = await runClient(port, 'single', 16);
    const batch = await runClient(port, 'batch', 4);
    const rate = (r: ClientResult): number => r.records / (r.elapsedMs / 1000);
    const load = loadavg().map((l) => l.toFixed(2)).join(' ');
    console.log(`ingest bench: keep-alive client in a separate process, ${DURATION_MS / 1000} s per mode, ${cpus().length} CPUs (load ${load}), node ${process.version}${prefillNote}`);
    console.log('mode                          records/s    target  vs raw SQLite  p50 ms   p99 ms  non-202');
    const row = (name: string, r: ClientResult, target: number): void => {
      const perS = rate(r);
      console.log(
        `${name.padEnd(28)}${fmt(perS).padStart(11)}  ${`>= ${fmt(target)}`.padStart(10)}${`${(perS / raw * 100).toFixed(1)}%`.padStart(13)}` +
          `${r.p50Ms.toFixed(2).padStart(9)}${r.p99Ms.toFixed(2).padStart(9)}${String(r.failures).padStart(9)}  ${perS >= target ? 'meets target' : 'BELOW target'}`,
      );
    };
    row('HTTP single, 4 conns', single4, TARGET_SINGLE);
    row('HTTP single, 16 conns', single16, TARGET_SINGLE);
    row('HTTP NDJSON x1000, 4 conns', batch, TARGET_BATCH);
    console.log(`${'Ledger.insertRequests x1000'.padEnd(28)}${fmt(ledgerRate).padStart(11)}  ${'-'.padStart(10)}${`${(ledgerRate / raw * 100).toFixed(1)}%`.padStart(13)}`);
    console.log(`${'raw better-sqlite3 insert'.padEnd(28)}${fmt(raw).padStart(11)}  ${'-'.padStart(10)}${'100.0%'.padStart(13)}   (one-row INSERT, 1,000 to a transaction)`);
  } finally {
    await server.close();
    ingest.close();
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchIngest();
}

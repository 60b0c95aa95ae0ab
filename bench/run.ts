/**
 * `npm run bench`: every benchmark in turn, printing figures (never asserting timings).
 * Usage: npm run bench [-- name ...]   names: ingest attribution scrape agent nvml proxy export analyze ledger
 * Results are recorded by hand in BENCHMARKS.md with the machine they ran on.
 */
import os from 'node:os';

type Bench = { name: string; module: string; fn: string };
const BENCHES: Bench[] = [
  { name: 'ingest', module: './ingest.js', fn: 'benchIngest' },
  { name: 'attribution', module: './attribution.js', fn: 'benchAttribution' },
  { name: 'scrape', module: './scrape.js', fn: 'benchScrape' },
  { name: 'agent', module: './agent-overhead.js', fn: 'benchAgentOverhead' },
  { name: 'nvml', module: './nvml.js', fn: 'benchNvml' },
  { name: 'proxy', module: './proxy.js', fn: 'benchProxy' },
  { name: 'export', module: './export.js', fn: 'benchExport' },
  { name: 'analyze', module: './analyze.js', fn: 'benchAnalyze' },
  { name: 'ledger', module: './ledger-insert.js', fn: 'benchLedgerInsert' },
];

const wanted = process.argv.slice(2);
const selected = wanted.length === 0 ? BENCHES : BENCHES.filter((b) => wanted.includes(b.name));
const cpus = os.cpus();
console.log(`tokenwatt benchmarks — ${new Date().toISOString()}`);
console.log(`machine: ${cpus[0]?.model ?? 'unknown cpu'} x${cpus.length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`);
let failed = 0;
for (const bench of selected) {
  console.log(`\n=== ${bench.name} ===`);
  try {
    const mod = (await import(bench.module)) as Record<string, () => Promise<void>>;
    const fn = mod[bench.fn];
    if (typeof fn !== 'function') throw new Error(`${bench.module} does not export ${bench.fn}()`);
    await fn();
  } catch (error) {
    failed += 1;
    console.log(`benchmark ${bench.name} failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  }
}
process.exit(failed === 0 ? 0 : 1);

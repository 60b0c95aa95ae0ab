/**
 * Benchmark of `tokenwatt export`: a quarter of one busy node (90 days, hourly, 2,000 label
 * combinations) exported in every format, in two shapes: every combination active every hour
 * (4.32 million usage rows, the worst case) and 400 of them active in any hour (864,000 rows).
 * Each export runs in its own child process so its peak RSS is its own. Targets (issue 5):
 * <= 5 s and <= 300 MB per format. Prints figures; asserts nothing.
 *
 *   node --import tsx bench/export.ts
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ledger } from '../agent/ledger.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { runExport } from '../agent/commands/export.js';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow } from '../model/rollup-types.js';
import { epochMs } from '../model/units.js';
import type { TaskDelta } from '../agent/ledger-types.js';

const HOUR = 3_600_000;
const DAYS = 90;
const COMBINATIONS = 2000;
const GPUS = 8;
const TASKS_PER_HOUR = 200;
const FROM = Date.UTC(2026, 6, 1);
const TARGET_SECONDS = 5;
const TARGET_MB = 300;
const FORMATS = [
  ['json', 'report.json'],
  ['csv', 'report.csv'],
  ['html', 'report.html'],
  ['impact', 'report.yaml'],
] as const;

interface Combination {
  readonly model: string;
  readonly tier: string;
  readonly cacheBucket: string;
  readonly batchBucket: string;
  readonly status: string;
  readonly team: string;
  readonly feature: string;
}

/** 2,000 distinct label combinations spread over 8 models, as a busy multi-model node with capped user labels has. */
function combinations(): Combination[] {
  const models = ['llama-3.1-8b', 'llama-3.1-70b', 'qwen2.5-7b', 'qwen2.5-72b', 'mistral-7b', 'mixtral-8x22b', 'deepseek-r1-distill-32b', 'gemma-2-27b'];
  const tiers = ['small', 'large', 'small', 'large', 'small', 'large', 'medium', 'medium'];
  const all: Combination[] = [];
  models.forEach((model, m) => {
    for (const cacheBucket of ['miss', 'partial', 'hit']) {
      for (const batchBucket of ['1', '2-4', '5-8', '9-16', '17+']) {
        for (const status of ['ok', 'error', 'cancelled']) {
          for (const team of ['', 'search', 'support', 'ads']) {
            for (const feature of ['chat', 'summarize', 'agent']) all.push({ model, tier: tiers[m] ?? '', cacheBucket, batchBucket, status, team, feature });
          }
        }
      }
    }
  });
  return Array.from({ length: COMBINATIONS }, (_, i) => all[Math.floor((i * all.length) / COMBINATIONS)] as Combination);
}

const byKey = (a: Combination, b: Combination): number =>
  `${a.model}|${a.tier}|${a.cacheBucket}|${a.batchBucket}|${a.status}|${a.team}|${a.feature}`.localeCompare(`${b.model}|${b.tier}|${b.cacheBucket}|${b.batchBucket}|${b.status}|${b.team}|${b.feature}`);

/** Fill a ledger through its settlement path, one commit per day (as the agent writes it). */
export function buildBenchLedger(path: string, activePerHour = COMBINATIONS): void {
  const allCombos = combinations();
  const ledger = Ledger.open(path, { node: 'gpu-node-01', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  let taskSeq = 0;
  try {
    for (let day = 0; day < DAYS; day += 1) {
      const usageRows: HourlyUsageRow[] = [];
      const energyRows: HourlyEnergyRow[] = [];
      const hostRows: HourlyHostEnergyRow[] = [];
      const qualityRows: HourlyQualityRow[] = [];
      const taskDeltas: TaskDelta[] = [];
      for (let h = 0; h < 24; h += 1) {
        const hour = FROM + (day * 24 + h) * HOUR;
        let attributed = 0;
        // A rotating window of the combinations is active in each hour.
        const start = ((day * 24 + h) * 97) % COMBINATIONS;
        const combos = Array.from({ length: activePerHour }, (_, k) => allCombos[(start + k) % COMBINATIONS] as Combination).sort(byKey);
        combos.forEach((c, i) => {
          const completion = 200 + ((i * 7919 + h * 104_729) % 5000);
          const dynamicJ = completion * (c.tier === 'large' ? 3 : c.tier === 'medium' ? 1.5 : 0.4);
          attributed += dynamicJ * 1.25;
          usageRows.push({
            hourStartMs: epochMs(hour), node: 'gpu-node-01', ...c, requests: 1 + (completion >> 8), promptTokens: completion * 4,
            cachedTokens: c.cacheBucket === 'miss' ? 0 : completion * 2, completionTokens: completion, reasoningTokens: 0,
            staticJ: dynamicJ * 0.25, dynamicJ, prefillJ: dynamicJ * 0.3, decodeJ: dynamicJ * 0.7, simulated: false,
          });
        });
        for (let g = 0; g < GPUS; g += 1) {
          const idleJ = 70 * 3600;
          energyRows.push({
            hourStartMs: epochMs(hour), node: 'gpu-node-01', gpuUuid: `GPU-${g}`, measuredJ: idleJ + attributed / GPUS, idleJ,
            staticJ: (attributed * 0.2) / GPUS, dynamicJ: (attributed * 0.8) / GPUS, unattributedJ: 0, estimatedJ: 0,
            coveredMs: HOUR, counterResets: 0, gaps: 0, simulated: false,
          });
        }
        hostRows.push({ hourStartMs: epochMs(hour), node: 'gpu-node-01', hostJ: 400 * 3600, estimated: false });
        qualityRows.push({ hourStartMs: epochMs(hour), node: 'gpu-node-01', lateRecords: 0, rejectedRecords: 0, sampleErrors: 0 });
        for (let t = 0; t < TASKS_PER_HOUR; t += 1) {
          taskSeq += 1;
          taskDeltas.push({
            taskId: `task-${taskSeq}`, requests: 3, joules: 5000, wasteJ: t % 10 === 0 ? 2000 : 0, completionTokens: 900,
            firstStartMs: epochMs(hour + t * 1000), lastEndMs: epochMs(hour + t * 1000 + 60_000), lastStatus: t % 10 === 0 ? 'error' : 'ok',
            tier: t % 2 === 0 ? 'small' : 'large', team: '', feature: 'agent',
          });
        }
      }
      ledger.commitSettlement({
        periodStartMs: epochMs(FROM + day * 24 * HOUR), periodEndMs: epochMs(FROM + (day + 1) * 24 * HOUR), gpuTotals: [], requestDeltas: [], finalized: [],
        usageRows, energyRows, hostRows, qualityRows, taskDeltas, settledUntilMs: epochMs(FROM + (day + 1) * 24 * HOUR),
      });
    }
  } finally {
    ledger.close();
  }
}

/** In the child: run one export and print its own timing and peak RSS as JSON. */
async function child(format: string, db: string, config: string, out: string): Promise<void> {
  const started = performance.now();
  await runExport({ quarter: '2026-Q3', db, config, format, out }, { stdout: () => undefined, stderr: () => undefined, env: {}, now: () => new Date() });
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ seconds, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
}

export async function benchExport(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-bench-export-'));
  try {
    const config = join(dir, 'config.yaml');
    writeFileSync(config, 'carbon:\n  region: aws:us-east-1\n  pue: 1.2\n');
    for (const active of [COMBINATIONS, 400]) {
      const db = join(dir, `ledger-${active}.db`);
      const rows = DAYS * 24 * active;
      process.stdout.write(
        `\nexport benchmark: ${DAYS} days x 24 h, ${COMBINATIONS} label combinations, ${active} active per hour = ${rows.toLocaleString('en')} usage rows, ` +
          `${GPUS} GPUs, ${(DAYS * 24 * TASKS_PER_HOUR).toLocaleString('en')} tasks\n`,
      );
      const buildStart = performance.now();
      buildBenchLedger(db, active);
      process.stdout.write(`ledger built in ${((performance.now() - buildStart) / 1000).toFixed(1)} s (${(statSync(db).size / 1e6).toFixed(0)} MB; setup, not timed)\n`);
      process.stdout.write('format   seconds  target  peak RSS MB  target\n');
      const self = fileURLToPath(import.meta.url);
      for (const [format, file] of FORMATS) {
        // With the node flags the `tokenwatt` bin starts every command with (agent/node-flags.ts).
        const result = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '--import', 'tsx', self, '--child', format, db, config, join(dir, file)], { encoding: 'utf8', maxBuffer: 1 << 20 });
        const line = result.stdout.trim().split('\n').at(-1) ?? '';
        if (result.status !== 0 || !line.startsWith('{')) {
          process.stdout.write(`${format.padEnd(8)} failed: ${(result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ')}\n`);
          continue;
        }
        const { seconds, peakRssMb } = JSON.parse(line) as { seconds: number; peakRssMb: number };
        const ok = (v: number, target: number): string => (v <= target ? `<= ${target}` : `> ${target} (MISSED)`);
        process.stdout.write(
          `${format.padEnd(8)} ${seconds.toFixed(2).padStart(7)}  ${ok(seconds, TARGET_SECONDS).padEnd(6)}  ${peakRssMb.toFixed(0).padStart(11)}  ${ok(peakRssMb, TARGET_MB)}\n`,
        );
      }
      rmSync(db, { force: true });
    }
    process.stdout.write('\nseconds: the export in the child (ledger read, report, render, schema check, atomic write); peak RSS: the whole child (tsx loader included).\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, format, db, config, out] = process.argv.slice(2);
  if (mode === '--child' && format && db && config && out) await child(format, db, config, out);
  else await benchExport();
}

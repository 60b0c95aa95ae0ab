/**
 * Child process of the analyze memory test: analyses N requests (each its own task, as in a file
 * of one-request tasks) against a 10 s trace of two GPUs, under whatever heap limit the parent set,
 * and prints the counts of the report on stdout. Usage: node --import tsx analysis-memory-child.ts N
 */
import { analyzeRun } from '../../model/analysis.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { CONFIG, request, sample, T0 } from './helpers.js';

const n = Number(process.argv[2]);
if (!Number.isInteger(n) || n <= 0) throw new Error('usage: analysis-memory-child.ts N');
const gpus = [{ uuid: 'GPU-0', index: 0 }, { uuid: 'GPU-1', index: 1 }];
const samples: PowerSample[] = [];
for (const g of gpus) for (let k = 0; k <= 100; k++) samples.push(sample(g.uuid, T0 + k * 100, 300, 30 * k, g.index));
const requests: ResolvedRequest[] = [];
// 25 requests a second from the trace's start: all but the first few hundred lie after its window.
for (let i = 0; i < n; i++) {
  const start = T0 + i * 40;
  requests.push(request({ requestId: `chatcmpl-${String(i).padStart(10, '0')}-0000-0000-0000-000000000000`, taskId: `task-${String(i).padStart(10, '0')}`, model: 'meta-llama/Llama-3.1-8B-Instruct', gpus: ['GPU-0'], startMs: start, endMs: start + 2000, promptTokens: 1200, cachedTokens: 1024, completionTokens: 180, labels: { team: 'search' } }));
}
const report = analyzeRun({ samples, requests, gpus, config: CONFIG });
process.stdout.write(`${JSON.stringify({ records: report.quality.records, tasks: report.tasks.length, measuredJ: report.totals.measured_j })}\n`);

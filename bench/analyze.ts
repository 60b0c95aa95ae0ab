/**
 * `tokenwatt analyze` on a day-long trace: an 8-GPU node sampled at 10 Hz for 24 hours (6.9
 * million lines) and 20,000 requests over it, written to a temporary directory, then analysed by
 * the real CLI (the built dist/, with the bin's node flags) in a child process. Prints its wall time
 * and peak RSS; asserts nothing. The trace is SIMULATED (a smooth load curve, not a capture): what
 * is measured is reading and settling that many samples, not the numbers in them.
 * TOKENWATT_BENCH_ANALYZE_FORMAT: plain (default, `timestamp_ms,gpu,power_w,energy_j`) or
 * nvidia-smi (the --query-gpu CSV, about 3.6 times the bytes); TOKENWATT_BENCH_ANALYZE_HOURS
 * (default 24); TOKENWATT_BENCH_ANALYZE_REQUESTS (default 20,000).
 */
import { spawn } from 'node:child_process';
import { closeSync, createWriteStream, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PEAK_RSS_HOOK = fileURLToPath(new URL('./peak-rss-on-exit.mjs', import.meta.url));
const GPUS = 8;
const PERIOD_MS = 100;
const T0 = Date.UTC(2026, 10, 1);

type Format = 'plain' | 'nvidia-smi';

function formatWanted(): Format {
  const format = process.env.TOKENWATT_BENCH_ANALYZE_FORMAT ?? 'plain';
  if (format !== 'plain' && format !== 'nvidia-smi') throw new Error(`TOKENWATT_BENCH_ANALYZE_FORMAT: plain or nvidia-smi, got ${JSON.stringify(format)}`);
  return format;
}

function requestsWanted(): number {
  const requests = Number(process.env.TOKENWATT_BENCH_ANALYZE_REQUESTS ?? 20_000);
  if (!(Number.isInteger(requests) && requests > 0 && requests <= 10_000_000)) throw new Error(`TOKENWATT_BENCH_ANALYZE_REQUESTS: a count from 1 to 10,000,000, got ${process.env.TOKENWATT_BENCH_ANALYZE_REQUESTS}`);
  return requests;
}

function hoursWanted(): number {
  const hours = Number(process.env.TOKENWATT_BENCH_ANALYZE_HOURS ?? 24);
  if (!(hours > 0 && hours <= 24 * 7)) throw new Error(`TOKENWATT_BENCH_ANALYZE_HOURS: hours from 0 to 168, got ${process.env.TOKENWATT_BENCH_ANALYZE_HOURS}`);
  return hours;
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** Write the trace; returns its line count (header included). */
async function writeTrace(path: string, format: Format, hours: number): Promise<number> {
  const out = createWriteStream(path);
  const steps = Math.round((hours * 3_600_000) / PERIOD_MS);
  const energyJ = new Float64Array(GPUS).fill(1e6);
  let text = format === 'plain'
    ? 'timestamp_ms,gpu,power_w,energy_j\n'
    : 'timestamp, index, uuid, name, power.draw [W], power.draw.average [W], total_energy_consumption [J]\n';
  for (let k = 0; k < steps; k++) {
    const t = T0 + k * PERIOD_MS;
    const d = new Date(t);
    const stamp = format === 'plain' ? String(t)
      : `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
    for (let g = 0; g < GPUS; g++) {
      const powerW = 80 + 300 * (0.5 + 0.5 * Math.sin((k + g * 1000) / 3000)) + (k % 7);
      energyJ[g] = (energyJ[g] as number) + (powerW * PERIOD_MS) / 1000;
      const p = powerW.toFixed(2);
      const e = (energyJ[g] as number).toFixed(3);
      text += format === 'plain' ? `${stamp},${g},${p},${e}\n` : `${stamp}, ${g}, GPU-${pad(g, 8)}-aaaa-bbbb-cccc-dddddddddddd, NVIDIA H100 80GB HBM3, ${p} W, ${p} W, ${e} J\n`;
    }
    if (text.length > 1 << 20) {
      if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      text = '';
    }
  }
  await new Promise<void>((resolve, reject) => out.end(text, () => resolve()).once('error', reject));
  return 1 + steps * GPUS;
}

function writeRequests(path: string, hours: number, count: number): void {
  const spanMs = hours * 3_600_000 - 4000;
  const fd = openSync(path, 'w');
  try {
    // A megabyte at a time: a million records are more text than one string should hold.
    let text = '';
    for (let i = 0; i < count; i++) {
      const start = T0 + Math.floor((i * spanMs) / count);
      text += `${JSON.stringify({ request_id: `bench-${i}`, model: 'llama-3.1-8b', tier: 'small', gpus: [i % GPUS], start, first_token: start + 200, end: start + 3000, prompt_tokens: 800, cached_tokens: 200, completion_tokens: 200 })}\n`;
      if (text.length > 1 << 20 || i === count - 1) {
        writeSync(fd, text);
        text = '';
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Run the CLI; its peak RSS comes from a hook loaded into it that writes it to fd 3 at exit. */
function runAnalyze(power: string, requests: string): Promise<{ seconds: number; peakRssMb: number }> {
  return new Promise((resolve, reject) => {
    const began = performance.now();
    const child = spawn(
      process.execPath,
      [...AGENT_NODE_FLAGS, '--import', pathToFileURL(PEAK_RSS_HOOK).href, join(ROOT, 'dist/agent/cli.js'), 'analyze', '--json', '--power', power, '--requests', requests],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    let hook = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (hook += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - began) / 1000;
      if (code !== 0) {
        reject(new Error(`analyze exited ${code}: ${stderr.slice(-2000)}`));
        return;
      }
      const { maxRssKb } = JSON.parse(hook) as { maxRssKb: number };
      resolve({ seconds, peakRssMb: maxRssKb / 1024 });
    });
  });
}

export async function benchAnalyze(): Promise<void> {
  const format = formatWanted();
  const hours = hoursWanted();
  const count = requestsWanted();
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-bench-analyze-'));
  try {
    const power = join(dir, `power-${format}.csv`);
    const requests = join(dir, 'requests.jsonl');
    const lines = await writeTrace(power, format, hours);
    writeRequests(requests, hours, count);
    const samples = lines - 1;
    const { seconds, peakRssMb } = await runAnalyze(power, requests);
    console.log(`SIMULATED trace (a load curve, not a capture): ${GPUS} GPUs at ${1000 / PERIOD_MS} Hz for ${hours} h, ${format} format, ${(statSync(power).size / 1e6).toFixed(0)} MB, ${samples.toLocaleString('en-US')} samples; ${count.toLocaleString('en-US')} requests`);
    console.log(`tokenwatt analyze --json (dist/, node ${AGENT_NODE_FLAGS.join(' ')}): ${seconds.toFixed(1)} s, peak RSS ${peakRssMb.toFixed(0)} MB (${((peakRssMb * 2 ** 20) / samples).toFixed(0)} bytes a sample, start-up included)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchAnalyze();
}

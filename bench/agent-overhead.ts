/**
 * Agent overhead: the real agent process (dist/agent/cli.js run --power simulated, 8 simulated
 * GPUs at 10 Hz) measured from /proc: CPU as % of one core while idle-sampling, then while a
 * separate load process posts 1,000 records/s; RSS sampled throughout to show it stays flat.
 * Targets (issue 2): <= 1% idle, <= 5% at 1,000 records/s, RSS <= 120 MB and flat.
 * Duration per phase: TOKENWATT_BENCH_PHASE_S (default 60; the idle phase: TOKENWATT_BENCH_IDLE_S, default the same). Settlement shape: see PERIOD_S below.
 * The loaded phase is measured only once settlement has reached the records (after lateness plus two
 * periods of load): before that the agent only ingests, which would understate its steady state.
 * The agent runs with the node flags it ships with (agent/node-flags.ts).
 * Request ids: TOKENWATT_BENCH_REQUEST_IDS=sequential (default, `bench-PID-N`, comparable with the
 * figures recorded so far) or uuid (`chatcmpl-<uuid>`, as OpenAI-compatible servers give them). Random
 * ids cost the ledger more: each one lands on its own page of the request_id index.
 * Tasks: TOKENWATT_BENCH_TASK_SIZE=N groups each N consecutive records into one task (task_id), so
 * settlement also maintains task rows; 0 (the default, comparable with earlier figures) sends none.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLK_TCK = 100; // Linux USER_HZ; /proc/<pid>/stat times are in these ticks
/** Settlement shape: TOKENWATT_BENCH_SETTLE_PERIOD_S / _LATENESS_S (default 10 s / 120 s, the agent's own defaults). */
const PERIOD_S = Number(process.env.TOKENWATT_BENCH_SETTLE_PERIOD_S ?? 10);
const LATENESS_S = Number(process.env.TOKENWATT_BENCH_SETTLE_LATENESS_S ?? 120);
const RANDOM_IDS = process.env.TOKENWATT_BENCH_REQUEST_IDS === 'uuid';
const TASK_SIZE = Number(process.env.TOKENWATT_BENCH_TASK_SIZE ?? 0);
if (!(Number.isInteger(TASK_SIZE) && TASK_SIZE >= 0)) throw new Error(`TOKENWATT_BENCH_TASK_SIZE: a whole number >= 0, got ${process.env.TOKENWATT_BENCH_TASK_SIZE}`);

/** User and system CPU seconds of the process so far. */
function cpuSeconds(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat; after the ")" split they are at 11 and 12.
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK };
}

/**
 * Write calls and bytes written so far (/proc/<pid>/io syscw and wchar): SQLite's WAL frames and
 * checkpoints, and the HTTP answers. They show what a change to the ledger's writes did more
 * steadily than CPU does on a shared VM.
 */
function writesSoFar(pid: number): { calls: number; bytes: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return { calls: field('syscw'), bytes: field('wchar') };
}

/** A memory figure of /proc/<pid>/status in MB: VmRSS (now) or VmHWM (the peak so far). */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  return match ? Number(match[1]) / 1024 : Number.NaN;
}
const rssMb = (pid: number): number => statusMb(pid, 'VmRSS');

async function startAgent(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [...AGENT_NODE_FLAGS, join(ROOT, 'dist/agent/cli.js'), 'run', '--power', 'simulated', '--port', '0', '--host', '127.0.0.1', '--db', join(dir, 'bench.db'), '--log-level', 'info'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, TOKENWATT_SETTLE_LATENESS: String(LATENESS_S), TOKENWATT_SETTLE_PERIOD: String(PERIOD_S) },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`agent did not start: ${buffer.slice(-2000)}`)), 30_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const match = /"port":(\d+)[^\n]*tokenwatt agent running/.exec(buffer);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.on('exit', (code) => reject(new Error(`agent exited ${code}: ${buffer.slice(-2000)}`)));
  });
  child.stderr?.resume();
  return { child, port };
}

/** A load process posting `rate` records/s in 100 ms batches, for `seconds`. Runs in its own process. */
function startLoad(port: number, rate: number, seconds: number): ChildProcess {
  const script = `
    const http = require('node:http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let n = 0; const perTick = ${rate / 10}; const stopAt = Date.now() + ${seconds * 1000};
    const tick = () => {
      if (Date.now() > stopAt) { process.exit(0); }
      const now = Date.now(); let body = '';
      for (let i = 0; i < perTick; i++) {
        n++;
        body += JSON.stringify({ request_id: ${RANDOM_IDS ? "'chatcmpl-' + require('node:crypto').randomUUID()" : "'bench-' + process.pid + '-' + n"}, model: 'llama-3.1-8b', tier: 'small', gpus: [n % 8],
          start: now - 900, first_token: now - 700, end: now - 100, prompt_tokens: 800, cached_tokens: (n % 3) * 200,
          completion_tokens: 120, batch_size: 1 + (n % 64), labels: { team: 'team' + (n % 5) },
          ${TASK_SIZE > 0 ? "task_id: 'task-' + process.pid + '-' + Math.floor(n / " + TASK_SIZE + "), attempt: 1," : ''} }) + '\\n';
      }
      const req = http.request({ host: '127.0.0.1', port: ${port}, path: '/v1/requests', method: 'POST', agent,
        headers: { 'content-type': 'application/x-ndjson' } }, (res) => res.resume());
      req.on('error', () => {});
      req.end(body);
    };
    setInterval(tick, 100);`;
  return spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
}

interface PhaseFigures {
  readonly cpuPct: number;
  readonly userPct: number;
  readonly systemPct: number;
  readonly writeCallsPerS: number;
  readonly writeMbPerS: number;
  readonly rss: number[];
}

async function measure(pid: number, seconds: number): Promise<PhaseFigures> {
  const rss: number[] = [];
  const cpu0 = cpuSeconds(pid);
  const writes0 = writesSoFar(pid);
  const t0 = performance.now();
  const steps = Math.max(1, Math.round(seconds / 5));
  for (let i = 0; i < steps; i += 1) {
    await sleep((seconds * 1000) / steps);
    rss.push(rssMb(pid));
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid);
  const writes = writesSoFar(pid);
  const userPct = ((cpu.user - cpu0.user) / wall) * 100;
  const systemPct = ((cpu.system - cpu0.system) / wall) * 100;
  return {
    cpuPct: userPct + systemPct,
    userPct,
    systemPct,
    writeCallsPerS: (writes.calls - writes0.calls) / wall,
    writeMbPerS: (writes.bytes - writes0.bytes) / wall / 1e6,
    rss,
  };
}

async function scrapeSize(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let size = 0;
      res.on('data', (c: Buffer) => (size += c.length));
      res.on('end', () => resolve(size));
    }).on('error', reject);
  });
}

export async function benchAgentOverhead(): Promise<void> {
  if (os.platform() !== 'linux') {
    console.log('agent overhead: needs /proc (Linux); skipped on this platform');
    return;
  }
  const phaseS = Number(process.env.TOKENWATT_BENCH_PHASE_S ?? 60);
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-bench-agent-'));
  const { child, port } = await startAgent(dir);
  try {
    // Start-up (module loading and compiling, the first renders) is not idle sampling: 5 s of it
    // showed as 1.03-1.15% in the idle phase where 20 s in it measured 0.45-0.56% (BENCHMARKS.md).
    await sleep(20_000);
    const idle = await measure(child.pid as number, Number(process.env.TOKENWATT_BENCH_IDLE_S ?? phaseS));
    const warmupS = LATENESS_S + 2 * PERIOD_S + 3;
    const load = startLoad(port, 1000, warmupS + phaseS + 10);
    await sleep(warmupS * 1000);
    const busy = await measure(child.pid as number, phaseS);
    load.kill();
    const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(' ');
    console.log(`8 simulated GPUs at 10 Hz, settle period ${PERIOD_S} s, lateness ${LATENESS_S} s, loaded phase ${phaseS} s; node ${AGENT_NODE_FLAGS.join(' ')}`);
    console.log(`request ids: ${RANDOM_IDS ? 'random (chatcmpl-<uuid>)' : 'sequential (bench-PID-N)'}`);
    console.log(`idle-sampling CPU:        ${idle.cpuPct.toFixed(2)} % of one core   (target <= 1 %)`);
    console.log(`1,000 records/s CPU:      ${busy.cpuPct.toFixed(2)} % of one core   (target <= 5 %; measured after ${warmupS} s of load, once settlement has reached the records)`);
    console.log(`  of which user ${busy.userPct.toFixed(2)} %, system ${busy.systemPct.toFixed(2)} %; writes ${busy.writeCallsPerS.toFixed(0)} calls/s, ${busy.writeMbPerS.toFixed(2)} MB/s`);
    console.log(`RSS idle   (MB, every 5 s): ${fmt(idle.rss)}`);
    console.log(`RSS loaded (MB, every 5 s): ${fmt(busy.rss)}   (target <= 120 MB, flat)`);
    console.log(`RSS max sampled ${Math.max(...idle.rss, ...busy.rss).toFixed(0)} MB; peak over the whole run (VmHWM, start-up and warm-up included) ${statusMb(child.pid as number, 'VmHWM').toFixed(0)} MB; /metrics size ${(await scrapeSize(port)) / 1024 | 0} KiB`);
  } finally {
    child.kill('SIGTERM');
    await sleep(500);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchAgentOverhead();

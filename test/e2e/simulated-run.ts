/**
 * A recorded run whose answer is known: the simulator (virtual time, seeded) serves the demo
 * workload; its samples become a plain power trace (timestamp_ms,gpu,power_w,energy_j,simulated)
 * and its finished requests an NDJSON request file. Each tier is alone on its GPUs, so each tier's
 * energy must equal its GPUs' measured energy minus their idle energy.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultDemoNodeConfig, demoReplicaMap, DemoWorkload } from '../../agent/demo-workload.js';
import { SimulatedGpuNode } from '../../collectors/simulated/simulated-gpu-node.js';
import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { toWire, type RequestRecord } from '../../model/request-record.js';
import { formatPlainTrace } from '../../collectors/trace-file-writer.js';

export interface SimulatedRun {
  readonly samples: PowerSample[];
  readonly records: RequestRecord[];
  readonly gpus: GpuInfo[];
  /** Measured energy per GPU UUID that the trace's counters show (last - first). */
  readonly counterEnergyJ: Record<string, number>;
  /** tier -> GPU UUIDs of its replica. */
  readonly tierGpus: Record<string, string[]>;
  readonly tracePath: string;
  readonly requestsPath: string;
  readonly configPath: string;
}

/**
 * One simulated node's run, written as a trace and a request file. `counterRunStart`: mark each
 * GPU's first sample as the start of a counter run, as the agent stores a simulator's first sample
 * of a process (the trace then has the counter_run_start column).
 */
export function simulatedRun(opts: { dir: string; seed: number; startMs: number; trafficMs: number; endMs: number; ratePerSecond?: number; counterRunStart?: boolean }): SimulatedRun {
  const node = new SimulatedGpuNode(defaultDemoNodeConfig({ seed: opts.seed, startMs: opts.startMs }));
  const samples: PowerSample[] = [];
  const records: RequestRecord[] = [];
  node.attach((batch) => samples.push(...batch), (error) => {
    throw new Error(`simulator: ${error.message}`);
  });
  node.onRequestDone((r) => {
    if (r.endMs <= opts.endMs) records.push(r);
  });
  new DemoWorkload({ node, seed: opts.seed, ...(opts.ratePerSecond ? { ratePerSecond: opts.ratePerSecond } : {}) }).runVirtual(opts.startMs + opts.trafficMs);
  node.advanceTo(opts.endMs);
  const marked = new Set<string>();
  const kept = samples.filter((s) => s.timestampMs <= opts.endMs).map((s) => {
    if (opts.counterRunStart !== true || marked.has(s.gpuUuid)) return s;
    marked.add(s.gpuUuid);
    return { ...s, counterRunStart: true };
  });

  const counterEnergyJ: Record<string, number> = {};
  const first = new Map<string, number>();
  for (const s of kept) {
    if (s.energyJ === null) continue;
    if (!first.has(s.gpuUuid)) first.set(s.gpuUuid, s.energyJ);
    counterEnergyJ[s.gpuUuid] = s.energyJ - (first.get(s.gpuUuid) as number);
  }
  const tierGpus: Record<string, string[]> = {};
  for (const r of demoReplicaMap()) tierGpus[r.tier] = [...r.gpuUuids];

  const tracePath = join(opts.dir, 'trace.csv');
  const requestsPath = join(opts.dir, 'requests.ndjson');
  const configPath = join(opts.dir, 'config.json');
  writeFileSync(tracePath, formatPlainTrace(kept));
  writeFileSync(requestsPath, records.map((r) => JSON.stringify(toWire(r))).join('\n') + '\n');
  writeFileSync(configPath, JSON.stringify({ replicas: demoReplicaMap().map((r) => ({ model: r.model, gpus: r.gpuUuids, tier: r.tier })) }, null, 2));
  return { samples: kept, records, gpus: node.gpus(), counterEnergyJ, tierGpus, tracePath, requestsPath, configPath };
}

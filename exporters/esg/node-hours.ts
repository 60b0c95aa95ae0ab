import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow } from '../../model/rollup-types.js';
import type { ReportPeriod } from './report-period.js';

/** Everything measured on one node in one hour (GPU rows summed, host and quality joined). */
export interface NodeHour {
  measuredJ: number;
  idleJ: number;
  staticJ: number;
  dynamicJ: number;
  unattributedJ: number;
  estimatedJ: number;
  coveredMs: number;
  counterResets: number;
  gaps: number;
  simulatedJ: number;
  hostJ: number;
  hostEstimatedJ: number;
  lateRecords: number;
  rejectedRecords: number;
  sampleErrors: number;
  hasGpuData: boolean;
  hasHostData: boolean;
  /** The most sample-covered time of the node's GPUs in the hour: the time the host was observed. */
  maxGpuCoveredMs: number;
}

/** Per node: its hours and, per GPU, how many hours it reported; per GPU, its covered time by hour (SCI "time reserved"). */
export interface NodeHours {
  readonly byNode: Map<string, Map<number, NodeHour>>;
  readonly gpuHours: Map<string, Map<string, number>>;
  /**
   * Each GPU's sample-covered milliseconds by hour, by UUID across node names: a GPU seen under two
   * names (a Prometheus instance label that changed with a pod restart) is one GPU, whose covered
   * time in an hour is the sum of both. Simulated GPUs are told apart by node too: every simulated
   * node has the same UUIDs.
   */
  readonly coveredByGpu: Map<string, Map<number, number>>;
}

const empty = (): NodeHour => ({
  measuredJ: 0,
  idleJ: 0,
  staticJ: 0,
  dynamicJ: 0,
  unattributedJ: 0,
  estimatedJ: 0,
  coveredMs: 0,
  counterResets: 0,
  gaps: 0,
  simulatedJ: 0,
  hostJ: 0,
  hostEstimatedJ: 0,
  lateRecords: 0,
  rejectedRecords: 0,
  sampleErrors: 0,
  hasGpuData: false,
  hasHostData: false,
  maxGpuCoveredMs: 0,
});

const inPeriod = (period: ReportPeriod, hourStartMs: number): boolean => hourStartMs >= period.fromMs && hourStartMs < period.toMs;

/** One pass over the measured-side rollups (small: GPUs x hours), keeping rows inside the period. */
export function collectNodeHours(
  period: ReportPeriod,
  energy: Iterable<HourlyEnergyRow>,
  host: Iterable<HourlyHostEnergyRow>,
  quality: Iterable<HourlyQualityRow>,
): NodeHours {
  const byNode = new Map<string, Map<number, NodeHour>>();
  const gpuHours = new Map<string, Map<string, number>>();
  const coveredByGpu = new Map<string, Map<number, number>>();
  const at = (node: string, hour: number): NodeHour => {
    let hours = byNode.get(node);
    if (!hours) byNode.set(node, (hours = new Map()));
    let h = hours.get(hour);
    if (!h) hours.set(hour, (h = empty()));
    return h;
  };
  for (const r of energy) {
    if (!inPeriod(period, r.hourStartMs)) continue;
    const h = at(r.node, r.hourStartMs);
    h.measuredJ += r.measuredJ;
    h.idleJ += r.idleJ;
    h.staticJ += r.staticJ;
    h.dynamicJ += r.dynamicJ;
    h.unattributedJ += r.unattributedJ;
    h.estimatedJ += r.estimatedJ;
    h.coveredMs += r.coveredMs;
    h.counterResets += r.counterResets;
    h.gaps += r.gaps;
    if (r.simulated) h.simulatedJ += r.measuredJ;
    h.hasGpuData = true;
    let gpus = gpuHours.get(r.node);
    if (!gpus) gpuHours.set(r.node, (gpus = new Map()));
    gpus.set(r.gpuUuid, (gpus.get(r.gpuUuid) ?? 0) + 1);
    const gpu = r.simulated ? `${r.node}\u0001${r.gpuUuid}` : r.gpuUuid;
    let hours = coveredByGpu.get(gpu);
    if (!hours) coveredByGpu.set(gpu, (hours = new Map()));
    hours.set(r.hourStartMs, (hours.get(r.hourStartMs) ?? 0) + r.coveredMs);
    h.maxGpuCoveredMs = Math.max(h.maxGpuCoveredMs, r.coveredMs);
  }
  for (const r of host) {
    if (!inPeriod(period, r.hourStartMs)) continue;
    const h = at(r.node, r.hourStartMs);
    h.hostJ += r.hostJ;
    h.hasHostData = true;
    if (r.estimated) h.hostEstimatedJ += r.hostJ;
  }
  for (const r of quality) {
    if (!inPeriod(period, r.hourStartMs)) continue;
    const h = at(r.node, r.hourStartMs);
    h.lateRecords += r.lateRecords;
    h.rejectedRecords += r.rejectedRecords;
    h.sampleErrors += r.sampleErrors;
  }
  return { byNode, gpuHours, coveredByGpu };
}

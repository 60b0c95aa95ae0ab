import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow, TaskRow } from '../../model/rollup-types.js';
import { epochMs } from '../../model/units.js';

/** Hourly rollups of one or more nodes, shaped like what the ledger keeps (for ESG tests). */
export interface Rollups {
  energy: HourlyEnergyRow[];
  host: HourlyHostEnergyRow[];
  usage: HourlyUsageRow[];
  tasks: TaskRow[];
  quality: HourlyQualityRow[];
}

export const HOUR = 3_600_000;

/** Deterministic pseudo-random numbers (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FixtureOptions {
  readonly node?: string;
  readonly fromMs: number;
  readonly hours: number;
  readonly gpus?: number;
  readonly seed?: number;
  readonly simulated?: boolean;
  /** Hours (offsets from fromMs) with no rows at all (agent down). */
  readonly skipHours?: readonly number[];
  /** Hours with measured energy but no requests. */
  readonly idleHours?: readonly number[];
}

const TIERS = ['small', 'large'];
const MODELS: Record<string, string> = { small: 'llama-8b', large: 'llama-70b' };
const CACHE = ['miss', 'partial', 'hit'];
const BATCH = ['1', '2-4', '5-16'];

/**
 * Rollups whose energy side and usage side agree per node-hour: the usage rows' static + dynamic
 * add up to the energy rows' static + dynamic, as a settlement writes them.
 */
export function makeRollups(o: FixtureOptions): Rollups {
  const node = o.node ?? 'node-a';
  const gpus = o.gpus ?? 2;
  const rand = seeded(o.seed ?? 1);
  const out: Rollups = { energy: [], host: [], usage: [], tasks: [], quality: [] };
  const skip = new Set(o.skipHours ?? []);
  const idle = new Set(o.idleHours ?? []);
  for (let i = 0; i < o.hours; i += 1) {
    if (skip.has(i)) continue;
    const hour = epochMs(o.fromMs + i * HOUR);
    const usage: HourlyUsageRow[] = [];
    if (!idle.has(i)) {
      for (const tier of TIERS) {
        for (const cache of CACHE) {
          for (const batch of BATCH) {
            if (rand() < 0.3) continue;
            const completion = Math.round(1000 + rand() * 20_000);
            const jPerToken = (tier === 'large' ? 4 : 0.5) * (batch === '1' ? 2 : batch === '2-4' ? 1.2 : 0.7) * (cache === 'hit' ? 0.6 : 1);
            const dynamic = completion * jPerToken;
            const stat = dynamic * 0.3;
            usage.push({
              hourStartMs: hour,
              node,
              model: MODELS[tier] ?? tier,
              tier,
              cacheBucket: cache,
              batchBucket: batch,
              status: rand() < 0.9 ? 'ok' : 'error',
              team: rand() < 0.5 ? 'search' : '',
              feature: rand() < 0.5 ? 'chat' : 'summarize',
              requests: Math.round(completion / 200),
              promptTokens: completion * 3,
              cachedTokens: cache === 'miss' ? 0 : completion,
              completionTokens: completion,
              reasoningTokens: 0,
              staticJ: stat,
              dynamicJ: dynamic,
              prefillJ: dynamic * 0.2,
              decodeJ: dynamic * 0.8,
              simulated: o.simulated ?? false,
            });
          }
        }
      }
    }
    const staticJ = usage.reduce((s, u) => s + u.staticJ, 0);
    const dynamicJ = usage.reduce((s, u) => s + u.dynamicJ, 0);
    for (let g = 0; g < gpus; g += 1) {
      const idleJ = 60 * 3600 * (0.8 + rand() * 0.4);
      const unattributedJ = rand() < 0.1 ? 500 : 0;
      out.energy.push({
        hourStartMs: hour,
        node,
        gpuUuid: `GPU-${node}-${g}`,
        measuredJ: idleJ + unattributedJ + (staticJ + dynamicJ) / gpus,
        idleJ,
        staticJ: staticJ / gpus,
        dynamicJ: dynamicJ / gpus,
        unattributedJ,
        estimatedJ: unattributedJ,
        coveredMs: unattributedJ > 0 ? 3_400_000 : 3_600_000,
        counterResets: rand() < 0.02 ? 1 : 0,
        gaps: unattributedJ > 0 ? 1 : 0,
        simulated: o.simulated ?? false,
      });
    }
    out.host.push({ hourStartMs: hour, node, hostJ: 150 * 3600, estimated: i % 2 === 0 });
    out.quality.push({ hourStartMs: hour, node, lateRecords: rand() < 0.1 ? 2 : 0, rejectedRecords: 0, sampleErrors: 0 });
    out.usage.push(...usage);
    if (usage.length > 0) {
      for (let k = 0; k < 3; k += 1) {
        const tier = TIERS[k % 2] ?? 'small';
        const joules = 1000 + rand() * 5000;
        const ok = rand() < 0.8;
        out.tasks.push({
          taskId: `${node}-task-${i}-${k}`,
          node,
          firstStartMs: epochMs(hour + k * 60_000),
          lastEndMs: epochMs(hour + k * 60_000 + 30_000),
          requests: ok ? 2 : 3,
          succeeded: ok,
          joules,
          wasteJ: ok ? joules * 0.1 : joules * 0.6,
          completionTokens: 500,
          tier,
          team: '',
          feature: 'chat',
        });
      }
    }
  }
  return out;
}

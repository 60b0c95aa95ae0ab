import { z } from 'zod';
import { gpuListSchema } from '../proxy/proxy-config.js';
import { refuseReservedReportKey } from '../../model/report-keys.js';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL, e.g. http://127.0.0.1:8000/metrics' });

/** One engine to scrape. */
export const engineTargetSchema = z.strictObject({
  /** The engine's Prometheus endpoint, e.g. http://127.0.0.1:8000/metrics (vLLM) or :30000/metrics (SGLang). */
  url: httpUrl,
  /** `auto` recognises the engine by its metric prefix (vllm: / sglang:). */
  engine: z.enum(['auto', 'vllm', 'sglang']).default('auto'),
  /** Name used in the records' request ids; defaults to the URL's host:port. */
  engineId: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/, 'letters, digits and _ . : - only').optional(),
  /** Model name for series without a model_name label. */
  model: z.string().min(1).max(256).superRefine(refuseReservedReportKey).optional(),
  /** GPUs of this engine's replica (indices or UUIDs); else the agent's model->replica config applies. */
  gpus: gpuListSchema.optional(),
  tier: z.string().min(1).max(64).superRefine(refuseReservedReportKey).optional(),
});

/**
 * The `engineMetrics` config section: engines to scrape when no per-request data is available.
 * Their counters become interval-level records (granularity "interval"), attributed per interval.
 */
export const engineMetricsConfigSchema = z.strictObject({
  /** Each with its own engineId (given, or the URL's host:port): it names the engine's records and its stored baseline. */
  targets: z
    .array(engineTargetSchema)
    .min(1, 'name at least one engine to scrape')
    .max(64)
    .superRefine((targets, ctx) => {
      const seen = new Map<string, number>();
      targets.forEach((t, i) => {
        let id: string;
        try {
          id = t.engineId ?? new URL(t.url).host;
        } catch {
          return; // the url's own check reports it
        }
        const first = seen.get(id);
        if (first === undefined) seen.set(id, i);
        else ctx.addIssue({ code: 'custom', path: [i, 'engineId'], message: `targets ${first} and ${i} are both engine ${JSON.stringify(id)}: give each its own engineId` });
      });
    }),
  /** Scrape period = length of one interval record. */
  intervalMs: z.number().int().min(1000, 'must be >= 1000').max(3_600_000).default(15_000),
  /** Per-scrape timeout. */
  timeoutMs: z.number().int().min(100).max(60_000).default(5000),
  /** Largest /metrics body read (vLLM's is ~100 KiB; histograms per engine add up). */
  maxBodyBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
});

export type EngineTargetConfig = z.output<typeof engineTargetSchema>;
export type EngineMetricsConfig = z.output<typeof engineMetricsConfigSchema>;

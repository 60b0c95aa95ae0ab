import { z } from 'zod';
import { refuseReservedReportKey } from '../../model/report-keys.js';
import { replicaSchema } from '../proxy/proxy-config.js';

const attributeKeys = (defaults: string[]) => z.array(z.string().min(1).max(256)).min(1).max(16).default(defaults);

/**
 * The `otlp` config section: OTLP/HTTP trace ingest on the agent's port (POST /v1/traces).
 * Spans following the OpenTelemetry GenAI conventions become request records.
 */
export const otlpConfigSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Largest request body, compressed and decompressed alike. */
  bodyLimitBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
  /**
   * Span (then resource) attributes read for the task id, attempt, team and feature; the first
   * key present wins.
   */
  attributes: z
    .strictObject({
      taskId: attributeKeys(['tokenwatt.task_id']),
      attempt: attributeKeys(['tokenwatt.attempt']),
      team: attributeKeys(['tokenwatt.team']),
      feature: attributeKeys(['tokenwatt.feature']),
    })
    .prefault({}),
  /**
   * Model of spans that name none. vLLM's own `llm_request` spans carry token counts but no
   * gen_ai.response.model; without this they are refused as having no model.
   */
  defaultModel: z.string().min(1).max(256).superRefine(refuseReservedReportKey).optional(),
  /** GPUs/tier of the replica serving the traced calls, for every model. */
  replica: replicaSchema.optional(),
  /** Per model, GPUs/tier overriding `replica`. */
  models: z.record(z.string().min(1), replicaSchema).optional(),
});

export type OtlpConfig = z.output<typeof otlpConfigSchema>;

import { z } from 'zod';
import { REPORT_LABELS, refuseReservedReportKey } from '../../model/report-keys.js';
import { MAX_RECORD_LABELS, recordLabelName } from '../../model/request-record.js';
import { replicaSchema } from '../proxy/proxy-config.js';

const attributeKeyList = z.array(z.string().min(1).max(256)).min(1).max(16);
const attributeKeys = (defaults: string[]) => attributeKeyList.default(defaults);
/** The fields `attributes` reads other than `labels`, by their key there. */
const FIELD_KEYS = ['taskId', 'attempt', ...REPORT_LABELS] as const;

/**
 * The `otlp` config section: OTLP/HTTP trace ingest on the agent's port (POST /v1/traces).
 * Spans following the OpenTelemetry GenAI conventions become request records.
 */
export const otlpConfigSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Largest request body, compressed and decompressed alike. */
  bodyLimitBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
  /**
   * Span (then resource) attributes read for the task id, attempt, team and feature, and for any
   * other record label under `labels` (label -> attribute keys); the first key present wins.
   */
  attributes: z
    .strictObject({
      taskId: attributeKeys(['tokenwatt.task_id']),
      attempt: attributeKeys(['tokenwatt.attempt']),
      team: attributeKeys(['tokenwatt.team']),
      feature: attributeKeys(['tokenwatt.feature']),
      // Held to a record's rules, as labels.headers is for the proxy: names, and at most 32 labels with team and feature.
      labels: z.record(recordLabelName, attributeKeyList).default({}),
    })
    // Run also when some value was refused, so that every mistake is reported at once: what was
    // refused is skipped here.
    .superRefine(
      (attributes, ctx) => {
        const labels: Readonly<Record<string, unknown>> = typeof attributes.labels === 'object' && attributes.labels !== null ? attributes.labels : {};
        const names = Object.keys(labels);
        for (const name of names) {
          if ((REPORT_LABELS as readonly string[]).includes(name)) ctx.addIssue({ code: 'custom', path: ['labels', name], message: `${name} has its own key: set otlp.attributes.${name}` });
        }
        if (names.length + REPORT_LABELS.length > MAX_RECORD_LABELS) {
          ctx.addIssue({ code: 'custom', path: ['labels'], message: `with team and feature, spans would carry ${names.length + REPORT_LABELS.length} labels; a record holds at most ${MAX_RECORD_LABELS}` });
        }
        // One attribute read for two fields would give both its value.
        const fieldOf = new Map<string, string>();
        const fields: [string, unknown][] = [...FIELD_KEYS.map((key): [string, unknown] => [key, attributes[key]]), ...names.map((name): [string, unknown] => [`labels.${name}`, labels[name]])];
        for (const [field, keys] of fields) {
          if (!Array.isArray(keys)) continue;
          for (const key of keys) {
            const other = fieldOf.get(key);
            if (other === undefined) fieldOf.set(key, field);
            else if (other !== field) ctx.addIssue({ code: 'custom', path: field.split('.'), message: `attribute '${key}' is read for both ${other} and ${field}; give each its own attribute` });
          }
        }
      },
      { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
    )
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
/** The section as given, before defaults. */
export type OtlpConfigInput = z.input<typeof otlpConfigSchema>;

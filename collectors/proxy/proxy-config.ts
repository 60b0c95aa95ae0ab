import { z } from 'zod';
import { refuseReservedReportKey } from '../../model/report-keys.js';
import { recordLabelName } from '../../model/request-record.js';

const GPU_ENTRY = { error: 'must be a GPU index (0..1023) or UUID' };
/**
 * A replica's GPUs (the proxy's, OTLP's and engine targets'). Every check of an entry says what an
 * entry must be: a bare union failure would say only that it matches none of the forms.
 */
export const gpuListSchema = z
  .array(z.union([z.number(GPU_ENTRY).int(GPU_ENTRY).min(0, GPU_ENTRY).max(1023, GPU_ENTRY), z.string(GPU_ENTRY).min(1, GPU_ENTRY).max(128, GPU_ENTRY)], GPU_ENTRY), {
    error: 'must be a list of GPU indices or UUIDs',
  })
  .min(1, { error: 'must name at least one GPU' })
  .max(64, { error: 'must name at most 64 GPUs' });
const headerName = z
  .string()
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be an HTTP header name')
  .transform((name) => name.toLowerCase());

/** Record labels the proxy reads unless told otherwise, by the request header that carries each. */
const DEFAULT_LABEL_HEADERS: Readonly<Record<string, string>> = { team: 'x-team', feature: 'x-feature' };

/** GPUs and tier of the serving replica behind the proxy. */
export const replicaSchema = z.strictObject({
  gpus: gpuListSchema.optional(),
  tier: z.string().min(1).max(64).superRefine(refuseReservedReportKey).optional(),
});

/**
 * The `proxy` config section (`--proxy-port`, `--upstream`): an OpenAI-compatible reverse proxy
 * in front of vLLM, SGLang or any OpenAI-compatible server that records one request record per
 * chat/completions/responses call.
 */
export const proxyConfigSchema = z.strictObject({
  /** Port the proxy listens on; clients point their base URL here instead of at the upstream. */
  port: z.number().int().min(0).max(65535).default(9478),
  /** Bind address. The agent passes its own `host` unless `proxy.host` is set (config-sections.ts). */
  host: z.string().min(1).default('0.0.0.0'),
  /** The serving stack, e.g. http://127.0.0.1:8000 (a path prefix is kept: http://gw/vllm). */
  upstream: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL, e.g. http://127.0.0.1:8000' }),
  /** GPUs/tier of the upstream replica, for every model it serves. */
  replica: replicaSchema.optional(),
  /** Per served model, GPUs/tier overriding `replica` (a multi-model gateway upstream). */
  models: z.record(z.string().min(1), replicaSchema).optional(),
  /**
   * Request headers that carry the task id, the attempt number and record labels. `labels` maps
   * each label to its header; the ones named add to team and feature, or move them to another header.
   */
  headers: z
    .strictObject({
      taskId: headerName.default('x-task-id'),
      attempt: headerName.default('x-attempt'),
      labels: z
        .record(recordLabelName, headerName)
        .default({})
        .transform((labels) => ({ ...DEFAULT_LABEL_HEADERS, ...labels })),
    })
    .prefault({}),
  /**
   * Longest wait for the upstream's response headers. A non-streaming completion only sends its
   * headers when the whole generation is done, so keep this above the longest generation.
   */
  requestTimeoutMs: z.number().int().min(100).max(3_600_000).default(600_000),
  /** Longest silence from the upstream in the middle of a response (a stalled stream). */
  idleTimeoutMs: z.number().int().min(100).max(3_600_000).default(300_000),
  /** Largest request body read on the recorded paths (they are parsed to find model and stream). */
  maxRequestBodyBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(32 * 1024 * 1024),
  /** Largest non-streaming response kept to read its usage (the client still gets all of it). */
  maxResponseCaptureBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(16 * 1024 * 1024),
  /** Largest request header block (node's default is 16 KiB); beyond it the client gets 431. */
  maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
  /** Ask the upstream for usage on streams (stream_options.include_usage); stripped again for clients that did not ask. */
  injectStreamUsage: z.boolean().default(true),
});

export type ProxyConfig = z.output<typeof proxyConfigSchema>;
export type ReplicaConfig = z.output<typeof replicaSchema>;

/**
 * The proxy's headers from the agent's `labels.headers` (label -> header): task_id and attempt are
 * record fields, every other label goes into the record's labels. What it leaves out keeps its
 * default header.
 */
export function proxyHeadersOf(labelHeaders: Readonly<Record<string, string>>): ProxyConfig['headers'] {
  const { task_id: taskId, attempt, ...labels } = labelHeaders;
  return proxyConfigSchema.shape.headers.parse({ ...(taskId !== undefined && { taskId }), ...(attempt !== undefined && { attempt }), labels });
}

/** Token counts of one OpenAI-compatible call, as the upstream reported them. */
export interface TokenUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
  readonly reasoningTokens: number;
}

/**
 * Parsed usage, or why it cannot be used (naming the field). `incomplete`: the counts the record
 * needs are missing (e.g. only total_tokens), which is no reason to doubt the call: such usage is
 * treated as absent (tokens estimated). Otherwise a number is present but unbelievable: refused.
 */
export type UsageResult = { readonly ok: true; readonly usage: TokenUsage } | { readonly ok: false; readonly incomplete: boolean; readonly reason: string };

/** The same ceiling the ingest schema uses: more is a unit or encoding mistake, not a request. */
const MAX_TOKENS = 100_000_000;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Usage of the Chat Completions and Completions APIs:
 * `{prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens}`.
 */
export function parseChatUsage(usage: unknown): UsageResult {
  return parseUsage(usage, {
    prompt: 'prompt_tokens',
    completion: 'completion_tokens',
    promptDetails: 'prompt_tokens_details',
    completionDetails: 'completion_tokens_details',
  });
}

/**
 * Usage of the Responses API:
 * `{input_tokens, output_tokens, input_tokens_details.cached_tokens, output_tokens_details.reasoning_tokens}`.
 */
export function parseResponsesUsage(usage: unknown): UsageResult {
  return parseUsage(usage, {
    prompt: 'input_tokens',
    completion: 'output_tokens',
    promptDetails: 'input_tokens_details',
    completionDetails: 'output_tokens_details',
  });
}

interface UsageFields {
  readonly prompt: string;
  readonly completion: string;
  readonly promptDetails: string;
  readonly completionDetails: string;
}

function parseUsage(usage: unknown, f: UsageFields): UsageResult {
  if (!isObject(usage)) return { ok: false, incomplete: false, reason: 'usage is not an object' };
  // null: absent; a string: why the number cannot be believed
  const count = (value: unknown, field: string): number | string | null => {
    if (value === undefined || value === null) return null;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_TOKENS) {
      return `usage.${field} must be an integer 0..${MAX_TOKENS} (got ${JSON.stringify(value)?.slice(0, 40)})`;
    }
    return value;
  };
  const details = (name: string): Record<string, unknown> => (isObject(usage[name]) ? usage[name] : {});
  const prompt = count(usage[f.prompt], f.prompt);
  const completion = count(usage[f.completion], f.completion);
  const cached = count(details(f.promptDetails).cached_tokens, `${f.promptDetails}.cached_tokens`);
  const reasoning = count(details(f.completionDetails).reasoning_tokens, `${f.completionDetails}.reasoning_tokens`);
  for (const v of [prompt, completion, cached, reasoning]) if (typeof v === 'string') return { ok: false, incomplete: false, reason: v };
  if (prompt === null || completion === null) return { ok: false, incomplete: true, reason: `usage.${prompt === null ? f.prompt : f.completion} is missing` };
  const [p, c, k, r] = [prompt, completion, cached ?? 0, reasoning ?? 0] as number[];
  if ((k ?? 0) > (p ?? 0)) return { ok: false, incomplete: false, reason: `usage.${f.promptDetails}.cached_tokens (${k}) exceeds ${f.prompt} (${p})` };
  if ((r ?? 0) > (c ?? 0)) return { ok: false, incomplete: false, reason: `usage.${f.completionDetails}.reasoning_tokens (${r}) exceeds ${f.completion} (${c})` };
  return { ok: true, usage: { promptTokens: p ?? 0, completionTokens: c ?? 0, cachedTokens: k ?? 0, reasoningTokens: r ?? 0 } };
}

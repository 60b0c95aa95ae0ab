import type { OpenAiEndpoint } from './openai-endpoint.js';

/**
 * Token estimates for calls whose upstream reported no usage (a stream cut short, a client
 * disconnect, a server that ignores stream_options). Records built from them are marked
 * tokens_estimated. The rule: ~4 characters per token (OpenAI's rule of thumb for English text;
 * code and other languages run denser, so this tends to under-count them). Prompts given as token
 * ids (Completions API) are counted exactly. For generated text, every streamed event that
 * carried content is at least one token (vLLM and SGLang send one event per decode step), so the
 * estimate is the larger of the event count and characters / 4.
 */
export const CHARS_PER_TOKEN = 4;

export function tokensFromChars(chars: number): number {
  return Math.ceil(Math.max(0, chars) / CHARS_PER_TOKEN);
}

export function estimateCompletionTokens(contentChars: number, contentEvents: number): number {
  return Math.max(contentEvents, tokensFromChars(contentChars));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Estimated prompt tokens of a request body. */
export function estimatePromptTokens(body: Record<string, unknown>, endpoint: OpenAiEndpoint): number {
  switch (endpoint) {
    case 'chat':
      return tokensFromChars(textLength(body.messages));
    case 'completions':
      return completionsPromptTokens(body.prompt);
    case 'responses':
      return tokensFromChars(textLength(body.input) + textLength(body.instructions));
  }
}

function completionsPromptTokens(prompt: unknown): number {
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'number')) return prompt.length;
  if (Array.isArray(prompt) && prompt.every((p) => Array.isArray(p) && p.every((t) => typeof t === 'number'))) {
    return prompt.reduce((sum: number, p: unknown[]) => sum + p.length, 0);
  }
  return tokensFromChars(textLength(prompt));
}

/** Characters of text in a message list / content part tree: strings, and `text`/`content` fields. */
function textLength(value: unknown, depth = 0): number {
  if (depth > 8) return 0;
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, v) => sum + textLength(v, depth + 1), 0);
  if (isObject(value)) return textLength(value.content, depth + 1) + textLength(value.text, depth + 1);
  return 0;
}

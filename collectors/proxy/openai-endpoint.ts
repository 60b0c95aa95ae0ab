/** The OpenAI-compatible endpoints the proxy records; every other path is passed through untouched. */
export type OpenAiEndpoint = 'chat' | 'completions' | 'responses';

const RECORDED: Readonly<Record<string, OpenAiEndpoint>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/responses': 'responses',
};

/** The recorded endpoint a POST to `path` (query string excluded) calls, or null. */
export function recordedEndpoint(method: string | undefined, path: string): OpenAiEndpoint | null {
  if (method !== 'POST') return null;
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return RECORDED[trimmed] ?? null;
}

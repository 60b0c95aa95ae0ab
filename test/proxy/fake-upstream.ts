import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in OpenAI-compatible server (what vLLM/SGLang answer), shaped after the OpenAI API
 * reference: chat completions, completions and responses, streaming (SSE) and not, plus
 * /v1/models. Misbehaviour is chosen per request with the `x-fake` header (the proxy forwards it
 * untouched): `slow-headers`, `slow-stream`, `fail-500`, `drop-mid-stream`, `no-usage`,
 * `broken-sse`, `absurd-usage`, `non-json-200`, `no-done`, `slow-first-token` (stream headers at
 * once, the first event after `x-fake-delay` ms), `stall-mid-stream` (half the events, then silence).
 */
export interface FakeCall {
  readonly path: string;
  readonly body: Record<string, unknown>;
  /** The body exactly as received. */
  readonly raw: string;
  readonly headers: IncomingMessage['headers'];
  /** The client (the proxy) went away before the answer was complete. */
  aborted: boolean;
  /** Content tokens written before the end (or the abort). */
  tokensSent: number;
}

export interface FakeUpstream {
  readonly url: string;
  readonly calls: FakeCall[];
  /** Exact bytes served at GET /v1/models (for pass-through checks). */
  readonly modelsBody: Buffer;
  close(): Promise<void>;
  /** Resolves when `n` calls have been aborted by their client. */
  waitForAborts(n: number, timeoutMs?: number): Promise<void>;
}

export const PROMPT_TOKENS = 21;
export const CACHED_TOKENS = 8;
export const REASONING_TOKENS = 2;
const MODEL = 'fake/llama-3.1-8b';

export async function startFakeUpstream(options: { tokenDelayMs?: number; headerDelayMs?: number } = {}): Promise<FakeUpstream> {
  const calls: FakeCall[] = [];
  const modelsBody = Buffer.from(
    JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model', created: 1_700_000_000, owned_by: 'vllm', max_model_len: 8192 }] }),
  );
  const abortWaiters: { n: number; resolve: () => void }[] = [];
  const checkAborts = () => {
    const aborted = calls.filter((c) => c.aborted).length;
    for (const w of abortWaiters.filter((w) => aborted >= w.n)) w.resolve();
  };
  let seq = 0;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (req.method === 'GET' && path === '/v1/models') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Fake-Upstream': 'yes', 'Content-Length': modelsBody.length });
        res.end(modelsBody);
        return;
      }
      if (req.method === 'POST' && path === '/echo') {
        res.writeHead(201, { 'Content-Type': req.headers['content-type'] ?? 'application/octet-stream', 'X-Echo-Method': req.method });
        res.end(Buffer.concat(chunks));
        return;
      }
      let body: Record<string, unknown>;
      const raw = Buffer.concat(chunks).toString('utf8');
      try {
        body = JSON.parse(raw.replace(/^\ufeff/, '')) as Record<string, unknown>; // a byte-order mark is skipped, as vLLM's json.loads(bytes) does
      } catch {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ object: 'error', message: 'bad json', code: 400 }));
        return;
      }
      const call: FakeCall = { path, body, raw, headers: req.headers, aborted: false, tokensSent: 0 };
      calls.push(call);
      res.on('close', () => {
        if (!res.writableFinished) {
          call.aborted = true;
          checkAborts();
        }
      });
      const mode = String(req.headers['x-fake'] ?? '');
      const id = `${path === '/v1/responses' ? 'resp' : path === '/v1/completions' ? 'cmpl' : 'chatcmpl'}-${++seq}-${Date.now()}`;
      const delay = mode === 'slow-headers' ? Number(req.headers['x-fake-delay'] ?? 2000) : options.headerDelayMs ?? 0;
      const go = () => answer(res, call, mode, id, options.tokenDelayMs ?? 0);
      if (delay > 0) setTimeout(go, delay);
      else go();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    modelsBody,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
    waitForAborts: (n, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`upstream saw ${calls.filter((c) => c.aborted).length} aborts, wanted ${n}`)), timeoutMs);
        abortWaiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
        checkAborts();
      }),
  };
}

function answer(res: ServerResponse, call: FakeCall, mode: string, id: string, tokenDelayMs: number): void {
  if (res.destroyed) return;
  if (mode === 'fail-500') {
    // vLLM's ErrorResponse shape (recent releases nest it under "error", as OpenAI does)
    res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: { message: 'CUDA out of memory', type: 'InternalServerError', param: null, code: 500 } }));
    return;
  }
  if (mode === 'non-json-200') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('<html>upstream gateway page</html>');
    return;
  }
  const body = call.body;
  const model = typeof body.model === 'string' ? body.model : MODEL;
  const maxTokens = Number(body.max_tokens ?? body.max_output_tokens ?? body.max_completion_tokens ?? 5);
  const words = Array.from({ length: maxTokens }, (_, i) => `w${i} `);
  const absurd = mode === 'absurd-usage';
  const wantUsage = mode !== 'no-usage';
  const chatUsage = {
    prompt_tokens: absurd ? 1e12 : PROMPT_TOKENS,
    completion_tokens: words.length,
    total_tokens: PROMPT_TOKENS + words.length,
    prompt_tokens_details: { cached_tokens: CACHED_TOKENS },
    completion_tokens_details: { reasoning_tokens: Math.min(REASONING_TOKENS, words.length) },
  };
  const created = Math.floor(Date.now() / 1000);

  if (call.path === '/v1/responses') {
    const usage = {
      input_tokens: absurd ? -5 : PROMPT_TOKENS,
      input_tokens_details: { cached_tokens: CACHED_TOKENS },
      output_tokens: words.length,
      output_tokens_details: { reasoning_tokens: Math.min(REASONING_TOKENS, words.length) },
      total_tokens: PROMPT_TOKENS + words.length,
    };
    const response = (status: string, text: string) => ({
      id,
      object: 'response',
      created_at: created,
      status,
      model,
      output: status === 'completed' ? [{ type: 'message', id: `msg_${id}`, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }] : [],
      usage: status === 'completed' && wantUsage ? usage : null,
    });
    if (!streams(body.stream)) {
      call.tokensSent = words.length;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(response('completed', words.join(''))));
      return;
    }
    const events: string[] = [
      sse({ type: 'response.created', sequence_number: 0, response: response('in_progress', '') }, 'response.created'),
      ...words.map((w, i) => sse({ type: 'response.output_text.delta', sequence_number: i + 1, item_id: `msg_${id}`, output_index: 0, content_index: 0, delta: w }, 'response.output_text.delta')),
      sse({ type: 'response.completed', sequence_number: words.length + 1, response: response('completed', words.join('')) }, 'response.completed'),
    ];
    streamEvents(res, call, events, words.length, mode, tokenDelayMs, 1);
    return;
  }

  const chat = call.path === '/v1/chat/completions';
  const object = chat ? 'chat.completion' : 'text_completion';
  if (!streams(body.stream)) {
    call.tokensSent = words.length;
    const choice = chat
      ? { index: 0, message: { role: 'assistant', content: words.join('') }, finish_reason: 'length' }
      : { index: 0, text: words.join(''), finish_reason: 'length', logprobs: null };
    const out: Record<string, unknown> = { id, object, created, model, choices: [choice] };
    if (wantUsage) out.usage = chatUsage;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(out));
    return;
  }
  const chunkObject = chat ? 'chat.completion.chunk' : 'text_completion';
  const includeUsage = typeof body.stream_options === 'object' && body.stream_options !== null && streams((body.stream_options as Record<string, unknown>).include_usage);
  const piece = (text: string, finish: string | null) =>
    chat ? { index: 0, delta: { content: text }, finish_reason: finish } : { index: 0, text, finish_reason: finish, logprobs: null };
  const events = [
    ...(chat ? [sse({ id, object: chunkObject, created, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })] : []),
    ...words.map((w, i) => sse({ id, object: chunkObject, created, model, choices: [piece(w, i === words.length - 1 ? 'length' : null)] })),
  ];
  if (includeUsage && wantUsage) events.push(sse({ id, object: chunkObject, created, model, choices: [], usage: chatUsage }));
  if (mode === 'broken-sse') events.splice(2, 0, 'data: {"id": "oops", "choices": [\n\n');
  if (mode !== 'no-done') events.push('data: [DONE]\n\n');
  streamEvents(res, call, events, words.length, mode, tokenDelayMs, chat ? 1 : 0, Number(call.headers['x-fake-delay'] ?? 400));
}

/** `stream` (and `include_usage`) as vLLM reads it: its pydantic request models (lax mode) take 1 and "true" for true. */
function streams(value: unknown): boolean {
  return value === true || value === 1 || value === 'true';
}

function sse(payload: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(payload)}\n\n`;
}

/** Write events one by one; events[first .. first+tokens) are the content tokens. */
function streamEvents(res: ServerResponse, call: FakeCall, events: string[], tokens: number, mode: string, delayMs: number, first: number, firstDelayMs = 400): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const delay = mode === 'slow-stream' ? Math.max(delayMs, 50) : delayMs;
  const dropAfter = mode === 'drop-mid-stream' ? first + Math.floor(tokens / 2) : Number.POSITIVE_INFINITY;
  const stallAfter = mode === 'stall-mid-stream' ? first + Math.floor(tokens / 2) : Number.POSITIVE_INFINITY;
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i >= dropAfter) {
      res.socket?.destroy();
      return;
    }
    if (i >= stallAfter) return; // silence: the connection stays open, nothing more is sent
    if (i >= events.length) {
      res.end();
      return;
    }
    res.write(events[i]);
    if (i >= first && i < first + tokens) call.tokensSent++;
    i++;
    if (delay > 0) setTimeout(next, delay);
    else setImmediate(next);
  };
  if (mode === 'slow-first-token') {
    res.flushHeaders(); // the stream is open; the first token takes a while (prefill)
    setTimeout(next, firstDelayMs);
  } else next();
}

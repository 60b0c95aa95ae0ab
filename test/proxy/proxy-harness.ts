import { randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import type { RequestRecord } from '../../model/request-record.js';
import { OpenAiProxy } from '../../collectors/proxy/openai-proxy.js';
import type { OpenAiProxyOptions } from '../../collectors/proxy/openai-proxy.js';
import { proxyConfigSchema } from '../../collectors/proxy/proxy-config.js';
import type { ProxyConfig } from '../../collectors/proxy/proxy-config.js';
import { RecordingSink } from './recording-sink.js';
import { captureLog } from './capture-log.js';
import { startFakeUpstream } from './fake-upstream.js';
import type { FakeUpstream } from './fake-upstream.js';
import { tryRequest } from './raw-http.js';

export interface Harness {
  readonly upstream: FakeUpstream;
  readonly proxy: OpenAiProxy;
  readonly sink: RecordingSink;
  readonly proxyUrl: string;
  readonly client: OpenAI;
  readonly log: ReturnType<typeof captureLog>;
  readonly errors: string[];
  /** Record fields whose header value was left out (onLabelLeftOut), one entry per call. */
  readonly leftOut: string[];
  close(): Promise<void>;
}

/** A fake upstream, the proxy in front of it (127.0.0.1, ephemeral ports), and an openai client pointed at the proxy. */
export async function startHarness(config: Partial<Record<keyof ProxyConfig, unknown>> = {}, upstreamOptions: Parameters<typeof startFakeUpstream>[0] = {}): Promise<Harness> {
  const upstream = await startFakeUpstream(upstreamOptions);
  const log = captureLog();
  const errors: string[] = [];
  const leftOut: string[] = [];
  let parsed: ProxyConfig;
  try {
    parsed = proxyConfigSchema.parse({ port: 0, host: '127.0.0.1', upstream: upstream.url, replica: { gpus: [0], tier: 'small' }, ...config });
  } catch (error) {
    await upstream.close(); // a refused config must not leave the upstream holding the test process open
    throw error;
  }
  const proxy = new OpenAiProxy({ config: parsed, log: log.log, onError: (e) => errors.push(e.message), onLabelLeftOut: (field) => leftOut.push(field), shutdownGraceMs: 500 });
  const sink = new RecordingSink();
  await proxy.start(sink);
  const proxyUrl = `http://127.0.0.1:${proxy.port}`;
  const client = new OpenAI({ baseURL: `${proxyUrl}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: 10_000 });
  return {
    upstream,
    proxy,
    sink,
    proxyUrl,
    client,
    log,
    errors,
    leftOut,
    close: async () => {
      await proxy.shutdown();
      await upstream.close();
    },
  };
}

export interface ProxyUnderTest {
  readonly proxy: OpenAiProxy;
  readonly sink: RecordingSink;
  readonly proxyUrl: string;
  readonly log: ReturnType<typeof captureLog>;
  readonly errors: string[];
  /** Shuts the proxy down (its records delivered); the upstream is the caller's. */
  close(): Promise<void>;
}

/** The proxy (127.0.0.1, ephemeral port) in front of any upstream, e.g. a scripted or raw one. */
export async function startProxyFor(
  upstreamUrl: string,
  config: Partial<Record<keyof ProxyConfig, unknown>> = {},
  options: Partial<Pick<OpenAiProxyOptions, 'now' | 'freeSocketTimeoutMs'>> = {},
): Promise<ProxyUnderTest> {
  const log = captureLog();
  const errors: string[] = [];
  const parsed = proxyConfigSchema.parse({ port: 0, host: '127.0.0.1', upstream: upstreamUrl, replica: { gpus: [0] }, ...config });
  const proxy = new OpenAiProxy({ config: parsed, log: log.log, onError: (e) => errors.push(e.message), shutdownGraceMs: 300, ...options });
  const sink = new RecordingSink();
  await proxy.start(sink);
  return { proxy, sink, proxyUrl: `http://127.0.0.1:${proxy.port}`, log, errors, close: () => proxy.shutdown() };
}

/** The x-task-id of every sentinel call (recordsBeforeSentinel). */
export const SENTINEL_TASK = 'sentinel-';

/**
 * The barrier for a "nothing (more) was recorded" check, where a fixed sleep proves nothing on a
 * slow machine: waits until no recorded call is in flight, sends one recorded call of its own (the
 * sentinel) and waits for its record. The proxy builds and delivers records in the order its calls
 * end, so once the sentinel's record is in the sink, the record of any call that ended before the
 * sentinel was sent is there too. Returns the records stored from index `from` on, sentinels left out.
 * The sentinel goes to whatever upstream the proxy has: an answer other than 2xx is recorded too.
 */
export async function recordsBeforeSentinel(p: Pick<ProxyUnderTest, 'proxy' | 'sink' | 'proxyUrl'>, from = 0): Promise<RequestRecord[]> {
  for (const deadline = Date.now() + 30_000; p.proxy.stats().inFlight > 0; ) {
    if (Date.now() > deadline) throw new Error(`still ${p.proxy.stats().inFlight} recorded call(s) in flight after 30 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const taskId = `${SENTINEL_TASK}${randomUUID()}`;
  const sent = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-task-id': taskId },
    body: JSON.stringify({ model: 'sentinel', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
    timeoutMs: 30_000,
  });
  if (!sent.complete) throw new Error(`the sentinel call got no whole answer (status ${sent.status})`);
  await p.sink.recordOfTask(taskId);
  return p.sink.records.slice(from).filter((r) => !(r.taskId ?? '').startsWith(SENTINEL_TASK));
}

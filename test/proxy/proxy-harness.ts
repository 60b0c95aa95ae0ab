import OpenAI from 'openai';
import { OpenAiProxy } from '../../collectors/proxy/openai-proxy.js';
import type { OpenAiProxyOptions } from '../../collectors/proxy/openai-proxy.js';
import { proxyConfigSchema } from '../../collectors/proxy/proxy-config.js';
import type { ProxyConfig } from '../../collectors/proxy/proxy-config.js';
import { RecordingSink } from './recording-sink.js';
import { captureLog } from './capture-log.js';
import { startFakeUpstream } from './fake-upstream.js';
import type { FakeUpstream } from './fake-upstream.js';

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

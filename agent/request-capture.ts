import type { IncomingMessage, ServerResponse } from 'node:http';
import { createOtlpTracesHandler } from '../collectors/otlp/otlp-traces-handler.js';
import type { RequestSink, RequestSource } from '../collectors/request-sink.js';
import type { TokenwattConfig } from './config.js';
import type { Logger } from './logger.js';

export interface RequestCapture {
  /** Sources started with the agent (proxy, engine-metrics scraper). */
  readonly sources: RequestSource[];
  /** Routes mounted on the agent's port (OTLP /v1/traces). */
  readonly routes: { method: string; path: string; handler: (req: IncomingMessage, res: ServerResponse) => Promise<void> }[];
}

/**
 * The ways requests reach tokenwatt without changing the serving stack, built from config:
 * the OpenAI-compatible proxy (`--proxy-port` + `--upstream`, details in `proxy:`), the
 * engine-metrics scraper (`engineMetrics:`), and OTLP/HTTP traces on the agent's own port
 * (`otlp:`, on by default). Throws with the config key named when the proxy is half-configured.
 * The proxy's and the scraper's modules are loaded only when configured.
 */
export async function createRequestCapture(
  config: TokenwattConfig,
  log: Logger,
  onError: (source: string, error: Error) => void = () => {},
  onLabelLeftOut: (source: string, field: string) => void = () => {},
): Promise<RequestCapture> {
  const sources: RequestSource[] = [];
  const routes: RequestCapture['routes'] = [];
  const section: Partial<NonNullable<TokenwattConfig['proxy']>> = config.proxy ?? {};
  const upstream = config.upstream ?? section.upstream;
  const port = config.proxyPort ?? section.port;
  if (upstream !== undefined || config.proxyPort !== undefined || config.proxy !== undefined) {
    if (upstream === undefined) throw new Error('proxy: --upstream / TOKENWATT_UPSTREAM (or proxy.upstream) is required to run the proxy');
    const { OpenAiProxy } = await import('../collectors/proxy/openai-proxy.js');
    const { proxyConfigSchema, proxyHeadersOf } = await import('../collectors/proxy/proxy-config.js');
    const proxyConfig = proxyConfigSchema.parse({
      ...section,
      host: section.host ?? config.host,
      upstream,
      ...(port !== undefined ? { port } : {}),
      headers: proxyHeadersOf(config.labels.headers),
    });
    sources.push(new OpenAiProxy({ config: proxyConfig, log: log.child({ component: 'proxy' }), onError: (e) => onError('proxy', e), onLabelLeftOut: (field) => onLabelLeftOut('proxy', field) }));
  }
  if (config.engineMetrics) {
    const { EngineMetricsScraper } = await import('../collectors/engine-metrics/engine-metrics-scraper.js');
    sources.push(new EngineMetricsScraper({ config: config.engineMetrics, log: log.child({ component: 'engine-metrics' }), onError: (e) => onError('engine-metrics', e) }));
  }
  const otlp = config.otlp;
  if (otlp?.enabled !== false) {
    // The handler needs the agent's sink, which exists only once the agent is initialised.
    let sinkRef: RequestSink | undefined;
    const lazySink: RequestSink = {
      submit: (records, firstIndex, options) => {
        if (!sinkRef) return Promise.reject(new Error('agent not started'));
        return sinkRef.submit(records, firstIndex, options);
      },
      noteRejected: (reason, n) => sinkRef?.noteRejected?.(reason, n),
    };
    // The ingest token guards every write on the agent's port, this one as much as /v1/requests.
    const handler = createOtlpTracesHandler({
      sink: lazySink,
      log: log.child({ component: 'otlp' }),
      onError: (e) => onError('otlp', e),
      onLabelLeftOut: (field) => onLabelLeftOut('otlp', field),
      ...(otlp ? { config: otlp, bodyLimitBytes: otlp.bodyLimitBytes } : {}),
      ...(config.ingestToken !== undefined ? { bearerToken: config.ingestToken } : {}),
    });
    routes.push({ method: 'POST', path: '/v1/traces', handler });
    sources.push({
      start: async (sink) => {
        sinkRef = sink;
      },
      shutdown: async () => {
        sinkRef = undefined;
      },
    });
  }
  return { sources, routes };
}

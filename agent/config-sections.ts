import { engineMetricsConfigSchema } from '../collectors/engine-metrics/engine-metrics-config.js';
import { hostPowerConfigSchema } from '../collectors/host/host-power-config.js';
import { otlpConfigSchema } from '../collectors/otlp/otlp-config.js';
import { proxyConfigSchema } from '../collectors/proxy/proxy-config.js';
import { carbonConfigSchema } from '../model/carbon/carbon-config.js';

/**
 * Config sections whose schemas belong to the parts of tokenwatt that use them (carbon factors,
 * host power, the OpenAI-compatible proxy, engine-metrics scraping, OTLP). Their issues are
 * formatted like any other key's.
 *
 * The bind address is the top-level `host` (`--host`), as in vLLM and uvicorn; host *power*
 * (RAPL, configured overhead) is therefore the `hostPower` section.
 */
export const carbonSection = carbonConfigSchema.optional();
export const hostPowerSection = hostPowerConfigSchema.optional();
/**
 * The proxy's details. Its port and upstream may come from the top-level `--proxy-port` /
 * `--upstream` (DESIGN's names, which win), and its header names always come from `labels.headers`,
 * so the section neither requires `upstream` nor carries `headers`.
 */
export const proxySection = proxyConfigSchema.omit({ headers: true }).partial({ upstream: true, port: true }).optional();
export const engineMetricsSection = engineMetricsConfigSchema.optional();
export const otlpSection = otlpConfigSchema.optional();

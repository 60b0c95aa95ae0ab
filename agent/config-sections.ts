import { z } from 'zod';

/**
 * Config sections whose schemas belong to other parts of tokenwatt (carbon factors, host power,
 * the OpenAI-compatible proxy, engine-metrics scraping, OTLP). Until their owners' schemas are
 * plugged in here, each section only has to be a mapping: its contents are passed through
 * unchecked, so a file may already carry them. Plugging one in is a one-line change below; the
 * loader formats its issues like any other key's.
 *
 * The bind address is the top-level `host` (`--host`), as in vLLM and uvicorn; host *power*
 * (RAPL, configured overhead) is therefore the `hostPower` section.
 */
const pendingSection = (what: string) =>
  z.record(z.string(), z.unknown(), { error: `must be a mapping (the ${what} section)` }).optional();

export const carbonSection = pendingSection('carbon and ESG');
export const hostPowerSection = pendingSection('host power');
export const proxySection = pendingSection('proxy');
export const engineMetricsSection = pendingSection('engine metrics');
export const otlpSection = pendingSection('OTLP');

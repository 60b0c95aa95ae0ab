import { engineMetricsConfigSchema } from '../collectors/engine-metrics/engine-metrics-config.js';
import { hostPowerConfigSchema } from '../collectors/host/host-power-config.js';
import { otlpConfigSchema } from '../collectors/otlp/otlp-config.js';
import { proxyConfigSchema } from '../collectors/proxy/proxy-config.js';
import { REGION_INTENSITY_TABLE } from '../collectors/carbon-data/region-intensity-table.js';
import { carbonConfigSchema } from '../model/carbon/carbon-config.js';
import { hasRegion, unknownRegionHelp } from '../model/carbon/region-lookup.js';

/**
 * Config sections whose schemas belong to the parts of tokenwatt that use them (carbon factors,
 * host power, the OpenAI-compatible proxy, engine-metrics scraping, OTLP). Their issues are
 * formatted like any other key's.
 *
 * The bind address is the top-level `host` (`--host`), as in vLLM and uvicorn; host *power*
 * (RAPL, configured overhead) is therefore the `hostPower` section.
 */
/**
 * `carbon.region` must be a row of the shipped table: an unknown one is a configuration error
 * like any other, reported with the rest before anything starts (the check runs even when other
 * carbon keys are refused).
 */
export const carbonSection = carbonConfigSchema
  .superRefine(
    (carbon, ctx) => {
      const region: unknown = carbon.region;
      if (typeof region === 'string' && !hasRegion(REGION_INTENSITY_TABLE, region)) {
        ctx.addIssue({ code: 'custom', path: ['region'], input: region, message: `unknown region. ${unknownRegionHelp(REGION_INTENSITY_TABLE, region)}` });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null && !payload.issues.some((issue) => issue.path?.[0] === 'region') },
  )
  .optional();
export const hostPowerSection = hostPowerConfigSchema.optional();
/**
 * The proxy's details. Its port and upstream may come from the top-level `--proxy-port` /
 * `--upstream` (DESIGN's names, which win), and its header names always come from `labels.headers`,
 * so the section neither requires `upstream` nor carries `headers`. Its `host` has no default
 * here: left out, the proxy binds to the agent's `host`, so `--host 127.0.0.1` keeps it local too.
 */
export const proxySection = proxyConfigSchema
  .omit({ headers: true })
  .partial({ upstream: true, port: true })
  .extend({ host: proxyConfigSchema.shape.host.unwrap().optional() })
  .optional();
export const engineMetricsSection = engineMetricsConfigSchema.optional();
export const otlpSection = otlpConfigSchema.optional();

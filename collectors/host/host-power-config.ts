import type { Logger } from 'pino';
import { z } from 'zod';
import { ConfiguredHostOverhead } from './configured-host-overhead.js';
import type { HostPowerSource } from './host-power-source.js';
import { RaplHostPowerSource } from './rapl-host-power-source.js';
import { RaplUnavailableError } from './rapl-errors.js';

/**
 * Host power configuration (the `hostPower` section of the agent config):
 *   overheadW     constant host overhead per node in watts, used (labelled estimated) when RAPL
 *                 is off or unreadable;
 *   powercapRoot  where the RAPL powercap tree is (default /sys/class/powercap);
 *   rapl          'auto' (default: use RAPL when readable) or 'off'.
 */
const OVERHEAD_ERROR = 'must be a number 0..100000 W';
export const hostPowerConfigSchema = z.strictObject({
  overheadW: z.number({ error: OVERHEAD_ERROR }).min(0, { error: OVERHEAD_ERROR }).max(100_000, { error: OVERHEAD_ERROR }).optional(),
  powercapRoot: z.string({ error: 'expected a directory path' }).min(1, { error: 'must not be empty (a directory path)' }).optional(),
  rapl: z.enum(['auto', 'off'], { error: 'must be auto or off' }).optional(),
});
export type HostPowerConfig = z.infer<typeof hostPowerConfigSchema>;

/** The chosen host source, or why there is none. */
export type HostPowerChoice =
  | { readonly source: HostPowerSource; readonly kind: 'rapl' | 'configured'; readonly raplProblem: RaplUnavailableError | null }
  | { readonly source: null; readonly kind: 'none'; readonly raplProblem: RaplUnavailableError | null };

/**
 * RAPL when enabled and readable, else the configured overhead when set, else none. Returns an
 * initialised source; RAPL's problem (absent, permission) is returned for doctor, /readyz and logs.
 */
export async function createHostPowerSource(
  config: HostPowerConfig,
  log?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>,
): Promise<HostPowerChoice> {
  let raplProblem: RaplUnavailableError | null = null;
  if ((config.rapl ?? 'auto') === 'auto') {
    const rapl = new RaplHostPowerSource(config.powercapRoot ? { powercapRoot: config.powercapRoot } : {});
    try {
      await rapl.init();
      return { source: rapl, kind: 'rapl', raplProblem: null };
    } catch (error) {
      if (!(error instanceof RaplUnavailableError)) throw error;
      raplProblem = error;
      log?.warn({ reason: error.reason }, `RAPL host power unavailable: ${error.message}`);
    }
  }
  if (config.overheadW !== undefined) {
    const why = raplProblem ? `RAPL unavailable: ${raplProblem.reason}` : 'RAPL disabled in config';
    const configured = new ConfiguredHostOverhead(config.overheadW, why);
    await configured.init();
    return { source: configured, kind: 'configured', raplProblem };
  }
  return { source: null, kind: 'none', raplProblem };
}

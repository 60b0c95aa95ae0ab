import { z } from 'zod';
import { MAX_INTENSITY_G_PER_KWH } from './hourly-intensity-csv.js';
import { DEFAULT_EMBODIED } from './embodied.js';
import { DEFAULT_PUE, DEFAULT_PUE_SOURCE, MAX_PUE, MIN_PUE } from './pue.js';
import { parseDay, peakCoverage } from './market-intensity.js';

const intensity = z
  .number({ error: 'must be a number (gCO2e/kWh)' })
  .min(0, 'must be >= 0 gCO2e/kWh')
  .max(MAX_INTENSITY_G_PER_KWH, `must be <= ${MAX_INTENSITY_G_PER_KWH} gCO2e/kWh (larger is a unit mistake: lb/MWh or g/MWh?)`);
const share = z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1');
const source = z.string().min(1, 'must say where the figure comes from').max(1000);
const year = z.number().int().min(1990).max(2100).optional();

const publishedRate = z.strictObject({ gCo2ePerKwh: intensity, source, year });

/** A UTC calendar day, YYYY-MM-DD, that exists (2026-02-30 is refused, not rolled into March). */
const calendarDay = z.string().superRefine((text, ctx) => {
  const day = parseDay(text);
  if (typeof day === 'string') ctx.addIssue({ code: 'custom', message: day });
});

/**
 * The `carbon` section of the agent configuration (YAML/JSON). Everything has a documented
 * default except the grid: set exactly one of `region`, `intensityGPerKwh` or `intensityFile`.
 */
export const carbonConfigSchema = z
  .strictObject({
    /** Site name shown in reports. */
    site: z.string().min(1).max(128).optional(),
    /** Power usage effectiveness of the site; default 1.58 (Uptime Institute 2023 industry average). */
    pue: z
      .number({ error: 'must be a number' })
      .superRefine((v, ctx) => {
        if (v < MIN_PUE) ctx.addIssue({ code: 'custom', message: `must be >= ${MIN_PUE}: PUE is facility energy / IT energy, so it cannot be below 1` });
        else if (v > MAX_PUE) ctx.addIssue({ code: 'custom', message: `must be <= ${MAX_PUE}: no credible data centre runs above 3.0; check the unit` });
      })
      .default(DEFAULT_PUE),
    pueSource: z.string().min(1).max(1000).optional(),
    /** Row of the shipped region table: "FR", "egrid:CAMX", "aws:us-east-1", "gcp:europe-west4", "azure:westeurope". */
    region: z.string().min(1).max(64).optional(),
    /** A grid intensity of your own, gCO2e/kWh; `intensitySource` says where it comes from. */
    intensityGPerKwh: intensity.optional(),
    intensitySource: source.optional(),
    intensityYear: year,
    /** Hourly intensity CSV (provider export); relative paths are relative to the config file. */
    intensityFile: z.string().min(1).optional(),
    /** Column of the file holding gCO2e/kWh when the header has several. */
    intensityFileColumn: z.string().min(1).optional(),
    /** Hours the file lacks: "error" (default), "carry-forward" (last value before), "mean" (file mean). */
    intensityFill: z.enum(['error', 'carry-forward', 'mean']).default('error'),
    /** GHG Protocol Scope 2 market-based method. */
    market: z
      .strictObject({
        instruments: z
          .array(
            z.strictObject({
              kind: z.enum(['ppa', 'rec', 'go', 'green-tariff', 'other']),
              name: z.string().max(200).default(''),
              coverageShare: share,
              gCo2ePerKwh: intensity.default(0),
              source,
              year,
              /** First and last day (UTC, inclusive) of the consumption the instrument may be applied to. */
              validFrom: calendarDay.optional(),
              validThrough: calendarDay.optional(),
            }).superRefine((i, ctx) => {
              // Here rather than on the section, so that it is reported with problems of other instruments.
              if (i.validFrom !== undefined && i.validThrough !== undefined && (parseDay(i.validThrough) as number) < (parseDay(i.validFrom) as number)) {
                ctx.addIssue({ code: 'custom', path: ['validThrough'], message: `is before validFrom ${i.validFrom}` });
              }
            }),
          )
          .default([]),
        supplier: publishedRate.optional(),
        residualMix: publishedRate.optional(),
      })
      .optional(),
    /** SCI embodied emissions (ISO/IEC 21031). */
    embodied: z
      .strictObject({
        gpuKgCo2e: z.number().min(0).max(100_000).default(DEFAULT_EMBODIED.gpuKgCo2e),
        hostKgCo2e: z.number().min(0).max(1_000_000).default(DEFAULT_EMBODIED.hostKgCo2e),
        lifespanYears: z.number().gt(0, 'must be > 0').max(30).default(DEFAULT_EMBODIED.lifespanYears),
        reservedShare: z.number().gt(0, 'must be > 0').max(1, 'must be <= 1').default(DEFAULT_EMBODIED.reservedShare),
        source: z.string().min(1).max(1000).default(DEFAULT_EMBODIED.source),
      })
      .prefault({}),
    /** Offsets bought: reported beside the emissions, never subtracted from them or from SCI. */
    offsets: z
      .array(z.strictObject({ kgCo2e: z.number().min(0), description: z.string().min(1).max(500), source }))
      .default([]),
  })
  .superRefine((c, ctx) => {
    const grids = [c.region, c.intensityGPerKwh, c.intensityFile].filter((v) => v !== undefined).length;
    if (grids > 1) {
      ctx.addIssue({ code: 'custom', path: ['region'], message: 'set only one of region, intensityGPerKwh and intensityFile' });
    }
    if (c.intensityGPerKwh !== undefined && c.intensitySource === undefined) {
      ctx.addIssue({ code: 'custom', path: ['intensitySource'], message: 'required with intensityGPerKwh: say where the figure comes from' });
    }
    const instruments = c.market?.instruments ?? [];
    // Zod runs this even when an instrument's dates failed above (reported there): skip the sum then.
    const datesOk = instruments.every((i) => {
      const from = i.validFrom === undefined ? Number.NEGATIVE_INFINITY : parseDay(i.validFrom);
      const through = i.validThrough === undefined ? Number.POSITIVE_INFINITY : parseDay(i.validThrough);
      return typeof from === 'number' && typeof through === 'number' && through >= from;
    });
    const covered = datesOk ? peakCoverage(instruments) : 0;
    if (covered > 1 + 1e-9) {
      ctx.addIssue({ code: 'custom', path: ['market', 'instruments'], message: `coverage shares add up to ${covered} at one time; they cannot exceed 1` });
    }
  });

export type CarbonConfig = z.output<typeof carbonConfigSchema>;
export type CarbonConfigInput = z.input<typeof carbonConfigSchema>;

/** Validate a `carbon` section, returning the config or one line per problem ("carbon.pue: must be >= 1 ..."). */
export function parseCarbonConfig(input: unknown): { ok: true; config: CarbonConfig } | { ok: false; errors: string[] } {
  const result = carbonConfigSchema.safeParse(input ?? {});
  if (result.success) return { ok: true, config: result.data };
  return {
    ok: false,
    errors: result.error.issues.map((i) => `carbon${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}: ${i.message}${gotOf(input, i.path)}`),
  };
}

/** ", got 0.5" for a number or string at `path` of the input (the messages do not repeat the value). */
function gotOf(input: unknown, path: readonly PropertyKey[]): string {
  let value = input;
  for (const part of path) value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[part] : undefined;
  return typeof value === 'number' || typeof value === 'string' ? `, got ${JSON.stringify(value)}` : '';
}

export const PUE_DEFAULT_NOTE = DEFAULT_PUE_SOURCE;

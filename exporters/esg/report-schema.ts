import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import { ReportSchemaError } from './esg-errors.js';

const SCHEMA_FILE = join('schemas', 'esg-report.schema.json');

/** The published schema's path: found upwards from this module (source tree and dist/ alike). */
export function esgReportSchemaPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i += 1) {
    const candidate = join(dir, SCHEMA_FILE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`cannot find ${SCHEMA_FILE} above ${dirname(fileURLToPath(import.meta.url))}`);
}

let validator: ValidateFunction | null = null;

function compiled(): ValidateFunction {
  if (!validator) {
    const schema = JSON.parse(readFileSync(esgReportSchemaPath(), 'utf8')) as object;
    validator = new Ajv({ allErrors: true, strict: true }).compile(schema);
  }
  return validator;
}

/** Problems of a report against schemas/esg-report.schema.json ("/totals/pue: must be <= 3"); empty when valid. */
export function esgReportSchemaProblems(report: unknown): string[] {
  const validate = compiled();
  if (validate(report)) return [];
  return (validate.errors ?? []).slice(0, 50).map((e) => `${e.instancePath || '/'}: ${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
}

/** Throw ReportSchemaError unless the report matches the schema (called before every write). */
export function assertEsgReportSchema(report: unknown): void {
  const problems = esgReportSchemaProblems(report);
  if (problems.length > 0) throw new ReportSchemaError(problems);
}

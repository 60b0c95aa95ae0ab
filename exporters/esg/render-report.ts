import type { EsgReport } from './esg-report.js';
import { renderEsgCsv } from './csv-format.js';
import { renderEsgHtml } from './html-format.js';
import { renderImpactManifest } from './impact-format.js';
import { assertEsgReportSchema } from './report-schema.js';

export const REPORT_FORMATS = ['json', 'csv', 'html', 'impact'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

/**
 * The bytes of a report in one format. The JSON form is validated against the published schema
 * first, whatever the format, so no format is ever written from an invalid report.
 */
export function renderReport(report: EsgReport, format: ReportFormat): string {
  assertEsgReportSchema(report);
  switch (format) {
    case 'json':
      return `${JSON.stringify(report, null, 2)}\n`;
    case 'csv':
      return renderEsgCsv(report);
    case 'html':
      return renderEsgHtml(report);
    case 'impact':
      return renderImpactManifest(report);
  }
}

/**
 * Regenerates every derived deploy file from its source:
 *   deploy/grafana/dashboard.ts            -> deploy/grafana/tokenwatt.json
 *   deploy/prometheus/tokenwatt.rules.yaml -> deploy/helm/tokenwatt/files/tokenwatt.rules.yaml
 *   deploy/grafana/tokenwatt.json          -> deploy/helm/tokenwatt/files/tokenwatt.json
 *   deploy/helm/tokenwatt (helm template, default values) -> deploy/kubernetes/*.yaml
 *
 *   node --import tsx deploy/scripts/generate.ts          write the files
 *   node --import tsx deploy/scripts/generate.ts --check  exit 1 if any file is stale
 *
 * test/deploy/manifests-sync.test.ts runs the same comparison as --check.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dashboardText } from '../grafana/dashboard.js';
import { helmBinary } from './helm-binary.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHART_DIR = 'deploy/helm/tokenwatt';
/** Release name and namespace of the plain manifests. */
export const RELEASE = 'tokenwatt';
export const NAMESPACE = 'tokenwatt';

/** Which plain-manifest file each chart template's output goes to (default values). */
export const MANIFEST_FILES: Readonly<Record<string, string>> = {
  'templates/serviceaccount.yaml': 'deploy/kubernetes/tokenwatt.yaml',
  'templates/configmap.yaml': 'deploy/kubernetes/tokenwatt.yaml',
  'templates/service-ingest.yaml': 'deploy/kubernetes/tokenwatt.yaml',
  'templates/service-metrics.yaml': 'deploy/kubernetes/tokenwatt.yaml',
  'templates/daemonset.yaml': 'deploy/kubernetes/tokenwatt.yaml',
  'templates/servicemonitor.yaml': 'deploy/kubernetes/monitoring.yaml',
  'templates/prometheusrule.yaml': 'deploy/kubernetes/monitoring.yaml',
  'templates/grafana-dashboard.yaml': 'deploy/kubernetes/grafana-dashboard.yaml',
};
/** The PodMonitor alternative: rendered with podMonitor on and serviceMonitor off. */
export const PODMONITOR_FILE = 'deploy/kubernetes/optional/podmonitor.yaml';
export const PODMONITOR_SET = { 'podMonitor.enabled': 'true', 'serviceMonitor.enabled': 'false' } as const;

const HEADER_LINES = [
  '# GENERATED from deploy/helm/tokenwatt by deploy/scripts/generate.ts: do not edit.',
  `# helm template ${RELEASE} ${CHART_DIR} --namespace ${NAMESPACE}`,
];

export interface RenderOptions {
  /** --set key=value pairs. */
  readonly set?: Readonly<Record<string, string>>;
  /** --show-only template paths (relative to the chart). */
  readonly showOnly?: readonly string[];
  readonly helm?: string;
}

/** `helm template` of the chart: the exact text helm prints. */
export function renderChart(options: RenderOptions = {}): string {
  const args = ['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE];
  for (const [key, value] of Object.entries(options.set ?? {})) args.push('--set', `${key}=${value}`);
  for (const template of options.showOnly ?? []) args.push('--show-only', template);
  return execFileSync(options.helm ?? helmBinary(), args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** One rendered document with the template it came from (helm's "# Source:" line). */
export interface RenderedDocument {
  readonly template: string;
  readonly text: string;
}

/** Splits helm's output at its "---" separators; every document names its source template. */
export function splitRendered(output: string): RenderedDocument[] {
  const prefix = `# Source: ${CHART_DIR.split('/').pop()}/`;
  return output
    .split(/^---\n/m)
    .filter((chunk) => chunk.trim() !== '')
    .map((chunk) => {
      const first = chunk.split('\n', 1)[0] ?? '';
      if (!first.startsWith(prefix)) throw new Error(`helm output document without a "${prefix}" line: ${first}`);
      return { template: first.slice(prefix.length), text: chunk };
    });
}

/** Joins documents back into helm's own format. */
export function joinDocuments(documents: readonly RenderedDocument[]): string {
  return documents.map((d) => `---\n${d.text}`).join('');
}

function withHeader(body: string, extra: readonly string[] = []): string {
  return `${[...HEADER_LINES, ...extra].join('\n')}\n${body}`;
}

/** Every generated file (path relative to the repository -> content). */
export function expectedFiles(helm: string = helmBinary()): Map<string, string> {
  const files = new Map<string, string>();
  const dashboard = dashboardText();
  files.set('deploy/grafana/tokenwatt.json', dashboard);
  files.set(`${CHART_DIR}/files/tokenwatt.json`, dashboard);
  files.set(`${CHART_DIR}/files/tokenwatt.rules.yaml`, readFileSync(join(REPO_ROOT, 'deploy/prometheus/tokenwatt.rules.yaml'), 'utf8'));

  // helm renders from files/ as they are on disk: main() writes them before rendering, and under
  // --check (and in the tests) a stale copy is reported as stale itself.
  const byFile = new Map<string, RenderedDocument[]>();
  for (const doc of splitRendered(renderChart({ helm }))) {
    const file = MANIFEST_FILES[doc.template];
    if (file === undefined) throw new Error(`template ${doc.template} renders with default values but has no file in MANIFEST_FILES`);
    byFile.set(file, [...(byFile.get(file) ?? []), doc]);
  }
  for (const [file, docs] of byFile) files.set(file, withHeader(joinDocuments(docs)));
  const podMonitor = renderChart({ helm, set: PODMONITOR_SET, showOnly: ['templates/podmonitor.yaml'] });
  const setFlags = Object.entries(PODMONITOR_SET).map(([k, v]) => `--set ${k}=${v}`).join(' ');
  files.set(
    PODMONITOR_FILE,
    withHeader(podMonitor, [`#   ${setFlags} --show-only templates/podmonitor.yaml`, '# Apply it INSTEAD of the ServiceMonitor in monitoring.yaml, never both.']),
  );
  return files;
}

/** Paths whose content on disk differs from what generation produces. */
export function staleFiles(expected: Map<string, string>): string[] {
  return [...expected].filter(([path, content]) => {
    try {
      return readFileSync(join(REPO_ROOT, path), 'utf8') !== content;
    } catch {
      return true;
    }
  }).map(([path]) => path);
}

function writeFiles(files: Map<string, string>): void {
  for (const [path, content] of files) {
    mkdirSync(dirname(join(REPO_ROOT, path)), { recursive: true });
    writeFileSync(join(REPO_ROOT, path), content);
  }
}

function main(argv: readonly string[]): number {
  const helm = helmBinary();
  if (argv.includes('--check')) {
    const stale = staleFiles(expectedFiles(helm));
    for (const path of stale) process.stderr.write(`stale: ${path} (run node --import tsx deploy/scripts/generate.ts)\n`);
    return stale.length === 0 ? 0 : 1;
  }
  // Chart inputs first (the chart renders from files/), then everything else.
  const first = expectedFiles(helm);
  writeFiles(new Map([...first].filter(([path]) => path.startsWith(`${CHART_DIR}/files/`) || path.startsWith('deploy/grafana/'))));
  const files = expectedFiles(helm);
  writeFiles(files);
  for (const path of files.keys()) process.stdout.write(`wrote ${path}\n`);
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}

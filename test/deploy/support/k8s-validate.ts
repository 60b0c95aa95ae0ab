/**
 * Validation of Kubernetes manifests without a cluster, in two passes:
 *  1. kubernetes-models (and @kubernetes-models/prometheus-operator for the CRDs): the API's
 *     OpenAPI schemas compiled to validators — required fields, types, enums, formats;
 *  2. the same packages' TypeScript declarations: every document is type-checked as an object
 *     literal of its kind, so TypeScript's excess-property check rejects unknown fields (a typo such
 *     as `readOnlyRootFileSystem` passes the schemas, which allow extra properties).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** A parsed manifest document. */
export type Manifest = Record<string, unknown> & { apiVersion: string; kind: string };

interface KindEntry {
  /** Runs the schema validator; throws on the first invalid document. */
  readonly validate: (doc: Manifest) => void;
  /** Module and interface of its TypeScript declaration. */
  readonly module: string;
  readonly typeName: string;
}

const KINDS: Readonly<Record<string, KindEntry>> = {
  'v1/ServiceAccount': { validate: (d) => new ServiceAccount(d as never).validate(), module: 'kubernetes-models/v1/ServiceAccount', typeName: 'IServiceAccount' },
  'v1/ConfigMap': { validate: (d) => new ConfigMap(d as never).validate(), module: 'kubernetes-models/v1/ConfigMap', typeName: 'IConfigMap' },
  'v1/Service': { validate: (d) => new Service(d as never).validate(), module: 'kubernetes-models/v1/Service', typeName: 'IService' },
  'apps/v1/DaemonSet': { validate: (d) => new DaemonSet(d as never).validate(), module: 'kubernetes-models/apps/v1/DaemonSet', typeName: 'IDaemonSet' },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    validate: (d) => new ServiceMonitor(d as never).validate(),
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
    typeName: 'IServiceMonitor',
  },
  'monitoring.coreos.com/v1/PodMonitor': {
    validate: (d) => new PodMonitor(d as never).validate(),
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor',
    typeName: 'IPodMonitor',
  },
  'monitoring.coreos.com/v1/PrometheusRule': {
    validate: (d) => new PrometheusRule(d as never).validate(),
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
    typeName: 'IPrometheusRule',
  },
};

/** Parses a multi-document YAML stream; empty documents are skipped, YAML errors thrown. */
export function parseManifests(text: string, source: string): Manifest[] {
  return parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${source} document ${i}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return [];
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${source} document ${i} is not a mapping`);
    const m = value as Record<string, unknown>;
    if (typeof m.apiVersion !== 'string' || typeof m.kind !== 'string') throw new Error(`${source} document ${i} has no apiVersion/kind`);
    return [m as Manifest];
  });
}

function kindOf(doc: Manifest): KindEntry {
  const entry = KINDS[`${doc.apiVersion}/${doc.kind}`];
  if (!entry) throw new Error(`no schema known for ${doc.apiVersion} ${doc.kind}`);
  return entry;
}

/** Schema problems of one document ('' when valid). */
export function schemaErrors(doc: Manifest): string {
  try {
    kindOf(doc).validate(doc);
    return '';
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Type-checks the documents against the models' declarations, in memory (the source file is
 * virtual, placed at the repository root so that node_modules resolves). Returns one line per
 * TypeScript diagnostic, naming the document.
 */
export function typeErrors(docs: readonly Manifest[], names: readonly string[]): string[] {
  const fileName = join(REPO_ROOT, '__tokenwatt_manifest_types__.ts');
  const imports = new Map<string, string>();
  const lines: string[] = [];
  docs.forEach((doc, i) => {
    const entry = kindOf(doc);
    const alias = `${entry.typeName}_${imports.size}`;
    const existing = imports.get(entry.module);
    const localName = existing ?? alias;
    if (!existing) imports.set(entry.module, alias);
    lines.push(`// ${names[i] ?? `document ${i}`}\nexport const doc${i}: ${localName} = ${JSON.stringify(doc, null, 2)};`);
  });
  const header = [...imports].map(([module, alias]) => {
    const typeName = Object.values(KINDS).find((k) => k.module === module)?.typeName ?? '';
    return `import type { ${typeName} as ${alias} } from '${module}';`;
  });
  const source = `${header.join('\n')}\n${lines.join('\n')}\n`;

  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (f) => (f === fileName ? source : readFile(f));
  host.fileExists = ((exists) => (f: string) => f === fileName || exists(f))(host.fileExists.bind(host));
  host.getSourceFile = (f, languageVersion, onError, shouldCreate) =>
    f === fileName ? ts.createSourceFile(f, source, languageVersion, true) : getSourceFile(f, languageVersion, onError, shouldCreate);
  const program = ts.createProgram([fileName], options, host);
  const sourceLines = source.split('\n');
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file?.fileName !== fileName || d.start === undefined) return message;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    // The nearest "// name" comment above the line names the document.
    let doc = '';
    for (let l = line; l >= 0; l--) {
      const text = sourceLines[l] ?? '';
      if (text.startsWith('// ')) {
        doc = text.slice(3);
        break;
      }
    }
    return `${doc}: ${sourceLines[line]?.trim() ?? ''}: ${message}`;
  });
}

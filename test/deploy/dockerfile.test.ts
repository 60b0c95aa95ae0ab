/**
 * The Dockerfile, checked structurally: no Docker engine runs on this machine, so the image is not
 * built here. The HEALTHCHECK command itself is run against a local server.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';
import { REPO_ROOT } from './support/k8s-validate.js';
import { type Instruction, dockerignore, execForm, parseDockerfile, stages } from './support/dockerfile.js';

const instructions = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const all = stages(instructions);
const build = all.find((s) => s.name === 'build');
const runtime = all[all.length - 1];
const ignored = dockerignore(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));

function find(list: readonly Instruction[] | undefined, keyword: string): Instruction[] {
  return (list ?? []).filter((i) => i.keyword === keyword);
}

describe('Dockerfile', () => {
  it('has a node:22-bookworm build stage and a node:22-bookworm-slim final stage', () => {
    assert.ok(all.length >= 2);
    assert.equal(build?.image, 'node:22-bookworm');
    assert.equal(runtime?.image, 'node:22-bookworm-slim');
    assert.notEqual(runtime?.name, 'build');
  });

  it('compiles better-sqlite3 from source in the build stage with python3, make and g++', () => {
    const runs = find(build?.instructions, 'RUN').map((i) => i.args);
    assert.ok(runs.some((r) => /apt-get install/.test(r) && /\bpython3\b/.test(r) && /\bmake\b/.test(r) && /\bg\+\+/.test(r)));
    const env = find(build?.instructions, 'ENV').map((i) => i.args).join(' ');
    assert.match(env, /npm_config_build_from_source=true/);
    assert.match(env, /npm_config_nodedir=\/usr\/local/);
    assert.ok(runs.some((r) => /npm rebuild better-sqlite3/.test(r)));
  });

  it('runs npm ci --omit=dev after npm run build', () => {
    const runs = find(build?.instructions, 'RUN');
    const buildAt = runs.findIndex((r) => /npm run build/.test(r.args));
    const prodAt = runs.findIndex((r) => /npm ci --omit=dev/.test(r.args));
    assert.ok(buildAt >= 0 && prodAt > buildAt, `npm run build (${buildAt}) before npm ci --omit=dev (${prodAt})`);
  });

  it('never ADDs (so no remote URL) and the final stage copies only from the build stage', () => {
    assert.deepEqual(find(instructions, 'ADD'), []);
    for (const copy of find(runtime?.instructions, 'COPY')) assert.match(copy.args, /^--from=build\b/, `line ${copy.line}`);
    for (const copy of find(instructions, 'COPY')) assert.doesNotMatch(copy.args, /https?:\/\//);
  });

  it('runs as an unprivileged numeric user that owns the ledger volume', () => {
    const users = find(runtime?.instructions, 'USER');
    const user = users[users.length - 1]?.args ?? '';
    const [uid, gid] = user.split(':');
    assert.ok(Number(uid) > 0 && Number(gid) > 0, `USER ${user}`);
    assert.match(find(runtime?.instructions, 'VOLUME').map((v) => v.args).join(' '), /\/var\/lib\/tokenwatt/);
    const runs = find(runtime?.instructions, 'RUN').map((r) => r.args).join(' ');
    assert.ok(runs.includes(`chown ${uid}:${gid} /var/lib/tokenwatt`));
    assert.match(find(runtime?.instructions, 'ENV').map((e) => e.args).join(' '), /TOKENWATT_DB=\/var\/lib\/tokenwatt\//);
  });

  it('starts the agent CLI and exposes port 9477', () => {
    assert.deepEqual(execForm(find(runtime?.instructions, 'ENTRYPOINT')[0]?.args ?? ''), ['node', ...AGENT_NODE_FLAGS, 'dist/agent/cli.js']);
    assert.deepEqual(execForm(find(runtime?.instructions, 'CMD')[0]?.args ?? ''), ['run']);
    assert.equal(find(runtime?.instructions, 'EXPOSE')[0]?.args, '9477');
  });
});

describe('Dockerfile HEALTHCHECK', () => {
  const healthcheck = find(runtime?.instructions, 'HEALTHCHECK')[0]?.args ?? '';
  const command = execForm(healthcheck.slice(healthcheck.indexOf('CMD ') + 4)) ?? [];
  let server: Server;
  let status = 200;
  const paths: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(status).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Exit code of the HEALTHCHECK command (run asynchronously: the server lives in this process). */
  function check(port: number): Promise<number | null> {
    assert.equal(command[0], 'node', 'exec form with node (the slim image has no curl)');
    return new Promise((resolve) => {
      const child = execFile(process.execPath, command.slice(1), { env: { ...process.env, TOKENWATT_PORT: String(port) }, timeout: 10_000 });
      child.on('exit', (code) => resolve(code));
    });
  }

  it('has an interval, a timeout and a start period', () => {
    assert.match(healthcheck, /--interval=\d+s/);
    assert.match(healthcheck, /--timeout=\d+s/);
    assert.match(healthcheck, /--start-period=\d+s/);
  });

  it('passes when /healthz answers 200 and fails on 503 or no server', async () => {
    const port = (server.address() as AddressInfo).port;
    status = 200;
    assert.equal(await check(port), 0);
    assert.deepEqual(paths, ['/healthz']);
    status = 503;
    assert.equal(await check(port), 1);
    // A port that was free a moment ago: nothing listens there.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    assert.equal(await check(freePort), 1);
  });
});

describe('.dockerignore', () => {
  it('sends the sources, lockfile, tsconfigs and schemas into the build context', () => {
    const tsconfig = JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    for (const dir of tsconfig.include) assert.equal(ignored(`${dir}/some-file.ts`), false, dir);
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'agent/cli.ts', 'agent/migrations/001.sql', 'schemas/esg-report.schema.json']) {
      assert.equal(ignored(path), false, path);
    }
  });

  it('keeps out dependencies, build output, ledgers, tests, deploy files and git', () => {
    for (const path of ['node_modules/zod/index.js', 'agent/node_modules/x.js', 'dist/agent/cli.js', 'ledger.db', 'agent/ledger.db-wal', 'test/deploy/x.test.ts', 'deploy/helm/tokenwatt/values.yaml', '.git/HEAD', 'README.md']) {
      assert.equal(ignored(path), true, path);
    }
  });
});

describe('Dockerfile comments', () => {
  it('its demo example keeps the demo off the ledger volume and publishes its port; its comments name real scripts', () => {
    const text = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    const demo = /^#\s+(docker run .* demo\b.*)$/m.exec(text)?.[1] ?? '';
    assert.match(demo, / -e TOKENWATT_DB= /, 'a demo refuses a ledger that already holds samples: not the volume the image points TOKENWATT_DB at');
    assert.doesNotMatch(demo, /tokenwatt-ledger:/);
    assert.match(demo, /--read-only\b.*--tmpfs \/tmp\b/, 'its temporary ledger needs a writable /tmp');
    assert.match(demo, /demo --host 0\.0\.0\.0$/, 'the demo binds 127.0.0.1 by default, unreachable through -p');
    const scripts = Object.keys((JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
    for (const [, name] of text.matchAll(/"(\w+)" script/g)) assert.ok(scripts.includes(name ?? ''), `the Dockerfile mentions a "${name}" script package.json lacks`);
  });
});

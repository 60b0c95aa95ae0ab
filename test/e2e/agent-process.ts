/**
 * The agent as a real process for end-to-end tests: the built CLI (dist/agent/cli.js, which
 * `npm test` builds first) on 127.0.0.1 with an ephemeral port, its logs captured, and small
 * HTTP helpers. Nothing here mocks the agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseExposition, sumOf, type Family } from '../exporters/prometheus-exposition.js';

export const CLI = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));

export interface AgentProcess {
  readonly port: number;
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  get(path: string): Promise<{ status: number; body: string }>;
  post(path: string, body: string, headers?: Record<string, string>): Promise<{ status: number; body: string }>;
  metrics(): Promise<Map<string, Family>>;
  /** SIGTERM and wait: resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no shutdown code runs. */
  kill9(): Promise<void>;
}

export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  assertBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tokenwatt ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does) before the end-to-end tests`);
}

export async function startAgent(args: readonly string[], env: Record<string, string> = {}): Promise<AgentProcess> {
  assertBuilt();
  const child = spawn(process.execPath, [CLI, ...args, '--port', '0', '--host', '127.0.0.1'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start in 30 s:\n${err.slice(-3000)}`)), 30_000);
    const check = (): void => {
      const match = /"port":(\d+)[^\n]*"msg":"tokenwatt agent running"/.exec(err);
      if (match) {
        clearTimeout(timer);
        child.stderr?.off('data', check);
        resolve(Number(match[1]));
      }
    };
    child.stderr?.on('data', check);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code} before serving:\n${err.slice(-3000)}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const request = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  return {
    port,
    child,
    stdout: () => out,
    stderr: () => err,
    get: (path) => request('GET', path),
    post: (path, body, headers = { 'content-type': 'application/x-ndjson' }) => request('POST', path, body, headers),
    metrics: async () => parseExposition((await request('GET', '/metrics')).body),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * Wait until the agent has taken a power sample. A record that starts before the agent's first
 * sample is late (its energy before that sample is not known), so a test that posts records
 * starting "now" and expects them in time takes "now" after this.
 */
export async function firstSample(agent: AgentProcess, timeoutMs = 30_000): Promise<void> {
  await eventually('the agent\'s first power sample', timeoutMs, async () => (sumOf(await agent.metrics(), 'tokenwatt_samples_total') > 0 ? true : undefined));
}

/** A TCP port free on 127.0.0.1 a moment ago (for listeners that take no port 0, such as --proxy-port). */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Poll `check` until it returns a value (not undefined) or the time runs out. */
export async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}

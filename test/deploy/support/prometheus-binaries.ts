/**
 * Debian's prometheus package provides /usr/bin/prometheus and /usr/bin/promtool. Where they are
 * missing, a developer machine installs the package (serialised with the other helpers' apt runs
 * by /tmp/apt.lock); under CI=true a missing binary is a failure, never a skip, because .ci/run must
 * install it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PROMTOOL = process.env.TOKENWATT_PROMTOOL ?? '/usr/bin/promtool';
export const PROMETHEUS = process.env.TOKENWATT_PROMETHEUS ?? '/usr/bin/prometheus';

let installAttempted = false;

/** Path of `binary`, installing Debian's prometheus package first when allowed. */
export function requirePrometheusBinary(binary: string): string {
  if (existsSync(binary)) return binary;
  if (process.env.CI === 'true') {
    throw new Error(`${binary} is missing: CI must install Debian's prometheus package (apt-get install -y prometheus)`);
  }
  if (!installAttempted) {
    installAttempted = true;
    execFileSync('flock', ['/tmp/apt.lock', 'apt-get', 'install', '-y', '--no-install-recommends', 'prometheus'], {
      stdio: 'pipe',
      timeout: 600_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  }
  if (!existsSync(binary)) throw new Error(`${binary} is still missing after installing Debian's prometheus package`);
  return binary;
}

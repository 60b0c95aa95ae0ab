/** Run as an unprivileged user by test/host: tries RAPL on the tree given in argv and prints the outcome. */
import { RaplHostPowerSource } from '../../collectors/host/rapl-host-power-source.js';
import { RaplUnavailableError } from '../../collectors/host/rapl-errors.js';

const source = new RaplHostPowerSource({ powercapRoot: process.argv[2] ?? '' });
try {
  await source.init();
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
} catch (error) {
  const e = error instanceof RaplUnavailableError ? { reason: error.reason, message: error.message, fix: error.fix } : { reason: 'other', message: String(error) };
  process.stdout.write(`${JSON.stringify({ ok: false, ...e })}\n`);
}

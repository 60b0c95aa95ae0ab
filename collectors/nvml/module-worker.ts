import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker thread running the module at `jsUrl` (a sibling `.js` file of the caller).
 * Built code (dist/) runs the `.js` directly. When tokenwatt runs from its TypeScript sources
 * (tests, `tsx`), worker threads do not inherit tsx's loader, so the worker first registers tsx
 * and then imports the `.ts` source.
 */
export function startModuleWorker(jsUrl: URL, options: Omit<WorkerOptions, 'eval'>): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(jsUrl, options);
  const tsUrl = jsUrl.href.replace(/\.js$/, '.ts');
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(tsUrl)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

/**
 * The load generator of bench/proxy.ts, run as its own process (so that it can be pinned to a
 * core). Driven by its parent over IPC, one command at a time, each answered with its result:
 * - {cmd: 'latency', targets, kind}: warm-up, then the same request to each target in turn (direct,
 *   through the proxy, through the bare relay), one at a time on one keep-alive connection per
 *   target, the order reversed every other round; answers one list per target of
 *   [first body byte ms, total ms] per request.
 * - {cmd: 'throughput', base, kind}: a fixed number of requests at a fixed concurrency on
 *   keep-alive connections; answers {rps, cpuUs} (this process's CPU time during the run).
 * - 'stop': exits.
 *
 * Usage (from bench/proxy.ts): node --import tsx bench/proxy-client.ts SETTINGS_JSON
 */
import http from 'node:http';

interface Settings {
  readonly streamEvents: number;
  readonly latencyRequests: number;
  readonly warmup: number;
  readonly throughputRequests: number;
  readonly concurrency: number;
}
export type LatencySample = [firstByteMs: number, totalMs: number];
/** A plain JSON answer; a stream whose usage only the proxy asks for; a stream whose client asks for usage itself. */
export type CallKind = 'json' | 'stream' | 'stream-usage';
export type ClientCommand =
  | { readonly cmd: 'latency'; readonly targets: readonly string[]; readonly kind: CallKind }
  | { readonly cmd: 'throughput'; readonly base: string; readonly kind: CallKind };

const settings = JSON.parse(process.argv[2] ?? '{}') as Settings;

function request(agent: http.Agent, base: string, kind: CallKind): Promise<LatencySample> {
  const body: Record<string, unknown> = { model: 'm', messages: [{ role: 'user', content: 'hello there' }], max_tokens: settings.streamEvents, stream: kind !== 'json' };
  if (kind === 'stream-usage') body.stream_options = { include_usage: true };
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let first = 0n;
    const req = http.request(
      `${base}/v1/chat/completions`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        res.on('data', () => {
          if (first === 0n) first = process.hrtime.bigint();
        });
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${base} answered ${res.statusCode}`));
          else resolve([Number(first - start) / 1e6, Number(process.hrtime.bigint() - start) / 1e6]);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function latency(targets: readonly string[], kind: CallKind): Promise<LatencySample[][]> {
  const agents = targets.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const samples: LatencySample[][] = targets.map(() => []);
  const order = targets.map((_, i) => i);
  const reversed = [...order].reverse();
  for (let i = 0; i < settings.warmup + settings.latencyRequests; i++) {
    for (const t of i % 2 === 0 ? order : reversed) {
      const sample = await request(agents[t] as http.Agent, targets[t] as string, kind);
      if (i >= settings.warmup) samples[t]?.push(sample);
    }
  }
  for (const agent of agents) agent.destroy();
  return samples;
}

async function throughput(base: string, kind: CallKind): Promise<{ rps: number; cpuUs: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: settings.concurrency });
  let issued = 0;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (issued < settings.throughputRequests) {
      issued++;
      await request(agent, base, kind);
    }
  };
  await Promise.all(Array.from({ length: settings.concurrency }, worker));
  const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  agent.destroy();
  return { rps: settings.throughputRequests / elapsedS, cpuUs: used.user + used.system };
}

process.on('message', (msg: ClientCommand | 'stop') => {
  if (msg === 'stop') process.exit(0);
  const work = msg.cmd === 'latency' ? latency(msg.targets, msg.kind) : throughput(msg.base, msg.kind);
  work.then(
    (result) => process.send?.(result),
    (err: unknown) => process.send?.({ error: err instanceof Error ? err.message : String(err) }),
  );
});
process.send?.('ready');

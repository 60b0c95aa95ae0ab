/**
 * Child process of the kill -9 durability test: serves POST /v1/requests on 127.0.0.1:0 over the
 * real Ledger + IngestService + HttpServer, prints {"port": N} on stdout, and runs until killed.
 * Usage: node --import tsx test/ingest/durability-child.ts LEDGER_PATH
 */
import { HttpServer } from '../../agent/http-server.js';
import { IngestService } from '../../agent/ingest-service.js';
import { Ledger } from '../../agent/ledger.js';
import { createIngestHandler } from '../../collectors/http-ingest.js';
import { fakeContext } from './fake-context.js';
import { quietLog } from './ingest-server.js';

const path = process.argv[2];
if (path === undefined) throw new Error('usage: durability-child.ts LEDGER_PATH');
// synchronous = NORMAL on purpose: the claim under test is that a killed process loses no
// acknowledged record in WAL mode without an fsync per commit.
const ledger = Ledger.open(path, { node: 'child', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 }, synchronous: 'NORMAL' });
const ingest = new IngestService({ ledger, context: () => fakeContext(), settledUntil: () => null, onAccepted: () => {}, queueLimit: 1_000_000 });
const server = new HttpServer({ host: '127.0.0.1', port: 0, log: quietLog });
server.route('POST', '/v1/requests', createIngestHandler({ sink: ingest, bodyLimitBytes: 10_000_000 }));
const { port } = await server.listen();
process.stdout.write(`${JSON.stringify({ port })}\n`);

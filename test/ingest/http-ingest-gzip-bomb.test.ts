import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import type zlibTypes from 'node:zlib';
import { send } from './http-client.js';
import { startIngestServer } from './ingest-server.js';

// The handler's gunzip streams, seen by wrapping node:zlib's createGunzip; syncBuiltinESMExports
// passes the wrapper to the handler's own import. Its own file: the wrapper stays in this process.
const zlib = createRequire(import.meta.url)('node:zlib') as typeof zlibTypes;
const gunzips: zlibTypes.Gunzip[] = [];
const createGunzip = zlib.createGunzip;
Object.defineProperty(zlib, 'createGunzip', {
  value: (options?: zlibTypes.ZlibOptions) => {
    const gunzip = createGunzip(options);
    gunzips.push(gunzip);
    return gunzip;
  },
});
syncBuiltinESMExports();

test('a gzip body over the limit: 413, and the gunzip stops at once rather than inflating what it holds', async (t) => {
  const s = await startIngestServer({ bodyLimitBytes: 100_000 });
  t.after(s.stop);
  // 100 MB of spaces in about 100 KB: what the server has read when the limit trips inflates to far more.
  const bomb = zlib.gzipSync(Buffer.alloc(100_000_000, 0x20), { level: 9 });
  const reply = await send(s.port, { headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' }, body: bomb });
  assert.equal(reply.status, 413);
  assert.equal(gunzips.length, 1);
  const gunzip = gunzips[0] as zlibTypes.Gunzip;
  assert.equal(gunzip.destroyed, true, 'destroyed once the limit tripped');
  // Inflated no more than the limit plus the chunk that crossed it (zlib hands out at most 16 KiB
  // at a time), out of the 100 MB the bomb holds.
  assert.ok(gunzip.bytesWritten < bomb.length, `read ${gunzip.bytesWritten} of ${bomb.length} compressed bytes`);

  // A good gzip body still goes through the same path.
  const good = zlib.gzipSync(JSON.stringify({ request_id: 'r-1', model: 'llama-8b', gpus: [0], start: 1_800_000_000_000, end: 1_800_000_000_800, prompt_tokens: 1, completion_tokens: 1 }));
  const ok = await send(s.port, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: good });
  assert.equal(ok.status, 202, ok.text);
  assert.equal(gunzips[1]?.destroyed, true, 'ended normally');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { UpstreamTimeoutError } from '../../collectors/proxy/http-forwarding.js';
import { UpstreamWatchdog } from '../../collectors/proxy/upstream-watchdog.js';
import type { Watched } from '../../collectors/proxy/upstream-watchdog.js';

function request(sentAt: number, timeouts: UpstreamTimeoutError[] = []): Watched & { timeouts: UpstreamTimeoutError[] } {
  return {
    sentAt,
    responded: false,
    activity: 0,
    waitingForClient: false,
    seen: 0,
    quietSince: 0,
    watching: false,
    prevWatched: null,
    nextWatched: null,
    timeouts,
    onTimeout(error) {
      this.timeouts.push(error);
    },
  };
}

test('header timeout: a request with no response after requestTimeoutMs is timed out once; a responded one is not', () => {
  let now = 1000;
  const dog = new UpstreamWatchdog(300, 10_000, () => now);
  const waiting = request(now);
  const answered = request(now);
  dog.watch(waiting);
  dog.watch(answered);
  answered.responded = true;
  now += 299;
  dog.sweep();
  assert.equal(waiting.timeouts.length, 0, 'not before the timeout');
  now += 1;
  dog.sweep();
  assert.equal(waiting.timeouts.length, 1);
  assert.equal(waiting.timeouts[0]?.phase, 'headers');
  assert.match(waiting.timeouts[0]?.message ?? '', /no response within 300 ms/);
  assert.equal(answered.timeouts.length, 0);
  assert.equal(dog.size, 1, 'a timed-out request leaves the watch');
  now += 10;
  dog.sweep();
  assert.equal(waiting.timeouts.length, 1, 'timed out once only');
  dog.close();
});

test('idle timeout: every chunk restarts the silence; silence for idleTimeoutMs times the request out', () => {
  let now = 0;
  const dog = new UpstreamWatchdog(60_000, 500, () => now);
  const stream = request(now);
  stream.responded = true;
  dog.watch(stream);
  for (let i = 0; i < 10; i++) {
    now += 400;
    stream.activity++;
    dog.sweep();
  }
  assert.equal(stream.timeouts.length, 0, 'a stream that keeps talking is never idle');
  now += 499;
  dog.sweep();
  assert.equal(stream.timeouts.length, 0);
  now += 1;
  dog.sweep();
  assert.equal(stream.timeouts[0]?.phase, 'idle');
  assert.match(stream.timeouts[0]?.message ?? '', /went silent for 500 ms/);
  dog.close();
});

test('a request waiting for its client (back-pressure) is not idle: the silence counts from when the client caught up', () => {
  let now = 0;
  const dog = new UpstreamWatchdog(60_000, 500, () => now);
  const stream = request(now);
  stream.responded = true;
  dog.watch(stream);
  stream.waitingForClient = true;
  for (let i = 0; i < 10; i++) {
    now += 400;
    dog.sweep();
  }
  assert.equal(stream.timeouts.length, 0, 'the upstream is not read meanwhile: its silence says nothing');
  stream.waitingForClient = false;
  now += 499;
  dog.sweep();
  assert.equal(stream.timeouts.length, 0);
  now += 1;
  dog.sweep();
  assert.equal(stream.timeouts[0]?.phase, 'idle');
  dog.close();
});

test('before its headers only the request timeout applies: a non-streaming generation says nothing until it is done', () => {
  let now = 0;
  const dog = new UpstreamWatchdog(1000, 200, () => now);
  const req = request(now);
  dog.watch(req);
  now += 999;
  dog.sweep();
  assert.equal(req.timeouts.length, 0, 'silence before the answer is not idleness');
  now += 1;
  dog.sweep();
  assert.equal(req.timeouts[0]?.phase, 'headers');
  dog.close();
});

test('the sweep period is a tenth of the shorter timeout, within 10 ms..1 s; the timer runs only while requests are watched', async () => {
  assert.equal(new UpstreamWatchdog(600_000, 300_000).periodMs, 1000);
  assert.equal(new UpstreamWatchdog(300, 300_000).periodMs, 30);
  assert.equal(new UpstreamWatchdog(100, 100).periodMs, 10);
  const dog = new UpstreamWatchdog(100, 100);
  const req = request(Date.now());
  dog.watch(req);
  // Waited for, up to 10 s: a fixed 250 ms could end before a slow machine ran the 10 ms sweep timer.
  for (const deadline = Date.now() + 10_000; req.timeouts.length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
  assert.equal(req.timeouts.length, 1, 'the timer swept on its own');
  assert.equal(dog.size, 0);
  dog.close();
});

test('property: after any sequence of watch/unwatch the watched set is exactly what a plain Set says', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 7 })), { maxLength: 80 }), (ops) => {
      let now = 0;
      const dog = new UpstreamWatchdog(10, 10, () => now);
      const requests = Array.from({ length: 8 }, () => request(0));
      const model = new Set<number>();
      for (const [add, i] of ops) {
        const r = requests[i] as Watched;
        if (add) {
          dog.watch(r);
          model.add(i);
        } else {
          dog.unwatch(r);
          model.delete(i);
        }
        assert.equal(dog.size, model.size);
      }
      // A sweep past both limits times out every watched request, and nothing else.
      now = 100;
      dog.sweep();
      requests.forEach((r, i) => assert.equal(r.timeouts.length, model.has(i) ? 1 : 0));
      assert.equal(dog.size, 0);
      dog.close();
    }),
    { numRuns: 200 },
  );
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseSseEvent, SseSplitter } from '../../collectors/proxy/sse-splitter.js';
import { StreamObserver } from '../../collectors/proxy/stream-observer.js';

/** Feed `bytes` in the given chunk sizes; return the events and the leftover. */
function split(bytes: Buffer, sizes: number[]): { events: Buffer[]; rest: Buffer } {
  const splitter = new SseSplitter();
  const events: Buffer[] = [];
  let pos = 0;
  for (const size of sizes) {
    if (pos >= bytes.length) break;
    events.push(...splitter.push(bytes.subarray(pos, pos + Math.max(1, size))));
    pos += Math.max(1, size);
  }
  if (pos < bytes.length) events.push(...splitter.push(bytes.subarray(pos)));
  return { events, rest: splitter.takePending() };
}

test('events end at blank lines written with LF, CRLF or CR', () => {
  const text = 'data: a\n\nevent: x\r\ndata: b\r\n\r\ndata: c\r\rdata: d\n\n: keep-alive\n\ndata: tail';
  const { events, rest } = split(Buffer.from(text), [text.length]);
  assert.deepEqual(
    events.map((e) => parseSseEvent(e)),
    [
      { event: null, data: 'a' },
      { event: 'x', data: 'b' },
      { event: null, data: 'c' },
      { event: null, data: 'd' },
      { event: null, data: null },
    ],
  );
  assert.equal(rest.toString(), 'data: tail');
});

test('multi-line data is joined with LF; a field without a space and a field without a colon are read', () => {
  assert.deepEqual(parseSseEvent(Buffer.from('data:{"a":\ndata: 1}\nid: 7\nretry\n\n')), { event: null, data: '{"a":\n1}' });
});

const sseText = fc
  .array(
    fc.record({
      event: fc.option(fc.stringMatching(/^[a-z.]{1,12}$/), { nil: undefined }),
      data: fc.array(fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => !/[\r\n]/.test(s)), { minLength: 1, maxLength: 3 }),
      eol: fc.constantFrom('\n', '\r\n', '\r'),
    }),
    { maxLength: 12 },
  )
  .map((events) => ({
    events,
    text: events.map((e) => `${e.event ? `event: ${e.event}${e.eol}` : ''}${e.data.map((d) => `data: ${d}${e.eol}`).join('')}${e.eol}`).join(''),
  }));

test('property: however the bytes are chunked, the same events come out and no byte is lost or added', () => {
  fc.assert(
    fc.property(sseText, fc.array(fc.integer({ min: 1, max: 17 }), { maxLength: 60 }), ({ events, text }, sizes) => {
      const bytes = Buffer.from(text, 'utf8');
      const whole = split(bytes, [bytes.length]);
      const chunked = split(bytes, sizes);
      assert.ok(Buffer.concat([...chunked.events, chunked.rest]).equals(bytes), 'bytes preserved');
      const fields = (list: Buffer[]) => list.map((e) => parseSseEvent(e)).filter((f) => f.data !== null);
      assert.deepEqual(fields(chunked.events), fields(whole.events));
      // No piece holds bytes of two events, however split: the proxy may drop or rewrite one (the
      // usage chunk a client did not ask for) without taking a byte of another. The only other
      // pieces are the LF of a CRLF whose CR ended the previous event and its chunk: each event is
      // its piece, and that LF when one follows.
      const own: string[] = [];
      for (const e of chunked.events) {
        const text = e.toString('latin1');
        if (parseSseEvent(e).data !== null) own.push(text);
        else {
          assert.equal(text, '\n', 'a piece without data is a CRLF\'s LF');
          assert.ok(own.length > 0 && own[own.length - 1]?.endsWith('\r'), 'after an event that ended at its CR');
          own[own.length - 1] += text;
        }
      }
      assert.deepEqual(own, whole.events.map((e) => e.toString('latin1')));
      assert.deepEqual(
        fields(whole.events),
        events.map((e) => ({ event: e.event ?? null, data: e.data.join('\n') })),
      );
    }),
    { numRuns: 300 },
  );
});

test('the observer drops only the usage-only chunk when stripping, and strips usage riding on a content chunk', () => {
  const now = () => 1234;
  const chunk = (o: unknown) => Buffer.from(`data: ${JSON.stringify(o)}\n\n`);
  const usage = { prompt_tokens: 5, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 1 } };
  const strip = new StreamObserver('chat', true, now);
  const content = chunk({ id: 'c1', model: 'm', choices: [{ index: 0, delta: { content: 'hi' } }] });
  assert.equal(strip.observe(content), content, 'content passes untouched (same bytes)');
  const riding = strip.observe(chunk({ id: 'c1', choices: [{ index: 0, delta: { content: '!' } }], usage }));
  assert.ok(riding);
  assert.deepEqual(JSON.parse(riding.toString().slice('data: '.length)), { id: 'c1', choices: [{ index: 0, delta: { content: '!' } }] });
  assert.equal(strip.observe(chunk({ id: 'c1', choices: [], usage })), null);
  assert.equal(strip.observe(Buffer.from('data: [DONE]\n\n'))?.toString(), 'data: [DONE]\n\n');
  assert.deepEqual(strip.facts.usage, { promptTokens: 5, completionTokens: 2, cachedTokens: 1, reasoningTokens: 0 });
  assert.equal(strip.facts.contentEvents, 2);
  assert.equal(strip.facts.firstContentMs, 1234);
  assert.equal(strip.facts.finished, true);

  const keep = new StreamObserver('chat', false, now);
  const usageOnly = chunk({ id: 'c2', choices: [], usage });
  assert.equal(keep.observe(usageOnly), usageOnly, 'a client that asked for usage gets it');

  // "usage": null is cut from the text in place; JSON split over data lines is written anew, on one line.
  const nulls = new StreamObserver('chat', true, now);
  assert.equal(nulls.observe(Buffer.from('data: {"id":"a", "usage": null, "choices":[]}\n\n'))?.toString(), 'data: {"id":"a", "choices":[]}\n\n');
  assert.equal(nulls.observe(Buffer.from('data: {"usage":null}\n\n'))?.toString(), 'data: {}\n\n');
  assert.equal(
    nulls.observe(Buffer.from('data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"}}],\ndata: "usage":null}\n\n'))?.toString(),
    'data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
  );
  assert.equal(keep.observe(Buffer.from('data: {"id":"a","usage":null}\n\n'))?.toString(), 'data: {"id":"a","usage":null}\n\n', 'kept when the client asked');
});

test('the observer reads reasoning and tool-call deltas as generated content, and stream errors as failures', () => {
  const o = new StreamObserver('chat', false, () => 1);
  o.observe(Buffer.from(`data: ${JSON.stringify({ choices: [{ delta: { reasoning_content: 'thinking' } }] })}\n\n`));
  o.observe(Buffer.from(`data: ${JSON.stringify({ choices: [{ delta: { tool_calls: [{ function: { arguments: '{"q":1}' } }] } }] })}\n\n`));
  o.observe(Buffer.from(`data: ${JSON.stringify({ object: 'error', message: 'engine died' })}\n\n`));
  assert.equal(o.facts.contentEvents, 2);
  assert.equal(o.facts.reasoningChars, 8);
  assert.equal(o.facts.contentChars, 7);
  assert.equal(o.facts.failure, 'engine died');
});

/** The splitter as it was before its LF fast path: byte by byte (the reference the fast path must match). */
function referenceSplit(chunks: Buffer[]): { events: string[]; rest: string } {
  const events: string[] = [];
  let pending: Buffer[] = [];
  let lineLength = 0;
  let afterCR = false;
  let lfOwed = false; // an event ended at a CR that ended its chunk: a leading LF is a piece of its own
  for (const chunk of chunks) {
    let start = 0;
    if (lfOwed && chunk.length > 0) {
      lfOwed = false;
      if (chunk[0] === 0x0a) {
        events.push('\n');
        afterCR = false;
        start = 1;
      }
    }
    for (let i = start; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === 0x0a && afterCR) {
        afterCR = false;
        continue;
      }
      afterCR = byte === 0x0d;
      if (byte !== 0x0a && byte !== 0x0d) {
        lineLength++;
        continue;
      }
      if (lineLength > 0) {
        lineLength = 0;
        continue;
      }
      const end = byte === 0x0d && chunk[i + 1] === 0x0a ? i + 2 : i + 1;
      if (end === i + 2) {
        i++;
        afterCR = false;
      }
      events.push(Buffer.concat([...pending, chunk.subarray(start, end)]).toString('latin1'));
      pending = [];
      start = end;
      if (end === chunk.length && byte === 0x0d) lfOwed = true;
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  return { events, rest: Buffer.concat(pending).toString('latin1') };
}

/** parseSseEvent without its single-data-line fast path. */
function referenceParse(raw: Buffer): { event: string | null; data: string | null } {
  let event: string | null = null;
  let data: string[] | null = null;
  for (const line of raw.toString('utf8').split(/\r\n|\r|\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') (data ??= []).push(value);
    else if (field === 'event') event = value;
  }
  return { event, data: data === null ? null : data.join('\n') };
}

const sseBytes = fc
  .array(fc.constantFrom('data: ', 'data:', 'event: x', ': c', '{"a":1}', 'é', 'x', '\n', '\n', '\n', '\r', '\r\n', ' '), { maxLength: 40 })
  .map((parts) => Buffer.from(parts.join(''), 'utf8'));

test('property: the LF fast path splits and parses exactly as the byte-by-byte reference, however the bytes are chunked', () => {
  fc.assert(
    fc.property(sseBytes, fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 30 }), (bytes, sizes) => {
      const chunks: Buffer[] = [];
      let pos = 0;
      for (const size of sizes) {
        if (pos >= bytes.length) break;
        chunks.push(bytes.subarray(pos, pos + size));
        pos += size;
      }
      if (pos < bytes.length) chunks.push(bytes.subarray(pos));
      const splitter = new SseSplitter();
      const events = chunks.flatMap((c) => splitter.push(c));
      const expected = referenceSplit(chunks);
      assert.deepEqual(
        events.map((e) => e.toString('latin1')),
        expected.events,
      );
      assert.equal(splitter.takePending().toString('latin1'), expected.rest);
      for (const event of events) assert.deepEqual(parseSseEvent(event), referenceParse(event));
    }),
    { numRuns: 1000 },
  );
});

test('the single-data-line fast path of parseSseEvent agrees with the general reading at its edges', () => {
  for (const text of ['data: \n\n', 'data:  x\n\n', 'data: a\nb\n\n', 'data: a\r\n\r\n', 'data: é\n\n', 'data: [DONE]\n\n', 'datum: x\n\n', 'data: x\n\n\n']) {
    const raw = Buffer.from(text);
    assert.deepEqual(parseSseEvent(raw), referenceParse(raw), JSON.stringify(text));
  }
});

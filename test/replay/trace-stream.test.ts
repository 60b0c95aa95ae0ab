import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parsePowerTrace, readPowerTraceFile } from '../../collectors/trace-file.js';
import { forEachLine, LineSplitter, MAX_LINE_CHARS } from '../../collectors/trace-file-lines.js';
import { ReplayPowerSource } from '../../collectors/replay/replay-power-source.js';
import type { PowerSourceError } from '../../collectors/power-source.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-trace-stream-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const lines = (visit: (v: (line: string, n: number) => void) => void): [string, number][] => {
  const out: [string, number][] = [];
  visit((line, n) => out.push([line, n]));
  return out;
};

test('property: text fed in any pieces gives the lines and numbers of the whole text (BOM, CRLF, no phantom last line)', () => {
  const text = fc.array(fc.constantFrom('a', 'é', '😀', ',', '\n', '\r', '\r\n', '\ufeff', ' '), { maxLength: 40 }).map((parts) => parts.join(''));
  fc.assert(
    fc.property(text, fc.array(fc.nat(), { maxLength: 6 }), (whole, cuts) => {
      const at = [...new Set(cuts.map((c) => c % (whole.length + 1)))].sort((a, b) => a - b);
      const expected = lines((v) => forEachLine(whole, v));
      const got = lines((v) => {
        const splitter = new LineSplitter(v);
        let from = 0;
        for (const cut of [...at, whole.length]) {
          splitter.push(whole.slice(from, cut));
          from = cut;
        }
        splitter.end();
      });
      assert.deepEqual(got, expected);
    }),
    { numRuns: 500 },
  );
});

test('a trace file is streamed (past the 1 MiB read size) to the same result as the whole text, line numbers included', async (t) => {
  const dir = tempDir(t);
  const t0 = 1_800_000_000_000;
  const rows = ['\ufefftimestamp_ms,gpu,power_w,energy_j'];
  for (let k = 0; k < 40_000; k++) rows.push(`${t0 + k * 100},0,300.5,${1000 + k * 30.05}`);
  rows.splice(30_000, 0, 'not,a,valid,line'); // line 30001, beyond the first 1 MiB read
  rows.splice(35_000, 0, `${t0 + 100},0,300.5,1000`); // line 35001: back in time
  const text = `${rows.join('\r\n')}\r\n`;
  assert.ok(Buffer.byteLength(text) > 1024 * 1024, "bigger than one read");
  const path = join(dir, 'trace.csv');
  writeFileSync(path, text);
  const streamed = await readPowerTraceFile(path, { fileName: 'trace.csv' });
  const whole = parsePowerTrace(text, { fileName: 'trace.csv' });
  assert.deepEqual(streamed, whole);
  assert.equal(streamed.samples.length, 40_000);
  assert.deepEqual(streamed.errors.map((e) => e.line), [30_001, 35_001]);
  assert.match(streamed.errors[1]?.message ?? '', /^timestamp goes back 3499\.6 s for GPU 0: .* on line 35000;/);
  await assert.rejects(readPowerTraceFile(join(dir, 'missing.csv')), /ENOENT/);
});

test('replay streams its file: bad lines by number, unreadable files refused clearly', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'trace.csv');
  writeFileSync(path, 'timestamp_ms,gpu,power_w,energy_j\n1800000000000,0,300,10\n1800000001000,0,300,310\n1800000000500,0,300,400\n1800000002000,0,300,610\n');
  const source = new ReplayPowerSource({ path, clock: { now: () => 5_000_000_000_000 }, tickMs: 60_000 });
  await source.init();
  const errors: PowerSourceError[] = [];
  source.start(() => undefined, (e) => errors.push(e));
  assert.deepEqual(errors.map((e) => e.reason), ['parse']);
  assert.match(errors[0]?.message ?? '', new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: timestamp goes back 0\\.5 s for GPU 0`));
  await source.shutdown();
  await assert.rejects(new ReplayPowerSource({ path: dir }).init(), /replay: cannot read .*: EISDIR/);
});

test('a line longer than 1 MiB is its own bad line, wherever the read pieces are cut; the lines around it are read', () => {
  const long = (n: number) => 'x'.repeat(n);
  const text = ['head', long(MAX_LINE_CHARS), long(MAX_LINE_CHARS + 1), 'mid', `${long(MAX_LINE_CHARS)}\r`, `${long(MAX_LINE_CHARS + 1)}\r`, 'tail', long(3 * MAX_LINE_CHARS)].join('\n');
  const expectedLines = [[1, 'head'], [2, MAX_LINE_CHARS], [4, 'mid'], [5, MAX_LINE_CHARS], [7, 'tail']];
  const expectedTooLong = [3, 6, 8];
  const run = (feed: (splitter: LineSplitter) => void) => {
    const seen: [number, string | number][] = [];
    const tooLong: number[] = [];
    const splitter = new LineSplitter((line, n) => seen.push([n, line.length > 10 ? line.length : line]), (n) => tooLong.push(n));
    feed(splitter);
    splitter.end();
    return { seen, tooLong };
  };
  const whole = { seen: [] as [number, string | number][], tooLong: [] as number[] };
  forEachLine(text, (line, n) => whole.seen.push([n, line.length > 10 ? line.length : line]), (n) => whole.tooLong.push(n));
  assert.deepEqual(whole, { seen: expectedLines, tooLong: expectedTooLong });
  for (const size of [1 << 20, (1 << 20) - 3, 65_536, 999_983, 3 * MAX_LINE_CHARS]) {
    const got = run((splitter) => {
      for (let at = 0; at < text.length; at += size) splitter.push(text.slice(at, at + size));
    });
    assert.deepEqual(got, { seen: expectedLines, tooLong: expectedTooLong }, `pieces of ${size}`);
  }
  // Without a tooLong handler the splitter refuses, naming the line.
  assert.throws(() => new LineSplitter(() => undefined).push(`a\n${long(MAX_LINE_CHARS + 2)}`), /^Error: line 2 is longer than 1048576 characters/);
});

test('a trace with a line over 1 MiB: that line is a bad line with its number, the rest is read (file and text alike)', async (t) => {
  const dir = tempDir(t);
  const t0 = 1_800_000_000_000;
  const text = ['timestamp_ms,gpu,power_w,energy_j', `${t0},0,100,`, `${t0 + 1000},0,100,`, `${t0 + 2000},0,${'9'.repeat(MAX_LINE_CHARS)},`, `${t0 + 3000},0,100,`].join('\n');
  const path = join(dir, 'long.csv');
  writeFileSync(path, text);
  const streamed = await readPowerTraceFile(path);
  assert.deepEqual(streamed.errors, [{ line: 4, message: 'line longer than 1048576 characters: not a trace line', reason: 'line longer than 1048576 characters' }]);
  assert.equal(streamed.samples.length, 3);
  assert.deepEqual(parsePowerTrace(text), streamed);
});

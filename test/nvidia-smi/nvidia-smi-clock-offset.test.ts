import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NvidiaSmiClockOffset, type Placed } from '../../collectors/nvidia-smi/nvidia-smi-clock-offset.js';

const T = 1_793_534_400_000;
const MIN = 60_000;

/** Feeds [stamp, arrival] pairs (one GPU, one line per 100 ms) and returns the emitted times, in order. */
function run(clock: NvidiaSmiClockOffset<number>, lines: readonly (readonly [number, number])[]): number[] {
  const out: Placed<number>[] = [];
  lines.forEach(([stamped, arrived], i) => out.push(...clock.place(i, stamped, arrived)));
  out.push(...clock.drain());
  assert.deepEqual(out.map((p) => p.item), lines.map((_, i) => i), 'every line once, in order');
  return out.map((p) => p.timestampMs);
}

const increasing = (times: readonly number[]): boolean => times.every((t, i) => i === 0 || t > (times[i - 1] as number));

test('late lines keep their own stamps: a 3 s stall of the agent moves nothing and never steps back', () => {
  const changes: number[] = [];
  const clock = new NvidiaSmiClockOffset<number>(10_000, (o) => changes.push(o));
  const lines: [number, number][] = [];
  for (let k = 0; k < 100; k++) {
    const stamped = T + k * 100;
    // Lines stamped from +1.0 s to +4.0 s are read together at +4.0 s (event loop blocked).
    const arrived = stamped >= T + 1000 && stamped < T + 4000 ? T + 4000 : stamped + 5;
    lines.push([stamped, arrived]);
  }
  const times = run(clock, lines);
  assert.deepEqual(times, lines.map(([stamped]) => stamped));
  assert.ok(increasing(times));
  assert.deepEqual(changes, []);
});

test('a child in another time zone: the constant offset from the first line on, late lines included', () => {
  const changes: [number, number | null][] = [];
  const clock = new NvidiaSmiClockOffset<number>(10_000, (o, p) => changes.push([o, p]));
  const zone = -(5 * 60 + 45) * MIN; // the child's clock reads 5 h 45 min ahead (Asia/Kathmandu vs UTC)
  const lines: [number, number][] = [];
  for (let k = 0; k < 50; k++) {
    const real = T + k * 100;
    lines.push([real - zone, k >= 20 && k < 30 ? T + 3000 : real + 3]); // ten lines arrive late
  }
  const times = run(clock, lines);
  assert.deepEqual(times, lines.map((_, k) => T + k * 100));
  assert.deepEqual(changes, [[zone, null]]);
  assert.equal(clock.currentOffsetMs, zone);
});

test('the offset changes only after the new one held for confirmMs; lines meanwhile are held, then placed with it', () => {
  const clock = new NvidiaSmiClockOffset<number>(2000);
  const lines: [number, number][] = [];
  // 5 s in agreement, then the child's clock falls back an hour (DST in its zone only), for 5 s.
  for (let k = 0; k < 100; k++) {
    const real = T + k * 100;
    lines.push([k < 50 ? real : real - 60 * MIN, real + 2]);
  }
  const out: Placed<number>[] = [];
  lines.forEach(([stamped, arrived], i) => {
    out.push(...clock.place(i, stamped, arrived));
    if (i === 60) assert.equal(clock.heldCount, 11, 'held while unconfirmed');
  });
  out.push(...clock.drain());
  assert.deepEqual(out.map((p) => p.timestampMs), lines.map((_, k) => T + k * 100));
  assert.equal(clock.currentOffsetMs, 60 * MIN);
});

test('a backlog read at once after a 20 min stall does not change the offset: every line keeps its stamp', () => {
  const clock = new NvidiaSmiClockOffset<number>(10_000);
  const lines: [number, number][] = [[T, T + 1]];
  for (let k = 1; k <= 1200; k++) lines.push([T + k * 1000, T + 20 * MIN + 5 + k * 0.01]);
  lines.push([T + 20 * MIN + 1000, T + 20 * MIN + 1001]);
  const times = run(clock, lines);
  assert.deepEqual(times, lines.map(([stamped]) => stamped));
  assert.equal(clock.currentOffsetMs, 0);
});

test('lines held while a new offset is confirmed are released whole, however many', () => {
  const clock = new NvidiaSmiClockOffset<number>(60 * MIN);
  const out: Placed<number>[] = [];
  const place = (item: number, stamped: number, arrived: number): void => {
    for (const p of clock.place(item, stamped, arrived)) out.push(p);
  };
  place(0, T, T);
  // The stamps move an hour back at once (a time-zone change): 200,000 lines wait for the hour.
  const n = 200_000;
  for (let i = 1; i <= n; i++) place(i, T - 60 * MIN + i * 10, T + i * 10);
  assert.equal(clock.heldCount, n);
  place(n + 1, T + 61 * MIN - 60 * MIN, T + 61 * MIN);
  for (const p of clock.drain()) out.push(p);
  assert.equal(out.length, n + 2);
  assert.deepEqual([out[1]?.item, out[1]?.timestampMs], [1, T + 10]);
});

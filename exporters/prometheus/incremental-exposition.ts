import { crc32 } from 'node:zlib';
import { Registry, type Metric } from 'prom-client';
import { crc32Combine, deflatePiece, GZIP_HEADER } from './gzip-member.js';

/**
 * The text exposition of a prom-client registry, kept up to date incrementally: exactly the text
 * `registry.metrics()` returns, at a fraction of the cost when few series change between renders.
 *
 * A series' labels never change, so the text of each sample line up to its value (its "prefix")
 * is rendered once, by prom-client itself, and kept; a render then compares every series' value
 * with the one last rendered and rebuilds only the segments (runs of a few hundred lines) holding
 * a changed series, from the kept prefixes and the new values. Each prefix prom-client renders is
 * checked against the value it printed (layout and number format), and anything unexpected (a
 * collect() callback, exemplars, default labels, a metric type or prom-client shape not known
 * here) switches to rendering with prom-client in full, which is always correct.
 *
 * Segments are held as bytes with their CRC-32, and each is deflated once on the libuv threadpool
 * when it is made, so a gzip body of the whole text is a concatenation (see gzip-member.ts).
 *
 * Consistency and the event loop: the values are read in one synchronous pass, so a render shows
 * one instant, whatever changes while it runs (those land in the next render). Around that pass the
 * work is done in bounded turns that yield to the event loop: the prefixes of new series (label
 * text, which never changes) before it, at most `linesPerTurn` lines per turn, and the formatting
 * of the values it took after it, so neither a burst of new series (a restart's seed) nor a
 * settlement that moves every series blocks the agent for the whole render.
 */

export interface IncrementalExpositionOptions {
  /** Sample lines per segment (default 256): the unit re-encoded and re-compressed on a change. */
  readonly segmentLines?: number;
  /** New series' lines rendered per event-loop turn before yielding (default 1024). */
  readonly linesPerTurn?: number;
}

/** A piece of the exposition: its bytes, CRC-32, and raw deflate (sync-flushed, started at once). */
export class ExpositionSegment {
  readonly crc: number;
  private deflating: Promise<Buffer> | null = null;

  constructor(readonly bytes: Buffer) {
    this.crc = crc32(bytes);
  }

  /** Start compressing (idempotent); rejects only if zlib fails. */
  deflated(): Promise<Buffer> {
    if (this.deflating === null) {
      this.deflating = deflatePiece(this.bytes);
      this.deflating.catch(() => undefined); // a failure is seen by whoever awaits it, never unhandled
    }
    return this.deflating;
  }
}

/** One rendered state of the registry: immutable; newer renders make new snapshots. */
export class ExpositionSnapshot {
  readonly byteLength: number;
  /** CRC-32 of the whole text. */
  readonly crc: number;
  private textCache: string | null = null;
  private gzip: Promise<readonly Buffer[]> | null = null;

  constructor(private readonly segments: readonly ExpositionSegment[]) {
    let length = 0;
    let crc = 0;
    for (const s of segments) {
      crc = crc32Combine(crc, s.crc, s.bytes.length);
      length += s.bytes.length;
    }
    this.byteLength = length;
    this.crc = crc;
  }

  /** The text as buffers (their concatenation is the text). */
  get chunks(): Buffer[] {
    return this.segments.map((s) => s.bytes);
  }

  /** The text as a string (decoded once, on first use). */
  text(): string {
    this.textCache ??= Buffer.concat(this.chunks, this.byteLength).toString('utf8');
    return this.textCache;
  }

  /**
   * GZIP_HEADER and the text deflated, ending in a sync flush, as pieces (the segments' own
   * deflated buffers, not copied): the start of a gzip member that finishGzipMember() completes.
   * Compression runs on the threadpool; this only waits for it.
   */
  gzipPrefix(): Promise<readonly Buffer[]> {
    if (this.gzip === null) {
      this.gzip = Promise.all(this.segments.map((s) => s.deflated())).then((parts) => [GZIP_HEADER, ...parts]);
      this.gzip.catch(() => undefined);
    }
    return this.gzip;
  }
}

/** prom-client's per-series record (its `hashMap` values), as far as rendering reads it. */
interface ScalarEntry {
  readonly labels: object;
  readonly value: number;
}
interface HistogramEntry {
  readonly labels: object;
  readonly bucketValues: Readonly<Record<string, number>>;
  readonly sum: number;
  readonly count: number;
}
type Entry = ScalarEntry | HistogramEntry;

/** The prom-client metric internals this module relies on (checked before use). */
interface MetricInternals {
  readonly name: string;
  readonly type: string;
  readonly hashMap: Record<string, Entry>;
  readonly collect?: unknown;
  readonly enableExemplars?: boolean;
  readonly upperBounds?: readonly number[];
}

/** prom-client's number format (lib/util.js getValueAsString), to the character. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'Nan';
  if (!Number.isFinite(value)) return value < 0 ? '-Inf' : '+Inf';
  return `${value}`;
}

class MetricState {
  readonly histogram: boolean;
  readonly upperBounds: readonly number[];
  /** Sample lines per series (1, or a histogram's buckets + Inf + sum + count). */
  readonly lines: number;
  readonly seriesPerSegment: number;
  /** "# HELP ...\n# TYPE ..." as prom-client renders it; preceded by a blank line after the first metric. */
  head: string | undefined;
  /** Per position (Object.values order of hashMap): the entry and labels the prefixes were made for. */
  entries: (Entry | undefined)[] = [];
  labels: (object | undefined)[] = [];
  /** prefixes[i * lines + j]: line j of series i up to and including the space before the value. */
  prefixes: string[] = [];
  /** UTF-8 length of each prefix, so a segment's size is known before it is written. */
  prefixBytes: number[] = [];
  /** Values last rendered (scalar: value; histogram: count and sum); undefined: render again. */
  v: (number | undefined)[] = [];
  s: (number | undefined)[] = [];
  /** Series count at the last build (-1: never built). */
  built = -1;
  segments: ExpositionSegment[] = [];
  /** The entries found by the last scan, in order (reused from scan to scan). */
  readonly current: Entry[] = [];
  /** The hashMap whose keys are tracked (prom-client replaces it on reset()); see syncKeys. */
  watched: object | null = null;
  /** The hashMap's own keys in its own order, which is the order prom-client renders. */
  keys: string[] = [];
  /** Keys the hashMap gained since the last scan, in the order they were added. */
  readonly added: string[] = [];
  /** Set when the tracked keys may be wrong (a remove(), an index-like key): enumerate again. */
  keysStale = false;
  dirty: Uint8Array = new Uint8Array(0);

  constructor(readonly metric: MetricInternals, readonly index: number, segmentLines: number) {
    this.histogram = metric.type === 'histogram';
    this.upperBounds = this.histogram ? [...(metric.upperBounds ?? [])] : [];
    this.lines = this.histogram ? this.upperBounds.length + 3 : 1;
    this.seriesPerSegment = Math.max(1, Math.floor(segmentLines / this.lines));
  }

  static supported(metric: MetricInternals): boolean {
    if (typeof metric.hashMap !== 'object' || metric.hashMap === null || typeof metric.name !== 'string') return false;
    if (metric.collect !== undefined || metric.enableExemplars === true) return false;
    if (metric.type === 'counter' || metric.type === 'gauge') return true;
    return metric.type === 'histogram' && Array.isArray(metric.upperBounds);
  }

  changed(i: number, e: Entry): boolean {
    if (this.histogram) {
      const h = e as HistogramEntry;
      return !Object.is(h.count, this.v[i]) || !Object.is(h.sum, this.s[i]);
    }
    return !Object.is((e as ScalarEntry).value, this.v[i]);
  }

  /** The value printed on line j of a series. */
  lineValue(e: Entry, j: number, cumulative: number): number {
    if (!this.histogram) return (e as ScalarEntry).value;
    const h = e as HistogramEntry;
    const b = this.upperBounds.length;
    return j < b ? cumulative : j === b + 1 ? h.sum : h.count;
  }
}

/** Keys that JavaScript orders before all others (array indices): insertion order does not hold for them. */
const INDEX_LIKE = /^(?:0|[1-9][0-9]*)$/;

/**
 * Keep `st.keys` equal to the own keys of the metric's hashMap, in order, without enumerating the
 * map on every render: past about 1,000 series prom-client's map is in dictionary mode, and for-in
 * (or Object.keys) over it allocates and orders every key each time, which was most of a render's
 * CPU at the label cap (and its largest allocation).
 *
 * New series are seen through a proxy placed as the map's prototype. Assigning a key the map does
 * not have goes up the prototype chain, so the proxy's set trap records the key (and then creates
 * it on the map, as an ordinary assignment would); reads and writes of existing series never reach
 * it. A delete does not consult the chain, so remove() is wrapped to mark the keys stale, and a
 * lookup that finds nothing does the same; reset() replaces the map, which the identity check sees.
 * Anything else falls back to enumerating the map.
 */
function syncKeys(st: MetricState): void {
  const hashMap = st.metric.hashMap;
  if (hashMap === st.watched && !st.keysStale) {
    if (st.added.length > 0) {
      for (const key of st.added) st.keys.push(key);
      st.added.length = 0;
    }
    return;
  }
  st.keys = Object.keys(hashMap);
  st.added.length = 0;
  st.keysStale = false;
  if (hashMap === st.watched) return;
  st.watched = hashMap;
  // The proxy's target inherits the map's own prototype, so lookups of inherited names, and any
  // watcher placed before this one, behave as before.
  const target: object = Object.create(Object.getPrototypeOf(hashMap) as object | null) as object;
  Object.setPrototypeOf(hashMap, new Proxy(target, {
    set(inner, key, value, receiver) {
      if (receiver === hashMap && st.watched === hashMap && typeof key === 'string') {
        if (INDEX_LIKE.test(key)) st.keysStale = true;
        else st.added.push(key);
      }
      return Reflect.set(inner, key, value, receiver);
    },
  }));
  const metric = st.metric as unknown as { remove?: unknown };
  const remove = metric.remove;
  if (typeof remove === 'function') {
    metric.remove = function removeWatched(this: unknown, ...args: unknown[]): unknown {
      st.keysStale = true;
      return (remove as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
}

/** States being replaced stop tracking keys: their watchers, still in place, then do nothing. */
function retire(states: readonly MetricState[]): void {
  for (const st of states) {
    st.watched = null;
    st.added.length = 0;
  }
}

/** The metric's entries in rendering order into `out`; false when a tracked key was not found. */
function readEntries(st: MetricState, out: Entry[]): boolean {
  syncKeys(st);
  const hashMap = st.metric.hashMap;
  const keys = st.keys;
  const n = keys.length;
  for (let i = 0; i < n; i += 1) {
    const e = hashMap[keys[i] as string];
    if (e === undefined) return false;
    out[i] = e;
  }
  if (out.length !== n) out.length = n;
  return true;
}

function sameLabels(a: object, b: object | undefined): boolean {
  if (a === b) return true;
  if (b === undefined) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let k = 0; k < ka.length; k += 1) {
    const name = ka[k] as string;
    if (name !== kb[k] || (a as Record<string, unknown>)[name] !== (b as Record<string, unknown>)[name]) return false;
  }
  return true;
}

/** A frozen copy of an entry, for rendering a prefix while the original may move on. */
function copyOf(e: Entry, histogram: boolean): Entry {
  if (!histogram) return { labels: e.labels, value: (e as ScalarEntry).value };
  const h = e as HistogramEntry;
  return { labels: h.labels, bucketValues: { ...h.bucketValues }, sum: h.sum, count: h.count };
}

interface Missing {
  readonly state: MetricState;
  /** Position of the series, or -1 for the metric's head. */
  readonly index: number;
}

/** A segment to rebuild: its series from `first`, and the value of each of their lines. */
interface PlannedSegment {
  readonly state: MetricState;
  readonly segment: number;
  readonly first: number;
  readonly values: readonly number[];
}

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const TAIL = Buffer.from('\n');

export class IncrementalExposition {
  private readonly segmentLines: number;
  private readonly linesPerTurn: number;
  private readonly scratch = new Registry();
  private readonly tail = new ExpositionSegment(TAIL);
  private states: MetricState[] = [];
  private seen: readonly unknown[] = [];
  private fullRenders = false;
  /** Scratch for segmentBytes: the value texts of the segment being written. */
  private readonly valueTexts: string[] = [];

  constructor(private readonly registry: Registry, options: IncrementalExpositionOptions = {}) {
    this.segmentLines = Math.max(1, options.segmentLines ?? 256);
    this.linesPerTurn = Math.max(1, options.linesPerTurn ?? 1024);
  }

  /** True once something unexpected switched this to full prom-client renders (for tests). */
  get fallback(): boolean {
    return this.fullRenders;
  }

  /** Render the registry; only one render may run at a time (the caller serialises them). */
  async render(): Promise<ExpositionSnapshot> {
    for (;;) {
      const missing = this.fullRenders ? null : this.scan();
      if (this.fullRenders) return this.renderInFull();
      if (missing === null) return this.build(this.plan());
      const more = await this.derive(missing);
      if (more) await yieldTurn();
    }
  }

  private async renderInFull(): Promise<ExpositionSnapshot> {
    const segment = new ExpositionSegment(Buffer.from(await this.registry.metrics()));
    void segment.deflated();
    return new ExpositionSnapshot([segment]);
  }

  /** Something here is not what this module knows: render with prom-client in full from now on. */
  private giveUp(): void {
    this.fullRenders = true;
    retire(this.states);
    this.states = [];
  }

  /**
   * Compare every series with what was last rendered (synchronous). Returns the series whose
   * prefix is not known yet, or null when the build can follow at once.
   */
  private scan(): Missing[] | null {
    const metrics = this.registry.getMetricsAsArray() as unknown as MetricInternals[];
    if (metrics.length !== this.seen.length || metrics.some((m, k) => m !== this.seen[k])) {
      const internals = this.registry as unknown as { _defaultLabels?: object; contentType: string };
      const plain = internals.contentType === Registry.PROMETHEUS_CONTENT_TYPE && Object.keys(internals._defaultLabels ?? {}).length === 0;
      if (!plain || !metrics.every((m) => MetricState.supported(m))) {
        this.giveUp();
        return null;
      }
      this.seen = metrics;
      retire(this.states);
      this.states = metrics.map((m, k) => new MetricState(m, k, this.segmentLines));
    }
    const missing: Missing[] = [];
    for (const st of this.states) {
      if (st.head === undefined) missing.push({ state: st, index: -1 });
      const values = st.current;
      if (!readEntries(st, values)) {
        st.keysStale = true; // a key was gone (deleted without remove()): enumerate, which cannot miss
        readEntries(st, values);
      }
      const n = values.length;
      const per = st.seriesPerSegment;
      const segCount = Math.max(1, Math.ceil(n / per));
      const dirty = new Uint8Array(segCount);
      for (let k = st.segments.length; k < segCount; k += 1) dirty[k] = 1;
      if (n !== st.built) for (let k = Math.floor(Math.min(n, Math.max(0, st.built)) / per); k < segCount; k += 1) dirty[k] = 1;
      for (let i = 0; i < n; i += 1) {
        const e = values[i] as Entry;
        if (e !== st.entries[i]) {
          if (st.entries[i] !== undefined && sameLabels(e.labels, st.labels[i])) {
            st.entries[i] = e; // replaced (a gauge set) with the same labels: the prefix still holds
            dirty[Math.floor(i / per)] = 1;
          } else missing.push({ state: st, index: i });
        } else if (st.changed(i, e)) dirty[Math.floor(i / per)] = 1;
      }
      st.dirty = dirty;
    }
    return missing.length === 0 ? null : missing;
  }

  /**
   * Take the values of every dirty segment (synchronous, right after the scan: one instant) and
   * record them as rendered. Everything the build needs is in the plan, so it may yield.
   */
  private plan(): PlannedSegment[] {
    const plan: PlannedSegment[] = [];
    for (const st of this.states) {
      const current = st.current;
      const n = current.length;
      const per = st.seriesPerSegment;
      const bounds = st.upperBounds;
      for (let k = 0; k < st.dirty.length; k += 1) {
        if (st.dirty[k] === 0) continue;
        const first = k * per;
        const end = Math.min(n, first + per);
        const values: number[] = [];
        for (let i = first; i < end; i += 1) {
          if (st.histogram) {
            const h = current[i] as HistogramEntry;
            let acc = 0;
            for (const bound of bounds) values.push((acc += h.bucketValues[bound] as number));
            values.push(h.count, h.sum, h.count);
            st.v[i] = h.count;
            st.s[i] = h.sum;
          } else {
            const value = (current[i] as ScalarEntry).value;
            values.push(value);
            st.v[i] = value;
          }
        }
        plan.push({ state: st, segment: k, first, values });
      }
      st.segments.length = st.dirty.length;
      if (n < st.built) {
        st.entries.length = n;
        st.labels.length = n;
        st.v.length = n;
        st.s.length = n;
        st.prefixes.length = n * st.lines;
        st.prefixBytes.length = n * st.lines;
      }
      st.built = n;
    }
    return plan;
  }

  /**
   * Format the planned segments from the kept prefixes and the planned values, in turns of about
   * 8 x linesPerTurn lines (formatting a line costs a fraction of rendering it with prom-client).
   */
  private async build(plan: readonly PlannedSegment[]): Promise<ExpositionSnapshot> {
    let budget = this.linesPerTurn * 8;
    for (const { state: st, segment: k, first, values } of plan) {
      if (budget <= 0) {
        await yieldTurn();
        budget = this.linesPerTurn * 8;
      }
      const segment = new ExpositionSegment(this.segmentBytes(st, k === 0 ? (st.head as string) : '', first * st.lines, values));
      void segment.deflated(); // compress now, on the threadpool, ready for a gzip scrape
      st.segments[k] = segment;
      budget -= values.length;
    }
    const all: ExpositionSegment[] = [];
    for (const st of this.states) for (const segment of st.segments) all.push(segment);
    all.push(this.tail);
    return new ExpositionSnapshot(all);
  }

  /**
   * A segment's bytes: `head`, then for each value a newline, the line's kept prefix and the value,
   * written straight into one buffer of the size computed first. Building the text as a string
   * and encoding it allocated about three times the segment in the V8 heap on every rebuild.
   */
  private segmentBytes(st: MetricState, head: string, base: number, values: readonly number[]): Buffer {
    const texts = this.valueTexts;
    let size = head.length === 0 ? 0 : Buffer.byteLength(head);
    for (let l = 0; l < values.length; l += 1) {
      const text = formatValue(values[l] as number); // ASCII: one byte per character
      texts[l] = text;
      size += 1 + (st.prefixBytes[base + l] as number) + text.length;
    }
    const bytes = Buffer.allocUnsafe(size);
    let at = head.length === 0 ? 0 : bytes.write(head, 0, 'utf8');
    for (let l = 0; l < values.length; l += 1) {
      bytes[at++] = 0x0a;
      at += bytes.write(st.prefixes[base + l] as string, at, 'utf8');
      at += bytes.write(texts[l] as string, at, 'latin1');
    }
    if (at !== size) {
      // Cannot happen while prefixBytes matches prefixes; if it ever does, the text built as a string is right.
      let text = head;
      for (let l = 0; l < values.length; l += 1) text += `\n${st.prefixes[base + l] as string}${texts[l] as string}`;
      texts.length = 0;
      return Buffer.from(text);
    }
    texts.length = 0;
    return bytes;
  }

  /**
   * Render the prefixes of new series with prom-client, at most linesPerTurn lines; true when some
   * are left for another turn. Each printed value is checked against formatValue().
   */
  private async derive(missing: readonly Missing[]): Promise<boolean> {
    let budget = this.linesPerTurn;
    let k = 0;
    while (k < missing.length && budget > 0) {
      const state = (missing[k] as Missing).state;
      const items: number[] = [];
      for (; k < missing.length && (missing[k] as Missing).state === state && budget > 0; k += 1) {
        const index = (missing[k] as Missing).index;
        if (index >= 0) {
          items.push(index);
          budget -= state.lines;
        }
      }
      if (!(await this.derivePrefixes(state, items))) {
        this.giveUp();
        return false;
      }
    }
    return k < missing.length;
  }

  private async derivePrefixes(st: MetricState, indexes: readonly number[]): Promise<boolean> {
    const hashMap: Record<string, Entry> = {};
    const copies: Entry[] = [];
    const originals: Entry[] = [];
    for (const i of indexes) {
      const original = st.current[i] as Entry;
      const copy = copyOf(original, st.histogram);
      originals.push(original);
      copies.push(copy);
      hashMap[`s${copies.length}`] = copy;
    }
    const view = Object.create(st.metric, { hashMap: { value: hashMap } }) as Metric<string>;
    this.scratch.registerMetric(view);
    let text: string;
    try {
      text = await this.scratch.getSingleMetricAsString(st.metric.name);
    } finally {
      this.scratch.removeSingleMetric(st.metric.name);
    }
    const lines = text.split('\n');
    if (lines.length !== 2 + copies.length * st.lines) return false;
    const head = `${lines[0] as string}\n${lines[1] as string}`;
    st.head = st.index === 0 ? head : `\n\n${head}`;
    for (let c = 0; c < copies.length; c += 1) {
      const i = indexes[c] as number;
      const copy = copies[c] as Entry;
      let acc = 0;
      for (let j = 0; j < st.lines; j += 1) {
        if (st.histogram && j < st.upperBounds.length) acc += (copy as HistogramEntry).bucketValues[st.upperBounds[j] as number] as number;
        const line = lines[2 + c * st.lines + j] as string;
        const space = line.lastIndexOf(' ');
        if (space < 0 || line.slice(space + 1) !== formatValue(st.lineValue(copy, j, acc))) return false;
        const prefix = line.slice(0, space + 1);
        st.prefixes[i * st.lines + j] = prefix;
        st.prefixBytes[i * st.lines + j] = Buffer.byteLength(prefix);
      }
      st.entries[i] = originals[c];
      st.labels[i] = copy.labels;
      st.v[i] = undefined; // render this position's line again
      st.s[i] = undefined;
    }
    return true;
  }
}

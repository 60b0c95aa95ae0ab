/**
 * Small inline-SVG chart builders for the self-contained HTML report (no script, no network).
 * Every text that may come from user data goes through escapeXml.
 */

export const PALETTE = ['#2f6db5', '#e07b28', '#3a9a5b', '#b8453c', '#7d5ba6', '#8c6d46', '#d46aa8', '#5f8c96', '#a4a63a', '#3fb7c4'];
export const GREY = { idle: '#9aa3ad', unattributed: '#c9ced4', host: '#6b7480' };

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

const SUFFIXES: readonly [scale: number, suffix: string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];

/** Compact number for labels: 3 significant digits, k/M/G/T suffixes. */
export function fmt(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return 'n/a';
  // Rounded to 3 digits first, so that 999,600 shows as 1M, not as 1.00e+3k.
  const a = Math.abs(Number(x.toPrecision(3)));
  if (a >= 1e4) {
    const [scale, suffix] = SUFFIXES.find(([s]) => a >= s) ?? [1e3, 'k'];
    const scaled = (x / scale).toPrecision(3);
    return scaled.includes('e') ? x.toExponential(2) : `${trimZeros(scaled)}${suffix}`;
  }
  if (a >= 100) return String(Math.round(x));
  if (a >= 1) return trimZeros(x.toPrecision(3));
  if (a === 0) return '0';
  return x.toPrecision(2);
}

/** "2.50" -> "2.5", "3.00" -> "3"; integers keep their zeros. */
const trimZeros = (text: string): string => (text.includes('.') && !text.includes('e') ? text.replace(/\.?0+$/, '') : text);

const svgOpen = (width: number, height: number, title: string, cls: string): string =>
  `<svg class="chart ${cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeXml(title)}"><title>${escapeXml(title)}</title>`;

export interface StackSeries {
  readonly name: string;
  readonly color: string;
  /** One value per category, same order as the categories. */
  readonly values: readonly number[];
}

/** Stacked vertical bars over categories (days or weeks), with a legend and a y axis. */
export function stackedBars(title: string, categories: readonly string[], series: readonly StackSeries[], unit: string): string {
  const width = 920;
  const height = 320;
  const left = 64;
  const right = 12;
  const top = 16;
  const bottom = 78;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const totals = categories.map((_, i) => series.reduce((s, se) => s + Math.max(0, se.values[i] ?? 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const step = plotW / Math.max(1, categories.length);
  const barW = Math.max(1, step * 0.8);
  const y = (v: number): number => top + plotH - (max > 0 ? (v / max) * plotH : 0);
  let out = svgOpen(width, height, title, 'stacked');
  out += axisY(left, top, plotW, plotH, max, unit);
  categories.forEach((cat, i) => {
    let base = 0;
    const x = left + i * step + (step - barW) / 2;
    for (const s of series) {
      const v = Math.max(0, s.values[i] ?? 0);
      if (v <= 0) continue;
      const y0 = y(base);
      const y1 = y(base + v);
      out += `<rect class="bar" x="${r(x)}" y="${r(y1)}" width="${r(barW)}" height="${r(Math.max(0.5, y0 - y1))}" fill="${s.color}"><title>${escapeXml(`${cat} ${s.name}: ${fmt(v)} ${unit}`)}</title></rect>`;
      base += v;
    }
  });
  const labelEvery = Math.max(1, Math.ceil(categories.length / 12));
  categories.forEach((cat, i) => {
    if (i % labelEvery !== 0) return;
    const x = left + i * step + step / 2;
    out += `<text x="${r(x)}" y="${top + plotH + 14}" font-size="10" text-anchor="middle">${escapeXml(cat)}</text>`;
  });
  out += legend(series.map((s) => ({ name: s.name, color: s.color })), left, height - 36, plotW);
  return `${out}</svg>`;
}

function cellKey(tier: string, row: string, col: string): string {
  return JSON.stringify([tier, row, col]);
}

/** One heatmap per tier: rows batch buckets, columns cache buckets, cells J per output token. */
export function heatmaps(
  title: string,
  cells: readonly { readonly tier: string; readonly row: string; readonly col: string; readonly value: number | null }[],
  unit: string,
): string {
  const tiers = unique(cells.map((c) => c.tier));
  const rows = unique(cells.map((c) => c.row));
  const cols = unique(cells.map((c) => c.col));
  const cellW = 78;
  const cellH = 26;
  const labelW = 86;
  const panelW = labelW + cols.length * cellW + 24;
  const panelH = 40 + rows.length * cellH + 8;
  const perRow = Math.max(1, Math.floor(920 / Math.max(1, panelW)));
  const width = Math.max(320, Math.min(tiers.length, perRow) * panelW);
  const height = Math.max(1, Math.ceil(tiers.length / perRow)) * panelH + 24;
  // Cells by key, and min/max by a loop: a find() per cell and a spread of every value made the
  // chart quadratic in its cells (and a spread has an argument limit).
  const byKey = new Map<string, number | null>();
  let min = 1;
  let max = 1;
  for (const c of cells) {
    const key = cellKey(c.tier, c.row, c.col);
    if (!byKey.has(key)) byKey.set(key, c.value); // the first of a repeated cell, as before
    if (c.value !== null && c.value > 0) {
      min = Math.min(min, c.value);
      max = Math.max(max, c.value);
    }
  }
  const lo = Math.log(min);
  const hi = Math.log(max);
  let out = svgOpen(width, height, title, 'heatmap');
  tiers.forEach((tier, t) => {
    const ox = (t % perRow) * panelW;
    const oy = Math.floor(t / perRow) * panelH;
    out += `<text x="${ox + labelW}" y="${oy + 14}" font-size="12" font-weight="bold">${escapeXml(`tier ${tier}`)}</text>`;
    cols.forEach((col, c) => {
      out += `<text x="${ox + labelW + c * cellW + cellW / 2}" y="${oy + 30}" font-size="10" text-anchor="middle">${escapeXml(`cache ${col}`)}</text>`;
    });
    rows.forEach((row, j) => {
      const y = oy + 36 + j * cellH;
      out += `<text x="${ox + labelW - 6}" y="${y + cellH / 2 + 4}" font-size="10" text-anchor="end">${escapeXml(`batch ${row}`)}</text>`;
      cols.forEach((col, c) => {
        const v = byKey.get(cellKey(tier, row, col)) ?? null;
        const share = v !== null && v > 0 && hi > lo ? (Math.log(v) - lo) / (hi - lo) : 0;
        const fill = v === null ? '#f1f2f4' : heat(share);
        out += `<rect class="cell" x="${ox + labelW + c * cellW}" y="${y}" width="${cellW - 2}" height="${cellH - 2}" fill="${fill}"><title>${escapeXml(`${tier} / batch ${row} / cache ${col}: ${v === null ? 'no data' : `${fmt(v)} ${unit}`}`)}</title></rect>`;
        out += `<text x="${ox + labelW + c * cellW + cellW / 2 - 1}" y="${y + cellH / 2 + 3}" font-size="10" text-anchor="middle" fill="${share > 0.6 ? '#fff' : '#222'}">${v === null ? '-' : escapeXml(fmt(v))}</text>`;
      });
    });
  });
  out += `<text x="4" y="${height - 6}" font-size="10" fill="#555">${escapeXml(`${unit}; colour on a log scale, darker = more energy per token; "-" = no requests`)}</text>`;
  return `${out}</svg>`;
}

export interface Segment {
  readonly name: string;
  readonly value: number;
  readonly color: string;
}

/** Horizontal 100% bars, one per row, each split into labelled segments. */
export function shareBars(title: string, rows: readonly { readonly label: string; readonly segments: readonly Segment[]; readonly note?: string }[]): string {
  const width = 920;
  const labelW = 150;
  const barH = 26;
  const gap = 14;
  const plotW = width - labelW - 290;
  const height = 24 + rows.length * (barH + gap) + 30;
  let out = svgOpen(width, height, title, 'share');
  rows.forEach((row, i) => {
    const y = 12 + i * (barH + gap);
    const total = row.segments.reduce((s, seg) => s + Math.max(0, seg.value), 0);
    out += `<text x="${labelW - 8}" y="${y + barH / 2 + 4}" font-size="11" text-anchor="end">${escapeXml(row.label)}</text>`;
    let x = labelW;
    for (const seg of row.segments) {
      const w = total > 0 ? (Math.max(0, seg.value) / total) * plotW : 0;
      if (w <= 0) continue;
      const pct = (Math.max(0, seg.value) / total) * 100;
      out += `<rect class="bar" x="${r(x)}" y="${y}" width="${r(Math.max(0.5, w))}" height="${barH}" fill="${seg.color}"><title>${escapeXml(`${row.label} ${seg.name}: ${fmt(seg.value)} (${pct.toFixed(1)}%)`)}</title></rect>`;
      if (w > 46) out += `<text x="${r(x + w / 2)}" y="${y + barH / 2 + 4}" font-size="10" text-anchor="middle" fill="#fff">${pct.toFixed(1)}%</text>`;
      x += w;
    }
    if (total <= 0) out += `<text x="${labelW + 4}" y="${y + barH / 2 + 4}" font-size="10" fill="#555">no data</text>`;
    if (row.note) out += `<text x="${labelW + plotW + 8}" y="${y + barH / 2 + 4}" font-size="10">${escapeXml(row.note)}</text>`;
  });
  const names = new Map<string, string>();
  for (const row of rows) for (const seg of row.segments) names.set(seg.name, seg.color);
  out += legend([...names].map(([name, color]) => ({ name, color })), labelW, height - 18, plotW);
  return `${out}</svg>`;
}

/** Vertical bars with values printed on top; `hatched` bars are drawn outlined (e.g. offsets, never netted). */
export function valueBars(title: string, bars: readonly { readonly name: string; readonly value: number; readonly color: string; readonly hatched?: boolean }[], unit: string): string {
  const width = 920;
  const height = 300;
  const left = 64;
  const top = 24;
  const bottom = 44;
  const plotH = height - top - bottom;
  const plotW = width - left - 12;
  const max = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const step = plotW / Math.max(1, bars.length);
  const barW = Math.min(120, step * 0.6);
  let out = svgOpen(width, height, title, 'bars');
  out += `<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#777" stroke-width="2"/></pattern></defs>`;
  out += axisY(left, top, plotW, plotH, max, unit);
  bars.forEach((b, i) => {
    const h = max > 0 ? (Math.max(0, b.value) / max) * plotH : 0;
    const x = left + i * step + (step - barW) / 2;
    const y = top + plotH - h;
    const fill = b.hatched ? 'url(#hatch)' : b.color;
    out += `<rect class="bar" x="${r(x)}" y="${r(y)}" width="${r(barW)}" height="${r(Math.max(0.5, h))}" fill="${fill}" stroke="${b.color}"><title>${escapeXml(`${b.name}: ${fmt(b.value)} ${unit}`)}</title></rect>`;
    out += `<text x="${r(x + barW / 2)}" y="${r(y - 5)}" font-size="11" text-anchor="middle">${escapeXml(fmt(b.value))}</text>`;
    out += `<text x="${r(x + barW / 2)}" y="${top + plotH + 16}" font-size="11" text-anchor="middle">${escapeXml(b.name)}</text>`;
  });
  return `${out}</svg>`;
}

function axisY(left: number, top: number, plotW: number, plotH: number, max: number, unit: string): string {
  let out = `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#888"/><line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#888"/>`;
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    const y = top + plotH - (plotH * i) / 4;
    out += `<line x1="${left}" y1="${r(y)}" x2="${left + plotW}" y2="${r(y)}" stroke="#eee"/><text x="${left - 6}" y="${r(y + 3)}" font-size="10" text-anchor="end">${escapeXml(fmt(v))}</text>`;
  }
  out += `<text x="12" y="${top + plotH / 2}" font-size="10" transform="rotate(-90 12 ${top + plotH / 2})" text-anchor="middle">${escapeXml(unit)}</text>`;
  return out;
}

function legend(items: readonly { name: string; color: string }[], x0: number, y: number, maxW: number): string {
  let out = '';
  let x = x0;
  let row = 0;
  for (const item of items) {
    const w = 18 + Math.min(24, item.name.length) * 6.2 + 14;
    if (x + w > x0 + maxW) {
      x = x0;
      row += 1;
    }
    out += `<rect x="${r(x)}" y="${y + row * 16 - 9}" width="11" height="11" fill="${item.color}"/><text x="${r(x + 15)}" y="${y + row * 16}" font-size="10">${escapeXml(item.name.slice(0, 24))}</text>`;
    x += w;
  }
  return out;
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function heat(share: number): string {
  // light yellow -> orange -> dark red
  const a = [255, 245, 200];
  const b = [230, 120, 40];
  const c = [130, 20, 30];
  const [from, to, k] = share < 0.5 ? [a, b, share * 2] : [b, c, (share - 0.5) * 2];
  const mix = from.map((v, i) => Math.round(v + ((to[i] ?? v) - v) * k));
  return `rgb(${mix.join(',')})`;
}

const unique = (xs: readonly string[]): string[] => [...new Set(xs)].sort(bucketOrder);
const r = (x: number): string => (Math.round(x * 10) / 10).toString();

/** Buckets often start with a number ("1", "2-4", "5-16", "17+"): order them numerically, then by name. */
function bucketOrder(a: string, b: string): number {
  const na = Number.parseFloat(a);
  const nb = Number.parseFloat(b);
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  const order = ['miss', 'partial', 'hit'];
  const ia = order.indexOf(a);
  const ib = order.indexOf(b);
  if (ia >= 0 && ib >= 0) return ia - ib;
  return a.localeCompare(b);
}

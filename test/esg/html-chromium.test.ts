import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import { renderReport } from '../../exporters/esg/render-report.js';
import { makeRollups } from './rollup-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const T0 = Date.UTC(2026, 6, 1);

function html(simulated: boolean): string {
  const carbon = parseCarbonConfig({ region: 'DE', market: { instruments: [{ kind: 'ppa', coverageShare: 0.3, source: 'PPA' }] }, offsets: [{ kgCo2e: 3, description: 'credits', source: 'registry' }] });
  if (!carbon.ok) throw new Error(carbon.errors.join());
  const rollups = makeRollups({ fromMs: T0, hours: 24 * 40, gpus: 4, seed: 11, simulated, skipHours: Array.from({ length: 48 }, (_, i) => 24 * 12 + i) });
  const report = buildEsgReport({ ...rollups, carbon: carbon.config, period: { fromMs: T0, toMs: Date.UTC(2026, 9, 1), label: '2026-Q3' }, toolVersion: '1.0.0', generatedAt: '2026-10-02T00:00:00.000Z' });
  return renderReport(report, 'html');
}

describe('HTML report in headless Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`, timeout: 180_000 }, () => {
  let dir = '';
  let context: BrowserContext;
  const requests: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-html-'));
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      offline: true,
      viewport: { width: 1100, height: 1400 },
    });
    // Anything other than the report file itself would be a network fetch: record and refuse it.
    await context.route('**/*', async (route) => {
      const url = route.request().url();
      if (url.startsWith('file://')) return route.continue();
      requests.push(url);
      return route.abort();
    });
  });

  after(async () => {
    await context?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(file: string): Promise<{ errors: string[]; page: Awaited<ReturnType<BrowserContext['newPage']>> }> {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    return { errors, page };
  }

  it('renders every chart from one offline file, without console errors, and saves a screenshot', async () => {
    const file = join(dir, 'report.html');
    writeFileSync(file, html(false));
    const { errors, page } = await open(file);
    const charts = await page.locator('svg.chart').count();
    assert.ok(charts >= 5, `charts: ${charts}`);
    for (const cls of ['stacked', 'heatmap', 'share', 'bars']) {
      const visible = await page.locator(`svg.chart.${cls}`).first().isVisible();
      assert.ok(visible, `${cls} chart visible`);
    }
    assert.ok((await page.locator('svg.stacked rect.bar').count()) > 50, 'energy-by-tier bars drawn');
    assert.ok((await page.locator('svg.heatmap rect.cell').count()) >= 18, 'J/token cells drawn (2 tiers x 3 batch x 3 cache)');
    const box = await page.locator('svg.stacked').boundingBox();
    assert.ok(box && box.width > 400 && box.height > 200, 'energy chart has a real size');
    assert.match(await page.locator('h2').allInnerTexts().then((t) => t.join('|')), /Energy by tier.*J per output token.*Idle share.*Waste share.*Emissions/);
    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.ok(statSync(shot).size > 20_000);
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, []);
    await page.close();
  });

  it('shows the simulated banner on simulated data', async () => {
    const file = join(dir, 'simulated.html');
    writeFileSync(file, html(true));
    const { errors, page } = await open(file);
    const banner = page.locator('.banner');
    assert.ok(await banner.isVisible());
    assert.match(await banner.innerText(), /SIMULATED DATA — not a measurement/);
    assert.match(await page.title(), /^SIMULATED DATA/);
    await page.screenshot({ path: join(dir, 'simulated.png') });
    assert.deepEqual(errors, []);
    await page.close();
  });
});

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import type { CarbonConfigInput } from '../../model/carbon/carbon-config.js';
import { epochMs } from '../../model/units.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import { renderReport } from '../../exporters/esg/render-report.js';
import { makeRollups } from './rollup-fixtures.js';
import type { Rollups } from './rollup-fixtures.js';

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

  it('never calls estimated or simulated GPU energy measured, and says which factors are defaults', async () => {
    const hour = T0;
    const allEstimated = {
      energy: [{ hourStartMs: epochMs(hour), node: 'n', gpuUuid: 'GPU-0', measuredJ: 360_000, idleJ: 360_000, staticJ: 0, dynamicJ: 0, unattributedJ: 0, estimatedJ: 360_000, coveredMs: 0, counterResets: 0, gaps: 1, simulated: false }],
      host: [{ hourStartMs: epochMs(hour), node: 'n', hostJ: 36_000, estimated: true }],
      quality: [], usage: [], tasks: [],
    };
    const build = (rollups: Omit<Rollups, 'quality'> & { quality: Rollups['quality'] }, carbon: CarbonConfigInput) => {
      const parsed = parseCarbonConfig(carbon);
      if (!parsed.ok) throw new Error(parsed.errors.join());
      return buildEsgReport({ ...rollups, carbon: parsed.config, period: { fromMs: T0, toMs: T0 + 3_600_000, label: 'one hour' }, toolVersion: '1.0.0', generatedAt: '2026-10-02T00:00:00.000Z' });
    };
    const cardsOf = async (name: string, text: string): Promise<string[]> => {
      const file = join(dir, name);
      writeFileSync(file, text);
      const { errors, page } = await open(file);
      const cards = await page.locator('.card').allInnerTexts();
      await page.screenshot({ path: join(dir, name.replace('.html', '.png')) });
      assert.deepEqual(errors, []);
      await page.close();
      return cards.map((c) => c.replace(/\s+/g, ' ').trim());
    };
    // 100% gap-estimated energy, default PUE and embodied factors.
    const estimated = await cardsOf('estimated.html', renderReport(build(allEstimated, { region: 'FR' }), 'html'));
    assert.ok(estimated.includes('GPU energy (estimated) 0.10 kWh'), estimated.join(' | '));
    assert.ok(!estimated.some((c) => /measured/.test(c)));
    assert.ok(estimated.some((c) => /^Facility energy .*\(PUE 1\.58, default\)$/.test(c)), estimated.join(' | '));
    assert.ok(estimated.some((c) => /^Embodied \(SCI M, default factors\) /.test(c)), estimated.join(' | '));
    // A quarter of it estimated, the site's own PUE and hardware figures: no "default" anywhere.
    const partly = { ...allEstimated, energy: allEstimated.energy.map((e) => ({ ...e, estimatedJ: 90_000 })) };
    const own = await cardsOf('partly.html', renderReport(build(partly, { region: 'FR', pue: 1.2, embodied: { gpuKgCo2e: 200, hostKgCo2e: 3000, source: 'vendor PCF 2025' } }), 'html'));
    assert.ok(own.includes('GPU energy (measured, 25% estimated) 0.10 kWh'), own.join(' | '));
    assert.ok(!own.some((c) => /default/.test(c)), own.join(' | '));
    // Simulated energy is called simulated, not measured.
    const simulated = await cardsOf('simulated-cards.html', renderReport(build({ ...allEstimated, energy: allEstimated.energy.map((e) => ({ ...e, estimatedJ: 0, simulated: true })) }, { region: 'FR' }), 'html'));
    assert.ok(simulated.includes('GPU energy (simulated) 0.10 kWh'), simulated.join(' | '));
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

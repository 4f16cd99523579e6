// The report page in a real browser: Debian's `chromium`, headless. The page
// measures itself once loaded (a script at the end of <body> compares, per
// chart, the getBoundingClientRect of every legend item with the plotting area
// — where all lines and markers are clipped to — with the chart's own box and
// with the other legend items, and writes the result into body's data-layout);
// --dump-dom prints the DOM after that script ran, so the test reads the
// browser's own layout of the text, fonts included, not an estimate of it.
// Skipped, saying so, where `chromium` is not on PATH (CI installs it).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { probeRun, renderProbePage } from '../../lib/experiments/probe.js';
import { readRun, renderReport } from '../../lib/report/report.js';
import { Trainer } from '../../lib/train/trainer.js';
import { writeFakeRuns } from '../report-fixtures.js';

const chromium = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).stdout.trim();

function browse(url: string, args: string[]) {
  const profile = mkdtempSync(join(tmpdir(), 'usam-chromium-'));
  try {
    return spawnSync(
      chromium,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', `--user-data-dir=${profile}`, '--hide-scrollbars', ...args, url],
      { encoding: 'latin1', timeout: 90_000, maxBuffer: 64 << 20 },
    );
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('the report in headless Chromium', () => {
  it.skipIf(!chromium)("renders every chart with legends clear of the data (needs Debian's `chromium` package on PATH)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-chromium-'));
    const html = join(dir, 'report.html');
    writeFileSync(html, renderReport(writeFakeRuns(dir).map(readRun), { baseline: 'sgd' }));
    const dom = browse(`file://${html}`, ['--window-size=1440,2200', '--dump-dom']);
    expect(dom.status, dom.stderr).toBe(0);
    const attr = /<body[^>]*data-layout="([^"]*)"/.exec(dom.stdout);
    expect(attr, 'the page’s layout check did not run').not.toBeNull();
    const layout = JSON.parse(attr![1].replace(/&quot;/g, '"').replace(/&amp;/g, '&')) as { charts: number; legendItems: number; minLegendTextWidth: number; overlaps: unknown[] };
    expect(layout.charts).toBe(11);
    expect(layout.legendItems).toBeGreaterThanOrEqual(30);
    expect(layout.minLegendTextWidth, 'legend text has no width: no font installed?').toBeGreaterThan(10);
    expect(layout.overlaps).toEqual([]);
    for (const title of ['training loss', 'Hessian trace (Hutchinson)', 'Hessian λmax (Lanczos)', 'Frob-SAM: finite-difference ½·Var(q) at radius ρ', 'Hessian spectral density (SLQ)'])
      expect(Buffer.from(dom.stdout, 'latin1').toString('utf8')).toContain(`aria-label="${title}"`);
    // and it paints: a PNG of the page
    const png = join(dir, 'report.png');
    const shot = browse(`file://${html}`, ['--window-size=1440,2200', `--screenshot=${png}`]);
    expect(shot.status, shot.stderr).toBe(0);
    const bytes = readFileSync(png);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
    expect(bytes.length).toBeGreaterThan(50_000);
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!chromium)('the page of usam probe: its density chart with the legend clear of the data (needs `chromium`)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-probe-chromium-'));
    const run = join(dir, 'run');
    const t = new Trainer({ dataset: 'synthetic', epochs: 1, hidden: [4], out: run });
    t.run();
    t.dispose();
    const html = join(dir, 'probe.html');
    writeFileSync(html, renderProbePage(probeRun(run, { batches: 1, samples: 4, slqSteps: 12, slqRuns: 1 })));
    const dom = browse(`file://${html}`, ['--window-size=1200,900', '--dump-dom']);
    expect(dom.status, dom.stderr).toBe(0);
    const layout = JSON.parse(/data-layout="([^"]*)"/.exec(dom.stdout)![1].replace(/&quot;/g, '"').replace(/&amp;/g, '&'));
    expect([layout.charts, layout.legendItems]).toEqual([1, 1]);
    expect(layout.minLegendTextWidth).toBeGreaterThan(10);
    expect(layout.overlaps).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!chromium)('the check itself sees a legend drawn over the data (needs `chromium`)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-chromium-'));
    const html = join(dir, 'bad.html');
    // the old layout: the legend inside the plotting area
    const page = renderReport(writeFakeRuns(dir).map(readRun)).replace(/<g class="legend-item"><title>([^<]*)<\/title><line x1="([\d.]+)"/, (_m, t) => `<g class="legend-item"><title>${t}</title><line x1="80"`);
    writeFileSync(html, page);
    const dom = browse(`file://${html}`, ['--window-size=1440,2200', '--dump-dom']);
    const layout = JSON.parse(/data-layout="([^"]*)"/.exec(dom.stdout)![1].replace(/&quot;/g, '"'));
    expect(layout.overlaps).toEqual([{ chart: 0, item: 0, with: 'plot area' }]);
    rmSync(dir, { recursive: true, force: true });
  });
});

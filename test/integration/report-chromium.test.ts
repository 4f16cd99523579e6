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
import { writeFakeProbeFile, writeFakeRuns } from '../report-fixtures.js';

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

interface Layout {
  charts: number;
  legendItems: number;
  markers: number;
  minLegendTextWidth: number;
  minFontPt: number;
  tables: { table: number; width: number; box: number; cut: boolean }[];
  pageWidth: number;
  windowWidth: number;
  overlaps: unknown[];
  png?: { bytes: number; width: number; height: number };
}

/** The page's own layout check (and its PNG export of the first chart: --virtual-time-budget lets it finish; 5 s of virtual time once fell short on a loaded machine, hence 15) at a window width. */
function layoutAt(file: string, width: number): { layout: Layout; dom: string } {
  const dom = browse(`file://${file}`, [`--window-size=${width},1400`, '--virtual-time-budget=15000', '--dump-dom']);
  expect(dom.status, dom.stderr).toBe(0);
  const attr = /<body[^>]*data-layout="([^"]*)"/.exec(dom.stdout);
  expect(attr, 'the page’s layout check did not run').not.toBeNull();
  return { layout: JSON.parse(attr![1].replace(/&quot;/g, '"').replace(/&amp;/g, '&')) as Layout, dom: dom.stdout };
}

/** What every page must hold at 1,000 and 1,600 px: nothing over the data, no marker clipped, no text outside its chart, no table cut, text ≥ 12 pt, a PNG export that draws. */
function expectClean(l: Layout, width: number) {
  expect(l.overlaps, `at ${width} px`).toEqual([]);
  expect(l.tables.filter((t) => t.cut), `a table is cut at ${width} px`).toEqual([]);
  expect(l.pageWidth, `the page scrolls sideways at ${width} px`).toBeLessThanOrEqual(l.windowWidth);
  expect(l.minFontPt).toBeGreaterThanOrEqual(12);
  expect(l.minLegendTextWidth, 'legend text has no width: no font installed?').toBeGreaterThan(10);
  expect(l.png?.bytes, 'the PNG export drew nothing').toBeGreaterThan(5_000);
  expect(l.png!.width).toBeGreaterThanOrEqual(1500); // 300 dpi
}

describe('the report in headless Chromium', () => {
  it.skipIf(!chromium)("renders every chart with legends clear of the data, at 1,000 and 1,600 px (needs Debian's `chromium` package on PATH)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-chromium-'));
    const html = join(dir, 'report.html');
    writeFileSync(html, renderReport(writeFakeRuns(dir).map(readRun), { baseline: 'sgd' }));
    for (const width of [1000, 1600]) {
      const { layout } = layoutAt(html, width);
      expect(layout.charts).toBe(11);
      expect(layout.legendItems).toBeGreaterThanOrEqual(30);
      expectClean(layout, width);
    }
    const dom = browse(`file://${html}`, ['--window-size=1440,2200', '--dump-dom']);
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

  it.skipIf(!chromium)('a one-epoch comparison with probe.json (with --compare angles and --landscape heat maps), and one over two seeds: markers whole, the table whole, at 1,000 and 1,600 px (needs `chromium`)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-chromium-one-'));
    const runs = writeFakeRuns(join(dir, 'one'), { epochs: 1, probes: false, optimizers: ['sgd', 'sam'] });
    runs.forEach((r, k) => writeFakeProbeFile(r, 1, k, { curvature: true }));
    const one = join(dir, 'one.html');
    writeFileSync(one, renderReport(runs.map(readRun)));
    const seeds = join(dir, 'seeds.html');
    writeFileSync(seeds, renderReport(writeFakeRuns(join(dir, 'seeds'), { epochs: 1, seeds: [0, 1, 2] }).map(readRun), { baseline: 'sgd' }));
    for (const width of [1000, 1600]) {
      const a = layoutAt(one, width);
      expect(a.layout.markers).toBeGreaterThanOrEqual(10);
      expectClean(a.layout, width);
      expect(a.dom).toContain('class="warn single-seed"');
      const b = layoutAt(seeds, width);
      expectClean(b.layout, width);
      expect(b.layout.tables[0].width).toBeLessThanOrEqual(b.layout.tables[0].box);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!chromium)('the page of usam probe: its density chart and its loss-landscape heat map, legends clear of the data (needs `chromium`)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-probe-chromium-'));
    const run = join(dir, 'run');
    const t = new Trainer({ dataset: 'synthetic', epochs: 1, hidden: [4], out: run });
    t.run();
    t.dispose();
    const html = join(dir, 'probe.html');
    writeFileSync(html, renderProbePage(probeRun(run, { batches: 1, samples: 4, slqSteps: 12, slqRuns: 1, landscape: 'eigenvectors', landscapePoints: 9 })));
    for (const width of [1000, 1600]) {
      const { layout, dom } = layoutAt(html, width);
      // the density's legend item, and the heat map's colour bar
      expect([layout.charts, layout.legendItems]).toEqual([2, 2]);
      expectClean(layout, width);
      const text = Buffer.from(dom, 'latin1').toString('utf8');
      // the legend whole: "density; λmin …, λmax …", no ellipsis
      expect(text).toMatch(/<g class="legend-item">.*density; λmin -?[\d.e-]+, λmax [\d.e-]+<\/text><\/g>/);
      expect(text).toContain('aria-label="Loss landscape L(w + α·d₁ + β·d₂)"');
      // 81 cells, coloured on the viridis scale
      const cells = /<g class="cells">([\s\S]*?)<\/g>/.exec(text)![1];
      expect((cells.match(/<rect /g) ?? []).length).toBe(81);
      expect(new Set(cells.match(/fill="rgb\([\d,]+\)"/g)).size).toBeGreaterThan(10);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!chromium)('the check itself sees a legend drawn over the data (needs `chromium`)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-chromium-'));
    const html = join(dir, 'bad.html');
    // a legend item moved into the plotting area
    const page = renderReport(writeFakeRuns(dir).map(readRun)).replace('<g class="legend-item">', '<g class="legend-item" transform="translate(0,-150)">');
    writeFileSync(html, page);
    expect(layoutAt(html, 1440).layout.overlaps).toEqual([{ chart: 0, item: 0, with: 'plot area' }]);
    // and a marker on the border (the old one-epoch charts), a table too wide for its box
    const one = renderReport(writeFakeRuns(join(dir, 'one'), { epochs: 1, optimizers: ['sgd'] }).map(readRun));
    const cx = /<rect class="plot-area" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/.exec(one.slice(one.indexOf('aria-label="test loss"')))!;
    const clipped = one
      .replace(/(aria-label="test loss"[\s\S]*?<circle class="marker" data-name="sgd" cx=")[\d.]+/, `$1${Number(cx[1]) + Number(cx[2])}`)
      .replace('.table-wrap{max-width:100%;overflow-x:auto}', '.table-wrap{max-width:100%;overflow-x:hidden}table{min-width:1500px}');
    writeFileSync(html, clipped);
    const l = layoutAt(html, 1000).layout;
    expect(l.overlaps).toEqual([{ chart: 1, marker: 0, with: 'marker clipped by the plot area' }]);
    expect(l.tables[0].cut).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });
});

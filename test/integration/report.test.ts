// The report: nice-number and log ticks (exact), grouping by config, the
// baseline table, and the page's charts — on run directories written here
// (no training, no addon).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autoAxis, formatTick, linearTicks, logTicks, niceNumber } from '../../lib/report/ticks.js';
import { findBaseline, groupRuns, meanCurve, readRun, renderReport, type Run, runsPhrase, stat, summaryTable } from '../../lib/report/report.js';
import { wrapText } from '../../lib/report/export.js';
import { writeFakeProbeFile, writeFakeRuns } from '../report-fixtures.js';

const labels = (a: { ticks: { label: string; minor?: boolean }[] }) => a.ticks.map((t) => t.label + (t.minor ? '*' : ''));
const values = (a: { ticks: { value: number }[] }) => a.ticks.map((t) => t.value);

describe('ticks', () => {
  it("Heckbert's nice numbers", () => {
    expect([0.8, 1, 1.4, 1.6, 2.9, 3.1, 6.9, 7.1].map((x) => niceNumber(x, true))).toEqual([1, 1, 1, 2, 2, 5, 5, 10]);
    expect([0.7, 1, 1.4, 2, 2.1, 5, 5.1].map((x) => niceNumber(x, false))).toEqual([1, 1, 2, 2, 5, 5, 10]);
    expect(niceNumber(0.0123, true)).toBe(0.01);
    expect(niceNumber(3456, false)).toBe(5000);
    expect(() => niceNumber(0, true)).toThrow(/positive/);
  });

  it('linear ticks are round values covering the data (the issue’s 0.8491 … 0.8786)', () => {
    const a = linearTicks(0.8491, 0.8786);
    expect(values(a)).toEqual([0.84, 0.85, 0.86, 0.87, 0.88]);
    expect(labels(a)).toEqual(['0.84', '0.85', '0.86', '0.87', '0.88']);
    expect([a.min, a.max]).toEqual([0.84, 0.88]);
    expect(values(linearTicks(0, 1407))).toEqual([0, 500, 1000, 1500]);
    expect(values(linearTicks(0.036, 158))).toEqual([0, 50, 100, 150, 200]);
    expect(labels(linearTicks(-3.2, 12.7))).toEqual(['−5', '0', '5', '10', '15']);
    expect(values(linearTicks(0.1, 0.35))).toEqual([0.1, 0.2, 0.3, 0.4]); // no 0.30000000000000004
    expect(labels(linearTicks(1e5, 3.4e5))).toEqual(['10⁵', '2×10⁵', '3×10⁵', '4×10⁵']);
    expect(labels(linearTicks(1e-4, 4.2e-4))).toEqual(['10⁻⁴', '2×10⁻⁴', '3×10⁻⁴', '4×10⁻⁴', '5×10⁻⁴']);
    expect(labels(linearTicks(-6.95e5, -6.2e5))).toEqual(['−7×10⁵', '−6.8×10⁵', '−6.6×10⁵', '−6.4×10⁵', '−6.2×10⁵']);
    expect(values(linearTicks(5, 5))).toEqual([4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6]); // a flat series gets a range
    expect(formatTick(0, 0.1)).toBe('0');
  });

  it('log ticks at decades; 2 and 5 labelled only over at most two decades', () => {
    expect(labels(logTicks(0.036, 1e5))).toEqual(['0.01', '0.1', '1', '10', '100', '1000', '10⁴', '10⁵']);
    expect(labels(logTicks(3, 90))).toEqual(['1', '2*', '5*', '10', '20*', '50*', '100']);
    expect(labels(logTicks(0.2, 0.9))).toEqual(['0.1', '0.2*', '0.5*', '1']);
    expect(labels(logTicks(2e-14, 5e3))).toEqual(['10⁻¹⁵', '10⁻¹²', '10⁻⁹', '10⁻⁶', '10⁻³', '1', '1000', '10⁶']); // > 8 decades: every third
    const a = logTicks(120, 4e4);
    expect([a.min, a.max, a.log]).toEqual([100, 1e5, true]);
    expect(() => logTicks(0, 1)).toThrow(/positive/);
  });

  it('auto: log only for positive data spanning two decades', () => {
    expect(autoAxis([0.036, 158, 1e5]).log).toBe(true);
    expect(autoAxis([0.3, 2.3]).log).toBe(false);
    expect(autoAxis([-1, 1e5]).log).toBe(false);
  });
});

const run = (name: string, config: Record<string, unknown>, finals: { loss: number; top1: number; trace?: number }[]): Run => ({
  name,
  dir: `/runs/${name}`,
  config,
  steps: [],
  metrics: finals.map((f, epoch) => ({
    epoch,
    step: 100 * (epoch + 1),
    trainLoss: f.loss,
    trainAccuracy: f.top1,
    sharpness: null,
    test: { loss: f.loss, top1: f.top1, top5: 1, count: 10 },
    lr: 0.1,
    rho: 0,
    seconds: 1,
    stepsPerSecond: 100,
    ...(f.trace !== undefined ? { probe: { trace: f.trace, traceStandardError: 0, frobeniusSquared: 1, maxEigenvalue: 1, hvps: 1 } } : {}),
  })),
});

describe('grouping and the baseline table', () => {
  const base = { model: 'mlp', optimizer: 'sgd', lr: 0.05, epochs: 1 };
  const runs = [
    run('sgd-s0', { ...base, seed: 0, out: 'runs/sgd-s0' }, [{ loss: 0.9, top1: 0.7, trace: 10 }, { loss: 0.5, top1: 0.8, trace: 10 }]),
    run('sam-s0', { ...base, optimizer: 'sam', seed: 0, out: 'runs/sam-s0' }, [{ loss: 0.4, top1: 0.85, trace: 6 }]),
    run('sgd-s1', { ...base, seed: 1, out: 'runs/sgd-s1', threads: 1 }, [{ loss: 1, top1: 0.72, trace: 12 }, { loss: 0.7, top1: 0.82, trace: 14 }]),
    run('sam-s1', { ...base, optimizer: 'sam', seed: 1, out: 'runs/sam-s1' }, [{ loss: 0.6, top1: 0.87, trace: 8 }]),
    run('sam-lr', { ...base, optimizer: 'sam', lr: 0.1, seed: 0, out: 'runs/sam-lr' }, [{ loss: 0.3, top1: 0.9 }]),
  ];

  it('groups runs whose configs differ only in seed, out and threads, named by the common prefix', () => {
    const g = groupRuns(runs);
    expect(g.map((x) => [x.name, x.runs.map((r) => r.name)])).toEqual([
      ['sgd', ['sgd-s0', 'sgd-s1']],
      ['sam', ['sam-s0', 'sam-s1']],
      ['sam-lr', ['sam-lr']],
    ]);
    // key order in config.json does not matter; a run without config is alone
    const reordered = run('x', { epochs: 1, lr: 0.05, optimizer: 'sgd', model: 'mlp', seed: 7 }, [{ loss: 1, top1: 0.5 }]);
    expect(groupRuns([runs[0], reordered]).map((x) => x.runs.length)).toEqual([2]);
    expect(groupRuns([run('a', {}, []), run('b', {}, [])]).length).toBe(2);
  });

  it('mean ± sample std over the seeds, differences of means to the baseline', () => {
    expect(stat([1, 3])).toEqual({ mean: 2, std: Math.SQRT2, n: 2 });
    expect(stat([5, null, NaN]).std).toBeNaN();
    const groups = groupRuns(runs);
    const table = summaryTable(groups, findBaseline(groups, 'sgd'));
    const [loss, top1] = [0, 1];
    expect(table.map((r) => r.isBaseline)).toEqual([true, false, false]);
    expect(table[0].cells[loss].stat.mean).toBeCloseTo(0.6, 12);
    expect(table[0].cells[loss].stat.std).toBeCloseTo(Math.sqrt(0.02), 12);
    expect(table[0].cells[loss].delta).toBeUndefined();
    expect(table[1].cells[loss].delta).toBeCloseTo(-0.1, 12);
    expect(table[1].cells[top1].delta).toBeCloseTo(0.05, 12);
    expect(table[1].cells[4].stat).toEqual({ mean: 7, std: Math.SQRT2, n: 2 }); // tr H
    expect(table[2].cells[4].stat.n).toBe(0); // no probe: no value, no difference
    expect(table[2].cells[4].delta).toBeUndefined();
    // the baseline by group name, run directory name or optimizer
    expect(findBaseline(groups, 'sgd-s1').name).toBe('sgd');
    expect(findBaseline(groups, 'sam-lr').name).toBe('sam-lr');
    expect(() => findBaseline(groups, 'adam')).toThrow(/no run or group .* sgd, sam, sam-lr/);
  });

  it('mean curves match points on x and carry a ±std band', () => {
    const c = meanCurve([
      [[1, 1], [2, 3]],
      [[1, 3], [2, 5]],
    ]);
    expect(c.points).toEqual([[1, 2], [2, 4]]);
    expect(c.band).toEqual([[1, 2 - Math.SQRT2, 2 + Math.SQRT2], [2, 4 - Math.SQRT2, 4 + Math.SQRT2]]);
  });

  it('the page: table with ± and differences, mean curves, an unknown baseline refused', () => {
    const html = renderReport(runs, { baseline: 'sgd' });
    expect(html).toMatch(/<td class="num"><span class="v">0\.6<\/span><span class="sd">± 0\.14<\/span><div class="delta">baseline<\/div><\/td>/);
    expect(html).toMatch(/<div class="delta better"><span>−0\.1<\/span> <span class="rel">\(−16\.7%\)<\/span><\/div>/); // sam's test loss
    expect(html).toMatch(/\+5\.00 pp/); // sam's top-1
    expect(html).toContain('sgd (2 seeds)');
    expect(html).toContain('class="band"');
    expect(() => renderReport(runs, { baseline: 'nope' })).toThrow(/--baseline nope/);
  });
});

describe('the report of four runs with probes and step logs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'usam-report-'));
  const dirs = writeFakeRuns(dir);
  const html = renderReport(dirs.map(readRun), { baseline: 'sgd' });
  const svgs = html.match(/<svg class="chart"[\s\S]*?<\/svg>/g) ?? [];
  const titles = svgs.map((s) => /aria-label="([^"]+)"/.exec(s)![1]);
  const chart = (t: string) => svgs[titles.indexOf(t)];

  it('one chart per measure; each rule’s estimate alone; the density on a log axis', () => {
    expect(titles).toEqual([
      'training loss',
      'test loss',
      'test top-1 accuracy',
      'Hessian trace (Hutchinson)',
      'Hessian ‖H‖_F²',
      'Hessian λmax (Lanczos)',
      'Hessian log|det(|H| + δI)| (SLQ)',
      'SAM: L(w + e) − L(w), ‖e‖ = ρ',
      'Trace-SAM: finite-difference curvature at radius ρ',
      'Frob-SAM: finite-difference ½·Var(q) at radius ρ',
      'Hessian spectral density (SLQ)',
    ]);
    // the probes compare all four runs; a rule's chart holds only its runs
    const names = (svg: string) => [...svg.matchAll(/<polyline class="series" data-name="([^"]+)"/g)].map((m) => m[1]);
    expect(names(chart('Hessian trace (Hutchinson)'))).toEqual(['sgd', 'sam', 'trace-sam', 'frob-sam']);
    expect(names(chart('Frob-SAM: finite-difference ½·Var(q) at radius ρ'))).toEqual(['frob-sam ρ=0.005']);
    expect(html).not.toContain('sharpness estimate S(w)'); // no mixed-unit chart
    // the per-step loss: one point per logged line (3 epochs × 10 lines)
    const loss = [...chart('training loss').matchAll(/<polyline class="series" data-name="sgd"[^>]*points="([^"]+)"/g)][0][1];
    expect(loss.split(' ').length).toBe(30);
    // the density: decade labels, λmax marked per run
    const density = chart('Hessian spectral density (SLQ)');
    const yLabels = [...density.matchAll(/<text class="tick" x="\d+(?:\.\d)?" y="[\d.]+" text-anchor="end"[^>]*>([^<]+)</g)].map((m) => m[1]);
    expect(yLabels).toEqual(['10⁻⁶', '10⁻⁵', '10⁻⁴', '10⁻³', '0.01', '0.1', '1', '10']);
    expect((density.match(/class="mark"/g) ?? []).length).toBe(4);
    // the legend is its own block, under the plotting area, in every chart; no name is cut
    for (const svg of svgs) {
      const plot = /<rect class="plot-area" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"/.exec(svg)!;
      const bottom = Number(plot[1]) + Number(plot[2]);
      const legend = svg.slice(svg.indexOf('<g class="legend">'));
      for (const m of legend.matchAll(/<text x="[\d.]+" y="([\d.]+)"/g)) expect(Number(m[1])).toBeGreaterThan(bottom + 30);
      expect(legend).not.toContain('…');
      // publication size: 1 unit = 1 pt, no text under 12 pt
      expect(svg).toMatch(/^<svg class="chart"[^>]* width="\d+pt" height="\d+pt" viewBox="0 0 \d+ \d+"/);
      for (const m of svg.matchAll(/font-size="([\d.]+)"/g)) expect(Number(m[1])).toBeGreaterThanOrEqual(12);
    }
    expect((html.match(/<svg/g) ?? []).length).toBe((html.match(/<\/svg>/g) ?? []).length);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/); // self-contained
  });
});

/** The figures of a page: each chart's SVG and its downloads, decoded. */
function figures(html: string) {
  return [...html.matchAll(/<figure class="fig">([\s\S]*?)<\/figure>/g)].map((m) => {
    const f = m[1];
    const svgHref = /class="export-svg" href="data:image\/svg\+xml;base64,([^"]+)" download="([^"]+)"/.exec(f);
    const csvHref = /class="export-csv" href="data:text\/csv;charset=utf-8,([^"]+)" download="([^"]+)"/.exec(f);
    return {
      title: /aria-label="([^"]+)"/.exec(f)![1],
      svg: /<svg class="chart"[\s\S]*?<\/svg>/.exec(f)![0],
      exported: svgHref ? Buffer.from(svgHref[1], 'base64').toString('utf8') : '',
      svgFile: svgHref?.[2],
      png: /class="export-png" href="#" download="([^"]+)"/.exec(f)?.[1],
      csv: csvHref ? decodeURIComponent(csvHref[1]) : '',
      csvFile: csvHref?.[2],
    };
  });
}

describe('the issue’s fixes (#27): one epoch, probe.json, wording, exports, one seed', () => {
  it('one-epoch runs: every series is a visible marker inside the plotting area (inset from its border), not a dot on it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-one-'));
    const html = renderReport(writeFakeRuns(dir, { epochs: 1, optimizers: ['sgd', 'sam'] }).map(readRun));
    const test = figures(html).find((f) => f.title === 'test loss')!.svg;
    const plot = /<rect class="plot-area" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/.exec(test)!.slice(1).map(Number);
    const dots = [...test.matchAll(/<circle class="marker" data-name="([^"]+)" cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"/g)];
    expect(dots.map((d) => d[1])).toEqual(['sgd', 'sam']);
    for (const [, , cx, cy, r] of dots) {
      expect(Number(cx) + Number(r)).toBeLessThan(plot[0] + plot[2] - 2); // not on the right border
      expect(Number(cx) - Number(r)).toBeGreaterThan(plot[0]);
      expect(Number(cy) - Number(r)).toBeGreaterThan(plot[1]);
      expect(Number(cy) + Number(r)).toBeLessThan(plot[1] + plot[3]);
    }
    expect(test).not.toContain('<polyline'); // one point: no line of one point
  });

  it('reads probe.json where metrics.jsonl has no probe, marks those values and says where they came from', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-probefile-'));
    const [sgd, sam] = writeFakeRuns(dir, { epochs: 1, probes: false, optimizers: ['sgd', 'sam'] });
    const before = renderReport([readRun(sgd), readRun(sam)]);
    expect(before).toMatch(/<td class="num">—<\/td>/);
    writeFakeProbeFile(sgd, 1);
    writeFakeProbeFile(sam, 1, 1);
    const html = renderReport([readRun(sgd), readRun(sam)]);
    const table = /<table class="summary">[\s\S]*?<\/table>/.exec(html)![0];
    for (const v of ['91.25', '321.5', '6.125', '-6.54e5', '92.25', '322.5', '7.125']) expect(table).toContain(`<span class="v">${v}<sup class="src"`);
    expect(table).not.toMatch(/<td class="num">—<\/td>/); // every value filled
    expect(html).toMatch(/<p class="note probe-source">.*from probe\.json.*1024 train samples, eval mode, after epoch 1.*\(sgd, sam\)/);
    // in the probe charts (◆, named) and the density
    const trace = figures(html).find((f) => f.title === 'Hessian trace (Hutchinson)')!;
    expect(trace.svg).toContain('sgd · probe.json');
    expect(trace.csv).toContain('sgd · probe.json,1,91.25');
    expect(figures(html).find((f) => f.title === 'Hessian spectral density (SLQ)')!.svg).toContain('sgd · probe.json λmax 6.125');
    // metrics.jsonl wins where it has a probe: no mark
    const probed = writeFakeRuns(mkdtempSync(join(tmpdir(), 'usam-report-both-')), { epochs: 1, optimizers: ['sgd'] });
    writeFakeProbeFile(probed[0], 1);
    const both = renderReport(probed.map(readRun));
    expect(both).toContain('<span class="v">80</span>');
    expect(both).not.toContain('<sup class="src"');
  });

  it('shows what usam probe --compare and --landscape wrote into probe.json: the angles per run, and one heat map per run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-curvature-'));
    const [sgd, sam] = writeFakeRuns(dir, { epochs: 1, probes: false, optimizers: ['sgd', 'sam'] });
    expect(renderReport([readRun(sgd), readRun(sam)])).not.toContain('Eigenspaces');
    writeFakeProbeFile(sgd, 1, 0, { curvature: true });
    writeFakeProbeFile(sam, 1, 1, { curvature: true });
    const html = renderReport([readRun(sgd), readRun(sam)]);
    const angles = figures(html).find((f) => f.title === 'Principal angles between top eigenspaces')!;
    expect(angles.svg).toContain('sgd against ggn: overlap 0.800');
    expect(angles.svg).toContain('sam against ggn: overlap 0.750');
    // 0.05 rad = 2.8648°, the first angle of sgd
    expect(angles.csv).toContain(`sgd against ggn: overlap 0.800,1,${(0.05 * 180) / Math.PI}`);
    const maps = figures(html).filter((f) => /loss landscape/.test(f.title));
    expect(maps.map((f) => f.title)).toEqual(['sgd: loss landscape L(w + α·d₁ + β·d₂)', 'sam: loss landscape L(w + α·d₁ + β·d₂)']);
    expect(maps[0].svg).toContain('λ₁ 6.000, λ₂ 2.000');
    expect((/<g class="cells">([\s\S]*?)<\/g>/.exec(maps[0].svg)![1].match(/<rect /g) ?? []).length).toBe(121);
    // sam's grid point (−1, −1): 0.3 + 3α² + β² + 0.2·k·α with k = 1
    expect(maps[1].csv.split('\n').slice(0, 2)).toEqual(['α (along d₁),β (along d₂),loss', `-1,-1,${0.3 + 3 * -1 * -1 + -1 * -1 + 0.2 * 1 * -1}`]);
  });

  it('says "2 runs" for two single runs, "2 groups of 3 runs" only for groups of several, and warns when a comparison rests on one seed', () => {
    const g = (...sizes: number[]) => sizes.map((n, i) => ({ name: `g${i}`, config: {}, runs: Array.from({ length: n }, () => ({}) as Run) }));
    expect(runsPhrase(g(1))).toBe('1 run');
    expect(runsPhrase(g(1, 1))).toBe('2 runs');
    expect(runsPhrase(g(3, 3))).toBe('2 groups of 3 runs');
    expect(runsPhrase(g(2))).toBe('1 group of 2 runs');
    expect(runsPhrase(g(3, 2))).toBe('5 runs in 2 groups (3 and 2 runs)');
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-words-'));
    const single = renderReport(writeFakeRuns(join(dir, 'a'), { epochs: 1, optimizers: ['sgd', 'sam'] }).map(readRun));
    expect(single).toContain('<p class="note">2 runs — ');
    expect(single).not.toContain('groups');
    expect(single).toMatch(/<p class="warn single-seed"><b>One seed\.<\/b> This comparison rests on one seed per side: no spread \(±\) can be given and no test/);
    const seeded = renderReport(writeFakeRuns(join(dir, 'b'), { epochs: 1, seeds: [0, 1], optimizers: ['sgd', 'sam'] }).map(readRun));
    expect(seeded).toContain('<p class="note">2 groups of 2 runs — ');
    expect(seeded).not.toContain('single-seed');
    expect(seeded).toContain('class="error-bar"'); // one epoch, two seeds: the std as a bar
    const alone = renderReport(writeFakeRuns(join(dir, 'c'), { epochs: 1, optimizers: ['sgd'] }).map(readRun));
    expect(alone).toContain('<p class="note">1 run — ');
    expect(alone).not.toContain('single-seed'); // nothing compared
  });

  it('every chart has its SVG (standalone, in pt), PNG and CSV downloads; long legend names wrap, never cut', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-report-export-'));
    const html = renderReport(writeFakeRuns(dir, { seeds: [0, 1] }).map(readRun), { baseline: 'sgd' });
    const figs = figures(html);
    expect(figs.length).toBe(11);
    for (const f of figs) {
      expect(f.exported).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n<svg class="chart" xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+pt"/);
      expect(f.exported).toContain(f.svg);
      expect(f.svgFile).toMatch(/^[\p{L}\p{N}-]+\.svg$/u);
      expect(f.png).toBe(f.svgFile!.replace(/svg$/, 'png'));
      expect(f.csvFile).toBe(f.svgFile!.replace(/svg$/, 'csv'));
      expect(f.csv.split('\n')[0]).toMatch(/^series,/);
    }
    const test = figs.find((f) => f.title === 'test loss')!;
    expect(test.csvFile).toBe('test-loss.csv');
    const rows = test.csv.trim().split('\n');
    expect(rows[0]).toBe('series,epoch (100 steps each),test loss,test loss - std,test loss + std');
    expect(rows.length).toBe(1 + 4 * 3); // four groups, three epochs
    const sgd1 = rows[1].split(',');
    expect(sgd1[0]).toBe('sgd (2 seeds)');
    expect(Number(sgd1[1])).toBe(1);
    expect(Number(sgd1[2])).toBeCloseTo(0.42 * 1.01, 12); // the mean of the two seeds
    expect(Number(sgd1[4]) - Number(sgd1[2])).toBeCloseTo(Math.SQRT1_2 * 0.42 * 0.02, 12); // + sample std
    // a long name is wrapped into lines that hold every character
    const name = 'a rather long run name that would not fit in one line of a legend, seed 12345 of many';
    expect(wrapText(name, 200, 12).join(' ')).toBe(name);
    const page = renderReport(writeFakeRuns(mkdtempSync(join(tmpdir(), 'usam-report-long-')), { optimizers: ['sgd'] }).map((d) => ({ ...readRun(d), name })));
    const legend = figures(page)[1].svg.split('<g class="legend">')[1];
    expect([...legend.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]).join(' ')).toBe(name);
  });
});

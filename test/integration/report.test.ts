// The report: nice-number and log ticks (exact), grouping by config, the
// baseline table, and the page's charts — on run directories written here
// (no training, no addon).
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autoAxis, formatTick, linearTicks, logTicks, niceNumber } from '../../lib/report/ticks.js';
import { findBaseline, groupRuns, meanCurve, readRun, renderReport, type Run, stat, summaryTable } from '../../lib/report/report.js';
import { writeFakeRuns } from '../report-fixtures.js';

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
    expect(html).toMatch(/<td class="num">0\.6 <span class="sd">± 0\.14<\/span><div class="delta">baseline<\/div><\/td>/);
    expect(html).toMatch(/<div class="delta better">−0\.1 \(−16\.7%\)<\/div>/); // sam's test loss
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
    // the legend is its own column, right of the plotting area, in every chart
    for (const svg of svgs) {
      const plot = /<rect class="plot-area" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/.exec(svg)!;
      const right = Number(plot[1]) + Number(plot[2]);
      for (const m of svg.matchAll(/<g class="legend-item[^"]*">(?:<title>[^<]*<\/title>)?<(?:line x1|circle cx)="([\d.]+)"/g)) expect(Number(m[1])).toBeGreaterThan(right);
    }
    expect((html.match(/<svg/g) ?? []).length).toBe((html.match(/<\/svg>/g) ?? []).length);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/); // self-contained
  });
});

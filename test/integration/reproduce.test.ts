// `usam reproduce`: the summaries and verdicts on records with known numbers,
// and a small grid end to end (synthetic data, one epoch) through the CLI:
// its files, the runs it plans, and a rerun that keeps what is done.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { parseTrainConfig, sharpnessOf } from '../../lib/train/config.js';
import { trainingDefaultsOf } from '../../lib/optim/rules/index.js';
import { parseReproduceConfig, plannedRuns, type RunRecord, type RunSpec, summarize } from '../../lib/experiments/reproduce.js';
import { chosenFromSweep, claims, crossMatrix, pickDefaults } from '../../lib/experiments/verdicts.js';
import type { ReproduceResults } from '../../lib/experiments/reproduce-report.js';
import { repoRoot } from '../helpers.js';

// in a child process: the grid takes tens of seconds, and vitest's worker must keep answering
const usam = (argv: string[]) => promisify(execFile)(process.execPath, [join(repoRoot, 'scripts/usam.mjs'), ...argv], { encoding: 'utf8', timeout: 180_000 });

function record(rule: RunSpec['rule'], seed: number, values: Partial<RunRecord>, hyper: RunSpec['hyper'] = {}): RunRecord {
  const spec: RunSpec = { id: `${rule}/${seed}`, model: 'mlp', setting: 'clean', rule, seed, hyper, config: {} };
  return {
    spec,
    probe: {},
    failed: null,
    epochs: 3,
    top1: 0.87,
    testLoss: 0.35,
    trainLoss: 0.3,
    trace: 90,
    traceStandardError: 1,
    frobeniusSquared: 230,
    frobeniusStandardError: 5,
    maxEigenvalue: 8,
    minEigenvalue: -0.3,
    logAbsDet: -6.9e5,
    trainSeconds: 1,
    probeSeconds: 1,
    ...values,
  };
}

describe('summaries and verdicts', () => {
  const sgd = [record('sgd', 0, { trace: 90, top1: 0.87 }), record('sgd', 1, { trace: 92, top1: 0.88 }), record('sgd', 2, { trace: 94, top1: 0.86 })];
  const trace = [record('trace-sam', 0, { trace: 70, top1: 0.866 }), record('trace-sam', 1, { trace: 73, top1: 0.87 }), record('trace-sam', 2, { trace: 74, top1: 0.868 })];

  it('paired by seed: the mean difference, its t interval, p, and Holm over the family', () => {
    const [k] = claims([...sgd, ...trace]);
    expect(k.measure).toBe('trace');
    expect(k.against).toBe('sgd');
    expect(k.value.mean).toBeCloseTo(217 / 3, 12);
    expect(k.ratio).toBeCloseTo(217 / 3 / 92, 12);
    // differences −20, −19, −20: mean −59/3, sd √(1/3), df 2
    const sd = Math.sqrt(((-20 + 59 / 3) ** 2 * 2 + (-19 + 59 / 3) ** 2) / 2);
    expect(k.paired.mean).toBeCloseTo(-59 / 3, 12);
    expect(k.paired.standardError).toBeCloseTo(sd / Math.sqrt(3), 12);
    expect(k.paired.df).toBe(2);
    expect(k.paired.low).toBeCloseTo(-59 / 3 - 4.302652729749464 * (sd / Math.sqrt(3)), 8);
    expect(k.top1Difference).toBeCloseTo((0.866 - 0.87 + 0.87 - 0.88 + 0.868 - 0.86) / 3, 12);
    expect(k.pAdjusted).toBe(k.paired.p); // a family of one
    expect(k.held).toBe(true);
  });

  it('not held: higher, or within noise after Holm, or one seed only', () => {
    const close = [record('trace-sam', 0, { trace: 91 }), record('trace-sam', 1, { trace: 90 }), record('trace-sam', 2, { trace: 95 })];
    expect(claims([...sgd, ...close])[0].held).toBe(false);
    const one = claims([sgd[0], record('trace-sam', 0, { trace: 10 })])[0];
    expect(Number.isNaN(one.paired.p)).toBe(true);
    expect(one.held).toBe(false);
    // the controls join the family: Holm multiplies the smallest p by the family's size
    const rwp = [0, 1, 2].map((s) => record('rwp', s, { trace: 71 + s }));
    const ks = claims([...sgd, ...trace, ...rwp]);
    expect(ks.map((k) => k.against)).toEqual(['sgd', 'rwp']);
    const ps = ks.map((k) => k.paired.p);
    expect(Math.min(...ks.map((k) => k.pAdjusted))).toBeCloseTo(Math.min(2 * Math.min(...ps), 1), 12);
  });

  it('a failed run is counted, left out of the means and of its pair', () => {
    const failed = { ...record('trace-sam', 3, { trace: NaN, top1: NaN }), failed: 'training diverged' };
    const cell = summarize([...trace, failed])[0];
    expect(cell.runs).toBe(4);
    expect(cell.failed).toBe(1);
    expect(cell.measures.trace.n).toBe(3);
    expect(claims([...sgd, record('sgd', 3, {}), ...trace, failed])[0].paired.n).toBe(3);
  });

  it('the pick, on the validation split: the lowest own measure among points within 0.5 pt of SGD; none when no point qualifies', () => {
    const probes = (tr: number) => ({ probes: { validation: { trace: tr, traceStandardError: 1, frobeniusSquared: 200, frobeniusStandardError: 1, maxEigenvalue: 8, minEigenvalue: -1, logAbsDet: -7e5 } } });
    // test-split values that would pick otherwise: the choice must not read them
    const at = (rho: number, tr: number, top1: number) => [0, 1].map((s) => record('trace-sam', s, { trace: 1, top1: 0.5, validationTop1: top1, ...probes(tr + s) }, { rho, lambda: 1 }));
    const sgd2 = [0, 1].map((s) => record('sgd', s, { validationTop1: 0.87, ...probes(90 + s) }));
    const [p] = pickDefaults([...sgd2, ...at(0.01, 85, 0.869), ...at(0.02, 70, 0.866), ...at(0.04, 50, 0.86)]);
    expect(p.hyper).toEqual({ rho: 0.02, lambda: 1 }); // 0.04 is lower but 1 pt worse
    expect(p.candidates).toHaveLength(3);
    expect(chosenFromSweep([...sgd2, ...at(0.02, 70, 0.866)])).toEqual({ 'trace-sam': { rho: 0.02, lambda: 1 }, rwp: { rho: 0.02 } });
    const none = pickDefaults([...sgd2, ...at(0.04, 50, 0.86), ...at(0.01, 95, 0.87)]);
    expect(none[0].hyper).toBeNull();
  });

  it('log|det| is compared by difference; SAM and ASAM by λmax; Frob-SAM by ‖H‖_F²; the matrix has every measure', () => {
    const ks = claims([...sgd, record('det-sam', 0, { logAbsDet: -7.0e5 }), record('sam', 0, { maxEigenvalue: 5 }), record('frob-sam-exact', 0, { frobeniusSquared: 150 })]);
    expect(Object.fromEntries(ks.map((k) => [k.rule, k.measure]))).toEqual({ 'det-sam': 'logAbsDet', sam: 'maxEigenvalue', 'frob-sam-exact': 'frobeniusSquared' });
    expect(ks.find((k) => k.rule === 'det-sam')!.paired.mean).toBeCloseTo(-1e4, 6);
    expect(crossMatrix([...sgd, ...trace], 'test').map((c) => c.measure)).toEqual(['trace', 'frobeniusSquared', 'maxEigenvalue', 'logAbsDet']);
  });
});

describe('the training defaults', () => {
  it('per rule and, for the universal class, per estimator', () => {
    const of = (o: object) => sharpnessOf(parseTrainConfig(o));
    expect(of({ optimizer: 'sgd' })).toBeUndefined();
    expect(of({ optimizer: 'sam' })).toEqual({ kind: 'sam', rho: trainingDefaultsOf('sam')!.rho });
    expect(of({ optimizer: 'trace-sam' })).toMatchObject({ kind: 'trace-sam', estimator: 'finite-difference', ...trainingDefaultsOf('trace-sam') });
    expect(of({ optimizer: 'frob-sam' })).toMatchObject({ kind: 'frob-sam', estimator: 'finite-difference', ...trainingDefaultsOf('frob-sam') });
    expect(of({ optimizer: 'frob-sam', estimator: 'exact' })).toMatchObject({ kind: 'frob-sam', estimator: 'exact', ...trainingDefaultsOf('frob-sam', 'exact') });
    expect(of({ optimizer: 'det-sam', lambda: 0.5 })).toMatchObject({ kind: 'det-sam', lambda: 0.5, halfCube: trainingDefaultsOf('det-sam')!.halfCube });
    // the grid's rules name their estimator, so a change of the default cannot swap one for the other
    expect(plannedRuns(parseReproduceConfig({})).every((r) => !r.rule.includes('-sam') || r.config.estimator !== undefined)).toBe(true);
  });
});

describe('the planned runs', () => {
  it('full grid: 13 arms × 3 settings × 5 fresh seeds (from 100), 3 epochs (SGD at equal compute ×2, ×3); a validation split held out', () => {
    const runs = plannedRuns(parseReproduceConfig({}));
    expect(runs).toHaveLength(13 * 3 * 5);
    expect(new Set(runs.map((r) => r.id)).size).toBe(195);
    expect(Math.min(...runs.map((r) => r.seed))).toBe(100);
    expect(runs.find((r) => r.rule === 'sgd-3x')!.config).toMatchObject({ optimizer: 'sgd', epochs: 9, validation: 5000 });
    expect(plannedRuns(parseReproduceConfig({ rules: ['rwp'] }), { rwp: { rho: 0.02 } })[0].config).toMatchObject({ optimizer: 'rwp', rho: 0.02 });
    const noisy = runs.find((r) => r.setting === 'label-noise')!;
    expect(noisy.config).toMatchObject({ labelNoise: 0.2, epochs: 3, dataset: 'fashion-mnist' });
    expect(runs.find((r) => r.setting === 'limited')!.config).toMatchObject({ subset: 0.1 });
    expect(runs.find((r) => r.rule === 'frob-sam-exact')!.config).toMatchObject({ optimizer: 'frob-sam', estimator: 'exact' });
  });
  it('--quick: the six finite-difference rules, one seed, one epoch', () => {
    const runs = plannedRuns(parseReproduceConfig({ quick: true }));
    expect(runs).toHaveLength(18);
    expect(runs.every((r) => r.config.epochs === 1 && r.seed === 100 && !r.rule.endsWith('exact'))).toBe(true);
  });
  it('--sweep: every point of every rule, and SGD, on the clean MLP, seeds 0 and 1', () => {
    const runs = plannedRuns(parseReproduceConfig({ sweep: true }));
    expect(runs.filter((r) => r.rule === 'sgd').map((r) => r.seed)).toEqual([0, 1]);
    expect(runs.every((r) => r.setting === 'clean' && r.model === 'mlp')).toBe(true);
    expect(runs.find((r) => r.rule === 'trace-sam')!.config).toMatchObject({ optimizer: 'trace-sam', rho: expect.any(Number), lambda: 1 });
  });
  it('bad options name the field', async () => {
    expect(() => parseReproduceConfig({ rules: ['sgd', 'adam'] })).toThrow(/rules/);
    await expect(main(['reproduce', '--rules', 'sgd,nope'])).rejects.toThrow(/--rules: unknown 'nope'; choose from sgd, sgd-2x, sgd-3x, sam/);
  });
});

describe('usam reproduce end to end (synthetic data, one epoch)', () => {
  const out = mkdtempSync(join(tmpdir(), 'usam-reproduce-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  const argv = ['reproduce', '--dataset', 'synthetic', '--quick', '--rules', 'sgd,trace-sam', '--settings', 'clean,limited', '--seeds', '2', '--probe-samples', '4', '--probe-batches', '1', '--probe-slq-runs', '1', '--threads', '1', '--validation', '256', '--out', out];

  it('trains, probes and writes results.json, reproduction.md and report.html', async () => {
    const { stderr } = await usam(argv);
    expect(stderr).toMatch(/\[8\/8\] mlp\/limited\/trace-sam\/seed101: top-1/);
    const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as ReproduceResults;
    expect(r.records).toHaveLength(8);
    for (const x of r.records) {
      expect(x.failed).toBeNull();
      expect(x.epochs).toBe(1);
      expect(x.trace).toBeGreaterThan(0);
      expect(x.maxEigenvalue).toBeGreaterThan(0);
      expect(x.probes!.train!.trace).toBeGreaterThan(0); // probed on training images too
      expect(x.validationTop1).toBeGreaterThan(0);
      // the record is the run's own: its checkpoint and probe sit beside it
      expect(existsSync(join(out, 'runs', x.spec.id, 'checkpoint.safetensors'))).toBe(true);
    }
    const md = readFileSync(join(out, 'reproduction.md'), 'utf8');
    expect(md).toMatch(/\| clean \| trace-sam \| sgd \| tr H \|/);
    expect(md).toMatch(/\| limited \| trace-sam \| sgd \| tr H \|/);
    expect(md).toContain('Every arm on every measure against SGD (training images)');
    expect(md).toContain('### mlp, limited');
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect((html.match(/<svg class="chart"/g) ?? []).length).toBe(5); // top-1 and four measures
    expect(html).toContain('>trace-sam</text>');
  }, 200_000);

  it('--report-only summarises what is there and trains nothing', async () => {
    const { stderr } = await usam([...argv, '--rules', 'sgd,trace-sam,sam', '--report-only']);
    expect(stderr).toMatch(/mlp\/clean\/sam\/seed100: not run \(--report-only\)/);
    expect(existsSync(join(out, 'runs/mlp/clean/sam'))).toBe(false);
    const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as ReproduceResults;
    expect(r.records).toHaveLength(8);
  }, 60_000);

  it('a second run keeps what is done', async () => {
    const file = join(out, 'runs/mlp/clean/sgd/seed100/record.json');
    const before = statSync(file).mtimeMs;
    const { stderr } = await usam(argv);
    expect(stderr).toMatch(/\[8\/8\] mlp\/limited\/trace-sam\/seed101: done before, kept/);
    expect(statSync(file).mtimeMs).toBe(before);
  }, 60_000);
});

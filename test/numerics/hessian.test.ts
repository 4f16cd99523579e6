// The Hessian probe API against exact spectra (full Hessians from P HVPs).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { goldenSetup, hessianGolden, readGolden } from '../../lib/golden/format.js';
import { DataLoader } from '../../lib/data/loader.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { cnn, mlp } from '../../lib/model/presets.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { float64Model, goldenDir, maxAbsDiff, randomBatch, randomVector, toNumbers } from '../helpers.js';

const g = readGolden(hessianGolden, join(goldenDir, 'hessian-mlp-tanh-s1.json'));
const { model, x, y } = goldenSetup(g, g.params);
const H = hessian(model, { x, y }, { mode: 'train' });
const exact = g.eigenvalues; // ascending, P = 435

const within3SE = (r: { estimate: number; standardError: number }, truth: number) =>
  expect(Math.abs(r.estimate - truth)).toBeLessThan(3 * r.standardError);

describe('eigenvalues', () => {
  it('Lanczos top-5 and bottom-5 within 1e-6 of the full spectrum, with residuals and HVP counts', () => {
    const r = H.eigenvalues({ k: 5, which: 'both', tol: 1e-9 });
    expect(maxAbsDiff(r.largest!, exact.slice(-5).reverse())).toBeLessThan(1e-6);
    expect(maxAbsDiff(r.smallest!, exact.slice(0, 5))).toBeLessThan(1e-6);
    expect(r.largestResiduals!.every((x) => x < 1e-6)).toBe(true);
    expect(r.converged).toBe(true);
    expect(r.hvps).toBe(r.iterations);
    expect(r.hvps).toBeLessThan(exact.length);
  });

  it('without reorthogonalisation (three vectors) the same eigenvalues, ghost copies removed', () => {
    for (const seed of [0, 1, 2]) {
      const r = H.eigenvalues({ k: 5, which: 'both', tol: 1e-9, reorthogonalize: 'none', maxIter: 435, seed });
      expect(r.reorthogonalization).toBe('none');
      expect(r.converged).toBe(true);
      // copies of λ1 and λ2 appear by ~60 steps; kept, they would take two of the five places
      expect(maxAbsDiff(r.largest!, exact.slice(-5).reverse())).toBeLessThan(1e-9);
      expect(maxAbsDiff(r.smallest!, exact.slice(0, 5))).toBeLessThan(1e-9);
      expect(r.vectorBytes).toBe(4 * 435 * 8);
    }
  });

  it('the kept basis is sized before any HVP and held against maxBasisBytes', () => {
    const budget = 10 * 435 * 8; // room for 8 basis vectors
    const before = H.hvps;
    expect(() => H.eigenvalues({ k: 5, tol: 1e-9, maxIter: 100, reorthogonalize: 'full', maxBasisBytes: budget })).toThrow(
      /full reorthogonalisation of 100 steps keeps 101 basis vectors of 435 float64 values: 0\.4 MB, over the budget of 0\.0 MB \(maxBasisBytes\); raise maxBasisBytes, take fewer steps \(maxIter\/steps\), or use reorthogonalize: 'none'/,
    );
    expect(H.hvps).toBe(before);
    const auto = H.eigenvalues({ k: 5, tol: 1e-9, maxIter: 435, maxBasisBytes: budget });
    expect(auto.reorthogonalization).toBe('none');
    expect(auto.note).toMatch(/over the budget .* ran without reorthogonalisation/);
    expect(maxAbsDiff(auto.largest!, exact.slice(-5).reverse())).toBeLessThan(1e-9);
    const fits = H.eigenvalues({ k: 1, maxIter: 5, maxBasisBytes: 7 * 435 * 8 });
    expect(fits.reorthogonalization).toBe('full');
    expect(fits.vectorBytes).toBe(7 * 435 * 8);
    expect(fits.note).toBeUndefined();
    expect(() => H.eigenvalues({ reorthogonalize: 'partial' as 'full' })).toThrow(/reorthogonalize is 'partial'; use 'full', 'none' or 'auto'/);
  });

  it('power iteration with deflation (the baseline) finds the top eigenvalue, with more HVPs', () => {
    const power = H.eigenvalues({ k: 1, method: 'power', tol: 1e-10, maxIter: 5000 });
    const lanczos = H.eigenvalues({ k: 1, tol: 1e-8 });
    expect(Math.abs(power.largest![0] - exact[exact.length - 1])).toBeLessThan(1e-4);
    expect(power.hvps).toBeGreaterThan(lanczos.hvps);
  });
});

describe('stochastic estimators (within 3 standard errors of the exact values)', () => {
  it('Hutchinson and Hutch++ trace', () => {
    within3SE(H.trace({ samples: 300, seed: 1 }), g.trace);
    const pp = H.trace({ method: 'hutch++', samples: 150, seed: 2 });
    within3SE(pp, g.trace);
    expect(pp.hvps).toBe(150);
  });

  it('Frobenius norm squared', () => {
    within3SE(H.frobeniusSquared({ samples: 300, seed: 3 }), g.frobeniusSquared);
  });

  it('SLQ log|det| (damped) and the density against the exact spectrum', () => {
    // log(|λ| + δ) is steep near the many tiny eigenvalues: the quadrature's
    // bias shrinks with the number of Lanczos steps (about 200 for δ = 1e-3
    // on this 435-parameter model), the run-to-run error with the runs.
    const ld = H.logAbsDet({ damping: g.damping, steps: 200, runs: 10, seed: 4 });
    within3SE(ld, g.logAbsDetDamped);
    expect(ld.hvps).toBe(200 * 10);
    const smooth = H.logAbsDet({ damping: 0.1, steps: 60, runs: 10, seed: 5 });
    within3SE(smooth, exact.reduce((s, l) => s + Math.log(Math.abs(l) + 0.1), 0));
    // without reorthogonalisation (three vectors) the quadrature holds as well
    const plain = H.logAbsDet({ damping: 0.1, steps: 60, runs: 10, seed: 5, reorthogonalize: 'none' });
    expect(plain.reorthogonalization).toBe('none');
    within3SE(plain, exact.reduce((s, l) => s + Math.log(Math.abs(l) + 0.1), 0));
    // the quadrature's CDF against the exact eigenvalue counts; inside the
    // dense cluster around 0 its resolution is the weight of one node, which
    // more Lanczos steps shrink
    const cdfError = (d: { runs: { nodes: number[]; weights: number[] }[] }, t: number) => {
      const slq = d.runs.reduce((s, r) => s + r.nodes.reduce((a, node, j) => a + (node <= t ? r.weights[j] : 0), 0), 0) / d.runs.length;
      return Math.abs(slq - exact.filter((l) => l <= t).length / exact.length);
    };
    const d = H.density({ steps: 60, runs: 10, seed: 5 });
    for (const r of d.runs) expect(r.weights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
    for (const t of [-1, -0.5, -0.1, 0.1, 0.5, 1]) expect(cdfError(d, t)).toBeLessThan(0.02);
    const fine = H.density({ steps: 100, runs: 10, seed: 5 });
    for (const t of [-0.01, 0.01]) expect(cdfError(fine, t)).toBeLessThan(0.05);
    // the smoothed density integrates to 1
    const step = d.grid[1] - d.grid[0];
    expect(d.density.reduce((a, b) => a + b, 0) * step).toBeCloseTo(1, 2);
  });

  it('sharpness(config) with exact quadratic forms', () => {
    within3SE(H.sharpness({ measure: 'trace', samples: 300, seed: 6 }) as { estimate: number; standardError: number }, g.trace);
    const custom = H.sharpness({ psi: 'identity', phi: { f: (m) => 2 * m, df: () => 2 }, mu: 'rademacher', samples: 300, seed: 7 });
    within3SE(custom as { estimate: number; standardError: number }, 2 * g.trace);
    const frob = H.sharpness({ measure: 'frobenius', samples: 2000, seed: 8 });
    expect(Math.abs(frob.estimate - g.frobeniusSquared) / g.frobeniusSquared).toBeLessThan(0.1);
  });
});

describe("the estimators' actual errors over seeds, not only their self-reported standard errors", () => {
  const seeds = Array.from({ length: 24 }, (_, i) => 100 + i);
  const rms = (errors: number[]) => Math.sqrt(errors.reduce((s, e) => s + e * e, 0) / errors.length);
  const meanOf = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  // exact standard deviations of the single-sample estimators, from the full Hessian:
  // Rademacher Hutchinson Var(uᵀHu) = 2(‖H‖_F² − Σ H_ii²); Gaussian Var(‖Hu‖²) = 2 Σ λ⁴
  const full = H.full({ maxSize: 500 });
  let diagSquares = 0;
  for (let i = 0; i < full.size; i++) diagSquares += full.matrix[i * full.size + i] ** 2;
  const hutchinsonSd = Math.sqrt(2 * (g.frobeniusSquared - diagSquares));
  const frobeniusSd = Math.sqrt(2 * exact.reduce((s, l) => s + l ** 4, 0));

  it('Hutchinson: the error over 24 seeds has the size the exact variance predicts, and so has the reported SE', () => {
    const m = 40;
    const runs = seeds.map((seed) => H.trace({ samples: m, seed }));
    const predicted = hutchinsonSd / Math.sqrt(m);
    // RMS of 24 errors: within ±45% of its expectation (χ²₂₄ tails far beyond 3σ)
    expect(rms(runs.map((r) => r.estimate - g.trace)) / predicted).toBeGreaterThan(0.55);
    expect(rms(runs.map((r) => r.estimate - g.trace)) / predicted).toBeLessThan(1.45);
    expect(meanOf(runs.map((r) => r.standardError)) / predicted).toBeGreaterThan(0.8);
    expect(meanOf(runs.map((r) => r.standardError)) / predicted).toBeLessThan(1.2);
  });

  it('Hutch++ beats Hutchinson at equal HVPs once its sketch holds the top of the spectrum, and its SE tracks its error', () => {
    // This spectrum is flat (the top 20 of 435 eigenvalues hold 60% of ‖H‖_F²):
    // measured over 24 seeds, RMS error plain/Hutch++ 1.61/2.83 at 30 HVPs,
    // 1.34/2.10 at 60, 0.89/0.59 at 150, 0.61/0.19 at 300.
    const errors = (m: number, method: 'hutchinson' | 'hutch++') => seeds.map((seed) => H.trace({ method, samples: m, seed }));
    const plain300 = errors(300, 'hutchinson'), pp300 = errors(300, 'hutch++');
    expect(rms(pp300.map((r) => r.estimate - g.trace))).toBeLessThan(0.5 * rms(plain300.map((r) => r.estimate - g.trace)));
    const ratio = meanOf(pp300.map((r) => r.standardError)) / rms(pp300.map((r) => r.estimate - g.trace));
    expect(ratio).toBeGreaterThan(0.6);
    expect(ratio).toBeLessThan(1.6);
    // with a third of 30 HVPs the sketch misses most of it, and the deflated
    // rest has only 10 samples: Hutch++ loses (README says so)
    expect(rms(errors(30, 'hutch++').map((r) => r.estimate - g.trace))).toBeGreaterThan(rms(errors(30, 'hutchinson').map((r) => r.estimate - g.trace)));
  });

  it('Frobenius: the error and the reported SE have the size 2Σλ⁴ predicts', () => {
    const m = 40;
    const runs = seeds.map((seed) => H.frobeniusSquared({ samples: m, seed }));
    const predicted = frobeniusSd / Math.sqrt(m);
    expect(rms(runs.map((r) => r.estimate - g.frobeniusSquared)) / predicted).toBeGreaterThan(0.55);
    expect(rms(runs.map((r) => r.estimate - g.frobeniusSquared)) / predicted).toBeLessThan(1.45);
    expect(meanOf(runs.map((r) => r.standardError)) / predicted).toBeGreaterThan(0.6);
    expect(meanOf(runs.map((r) => r.standardError)) / predicted).toBeLessThan(1.4);
  });
});

describe('operator', () => {
  it('quadraticForm and hvp agree with the file', () => {
    const hv = toNumbers(H.hvp(g.hvpProbe.v));
    expect(maxAbsDiff(hv, g.hvpProbe.Hv)).toBeLessThan(1e-10);
    const q = H.quadraticForm(g.hvpProbe.v);
    expect(Math.abs(q - g.hvpProbe.v.reduce((s, v, i) => s + v * g.hvpProbe.Hv[i], 0))).toBeLessThan(1e-10);
  });

  it('the dataset-averaged HVP equals the HVP of the concatenated batch', () => {
    const m = float64Model(mlp({ layers: [4, 6, 3], activation: 'tanh' }), 2);
    const { x: bx, y: by } = randomBatch([10, 4], 3, 9);
    const xs = toNumbers(bx), ys = Array.from(by.toArray() as BigInt64Array, Number);
    const part = (a: number, b: number) => ({
      x: tensor(xs.slice(a * 4, b * 4), [b - a, 4], { dtype: 'float64' }),
      y: tensor(Int32Array.from(ys.slice(a, b)), [b - a], { dtype: 'int64' }),
    });
    const v = randomVector(m.numParams, 1);
    const whole = toNumbers(hessian(m, { x: bx, y: by }, { mode: 'eval' }).hvp(v));
    const loader = function* () {
      yield part(0, 3);
      yield part(3, 4);
      yield part(4, 10);
    };
    const averaged = toNumbers(hessian(m, loader(), { mode: 'eval' }).hvp(v));
    expect(maxAbsDiff(averaged, whole)).toBeLessThan(1e-14);
    // a DataLoader is such an iterable of batches
    const ds = { name: 'd', x: Float32Array.from(xs), y: Int32Array.from(ys), shape: [4], classes: 3 };
    const viaLoader = toNumbers(hessian(m, new DataLoader(ds, { batchSize: 4, dtype: 'float64' }), { mode: 'eval' }).hvp(v));
    const wholeF32 = toNumbers(hessian(m, { x: tensor(Float64Array.from(Float32Array.from(xs)), [10, 4], { dtype: 'float64' }), y: by }, { mode: 'eval' }).hvp(v));
    expect(maxAbsDiff(viaLoader, wholeF32)).toBeLessThan(1e-14);
  });

  it('per-layer probes are the principal block of the full Hessian', () => {
    const full = H.full({ maxSize: 500 });
    const layer = hessian(model, { x, y }, { mode: 'train', modules: ['3'] });
    const info = model.paramInfo().filter((p) => p.name.startsWith('3.'));
    const offset = info[0].offset;
    const n = info.reduce((s, p) => s + p.numel, 0);
    expect(layer.size).toBe(n);
    const block = layer.full();
    let diff = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) diff = Math.max(diff, Math.abs(block.matrix[i * n + j] - full.matrix[(offset + i) * full.size + offset + j]));
    expect(diff).toBeLessThan(1e-12);
    let traceBlock = 0;
    for (let i = 0; i < n; i++) traceBlock += block.matrix[i * n + i];
    within3SE(layer.trace({ samples: 300, seed: 1 }), traceBlock);
    const top = layer.eigenvalues({ k: 1, tol: 1e-10 }).largest[0]; // typed as present: which defaults to 'largest'
    expect(Math.abs(top - layer.spectrum().maxEigenvalue)).toBeLessThan(1e-8);
    expect(() => hessian(model, { x, y }, { mode: 'train', modules: ['9'] })).toThrow(/no parameters under '9'/);
  });

  it('full() refuses above its size limit and says the limit', () => {
    expect(() => H.full({ maxSize: 100 })).toThrow(/435 rows, above the limit of 100/);
  });

  it('mode defaults to eval where it changes nothing and is required where it does; results are plain JSON; every probe reports its HVPs', () => {
    // this MLP has neither BatchNorm nor dropout: no options needed, the same Hessian
    const v = g.hvpProbe.v;
    expect(maxAbsDiff(toNumbers(hessian(model, { x, y }).hvp(v)), toNumbers(H.hvp(v)))).toBe(0);
    expect(() => hessian(model, { x, y }, { mode: 'test' as 'eval' })).toThrow(/options.mode is 'test'; use 'train' or 'eval'/);
    const bn = new Model(cnn({ input: [1, 6, 6], channels: [2], hidden: 3, classes: 2 }), { dtype: 'float64' });
    const bx = randomBatch([4, 1, 6, 6], 2, 5);
    expect(() => hessian(bn, bx)).toThrow(/has BatchNorm or dropout, so train and eval mode give different Hessians; pass options.mode: 'eval'/);
    const dropout = new Model({ input: [4], layers: [{ type: 'linear', inFeatures: 4, outFeatures: 3 }, { type: 'dropout', p: 0.2 }, { type: 'linear', inFeatures: 3, outFeatures: 2 }] });
    expect(() => hessian(dropout, randomBatch([3, 4], 2, 6, 'float32'))).toThrow(/BatchNorm or dropout/);
    expect(() => hessian(bn, bx, { mode: 'eval' }).dispose()).not.toThrow();
    const r = H.trace({ samples: 10 });
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
    const e = H.eigenvalues({ k: 2 });
    expect(JSON.parse(JSON.stringify(e))).toEqual(e);
    expect(r.hvps).toBe(10);
  });
});

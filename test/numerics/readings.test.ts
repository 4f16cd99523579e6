// Each rule's per-step reading (StepResult.sharpness) against exact values
// (math.md §2a, lib/sharpness/reading.ts): the readings called estimates are
// held to their measure within their sampling error, on a quadratic and on a
// small smooth MLP (float64, exact Hessian); the finite-difference readings
// are shown to be free of the first-order term (on a quadratic, where the
// gradient is large, they equal the exact estimator's on the same directions)
// and to approach the measure as rho → 0 on a smooth loss.
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import type { SharpnessConfigInput } from '../../lib/optim/rules/index.js';
import { readingOf } from '../../lib/optim/rules/index.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { float64Model, randomBatch, rng, toNumbers } from '../helpers.js';

/** Linear(P→1, no bias), MSE on the rows of X: L(w) = (1/P)·‖Xw − y‖², a quadratic with H = (2/P)·XᵀX. */
function quadratic(P: number, seed: number, w: number[]) {
  const r = rng(seed);
  const X = Array.from({ length: P * P }, () => r() * 2 - 1);
  const model = new Model({ input: [P], layers: [{ type: 'linear', inFeatures: P, outFeatures: 1, bias: false }], loss: { type: 'mse' } }, { dtype: 'float64' });
  model.setParams(w);
  const x = tensor(new Float64Array(X), [P, P], { dtype: 'float64' });
  const y = tensor(new Float64Array(P).map(() => r() * 4 - 2), [P, 1], { dtype: 'float64' });
  return { model, x, y };
}

/** The reading of one step with the update undone. */
function reading(model: Model, batch: { x: ReturnType<typeof tensor>; y: ReturnType<typeof tensor> }, sharpness: SharpnessConfigInput, seed: number) {
  const w = model.getParams();
  const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 1 }, sharpness, seed });
  const r = opt.step(batch.x, batch.y).sharpness;
  opt.dispose();
  model.setParams(w);
  return r;
}

describe('finite-difference readings carry no first-order term', () => {
  // w far from the minimum: ‖g0‖ is large, so a reading with ρ·g0ᵀu left in
  // would be off by 2·g0ᵀu/ρ per sample (hundreds here)
  const P = 5;
  const w = [3, -2, 1, 4, -3];
  for (const [name, config] of [
    ['Trace-SAM', { kind: 'trace-sam', rho: 0.01, lambda: 1, samples: 6 }],
    ['Det-SAM', { kind: 'det-sam', rho: 1, lambda: 1, samples: 6, halfCube: 0.3 }],
    ['universal (psi square)', { kind: 'universal', rho: 0.01, lambda: 1, samples: 6, psi: 'square', phi: 'identity' }],
    ['Frob-SAM', { kind: 'frob-sam', rho: 0.01, lambda: 1, samples: 6 }],
  ] as const) {
    it(`${name}: on a quadratic the finite-difference reading equals the exact estimator's on the same directions`, () => {
      const q = quadratic(P, 3, w);
      const fd = reading(q.model, q, config as SharpnessConfigInput, 5);
      const exact = reading(q.model, q, { ...config, estimator: 'exact' } as SharpnessConfigInput, 5);
      expect(Math.abs(fd - exact) / Math.abs(exact)).toBeLessThan(1e-7);
    });
  }
});

describe('readings called estimates meet their measure', () => {
  // a smooth MLP (tanh), float64, with its exact Hessian
  const model = float64Model(mlp({ layers: [6, 8, 3], activation: 'tanh' }), 4);
  const batch = randomBatch([24, 6], 3, 9);
  const h = hessian(model, batch, { mode: 'eval' });
  const exact = h.spectrum();
  const frob = exact.frobeniusSquared;

  it('the readings of the exact estimator are named estimates, the finite-difference ones signals', () => {
    for (const kind of ['trace-sam', 'det-sam', 'frob-sam', 'universal']) {
      expect(readingOf(kind, 'exact')!.kind).toBe('estimate');
      expect(readingOf(kind, 'finite-difference')!.kind).toBe('signal');
    }
    expect(readingOf('sgd')).toBeUndefined();
  });

  it('SAM and ASAM read L(w + e) − L(w) at their ascent step e, computed here by hand', () => {
    const w = model.getParams();
    const { loss, grad } = model.lossAndGrad(batch.x, batch.y);
    const g = toNumbers(grad);
    const at = (e: ArrayLike<number>) => {
      model.setParams(Array.from(w, (wi, i) => wi + e[i]));
      const l = model.loss(batch.x, batch.y);
      model.setParams(w);
      return l - loss;
    };
    const rho = 0.05, eta = 0.01;
    const norm = Math.hypot(...g);
    expect(reading(model, batch, { kind: 'sam', rho }, 1)).toBeCloseTo(at(g.map((gi) => (rho * gi) / (norm + 1e-7))), 12);
    const t = w.map((wi) => eta + Math.abs(wi));
    const tNorm = Math.hypot(...g.map((gi, i) => t[i] * gi));
    expect(reading(model, batch, { kind: 'asam', rho, eta }, 1)).toBeCloseTo(at(g.map((gi, i) => (rho * t[i] * t[i] * gi) / (tNorm + 1e-7))), 12);
    for (const kind of ['sam', 'asam']) expect(readingOf(kind)!.kind).toBe('estimate');
  });

  it('Trace-SAM (exact): the mean reading is tr H within 4 standard errors (Var uᵀHu = 2‖H‖_F²)', () => {
    const n = 3000;
    const r = reading(model, batch, { kind: 'trace-sam', rho: 0.01, lambda: 1, samples: n, estimator: 'exact' }, 1);
    expect(Math.abs(r - exact.trace)).toBeLessThan(4 * Math.sqrt((2 * frob) / n));
  });

  it('Frob-SAM (exact): the reading is ‖H‖_F² within 4 standard errors of a sample variance', () => {
    const n = 6000;
    const r = reading(model, batch, { kind: 'frob-sam', rho: 0.01, lambda: 1, samples: n, estimator: 'exact' }, 2);
    // Var(½·s²) of gaussian quadratic forms: ½·Var(uᵀHu)²·(2/(n−1)) + the fourth cumulant 48·Σλ⁴/(4n)
    const l4 = exact.eigenvalues.reduce((s, l) => s + l ** 4, 0);
    const se = Math.sqrt((2 * frob * frob) / (n - 1) + (12 * l4) / n);
    expect(Math.abs(r - frob)).toBeLessThan(4 * se);
  });

  it('Det-SAM (exact): the reading is the Det-SAM measure of the probe within 4 standard errors', () => {
    const a = 0.5;
    const n = 4000;
    const r = reading(model, batch, { kind: 'det-sam', rho: 1, lambda: 1, samples: n, halfCube: a, estimator: 'exact' }, 3);
    const probe = h.sharpness({ measure: 'det', halfCube: a, samples: 20000, seed: 4 });
    expect(Math.abs(r - probe.estimate)).toBeLessThan(4 * Math.hypot(probe.standardError!, probe.standardError! * Math.sqrt(20000 / n)));
  });

  it('Trace-SAM (finite-difference) approaches tr H as rho → 0 on a smooth loss, with the same sampling error', () => {
    const n = 3000;
    const se = Math.sqrt((2 * frob) / n);
    const r = reading(model, batch, { kind: 'trace-sam', rho: 1e-3, lambda: 1, samples: n }, 1);
    expect(Math.abs(r - exact.trace)).toBeLessThan(4 * se);
    // on the same directions as the exact estimator (seed 1) the difference
    // is far below the sampling error and shrinks with rho: per sample it is
    // the cubic term (rho/3)·∇³L[u,u,u] (zero mean for a symmetric mu, so
    // its mean over n draws is O(rho/√n)) plus an O(rho²) bias
    const bias = (rho: number) => {
      const fd = reading(model, batch, { kind: 'trace-sam', rho, lambda: 1, samples: n }, 1);
      return Math.abs(fd - reading(model, batch, { kind: 'trace-sam', rho, lambda: 1, samples: n, estimator: 'exact' }, 1));
    };
    const [b2, b3] = [bias(1e-2), bias(1e-3)];
    expect(b3).toBeLessThan(0.01 * se);
    expect(b2 / b3).toBeGreaterThan(8); // at least linear in rho (measured: 14)
    expect(b2 / b3).toBeLessThan(300);
  });
});

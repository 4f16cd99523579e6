// The reproduction's controls against their definitions, float64, on a
// small tanh MLP: random weight perturbation (RWP) steps on ∇L(w + ρu), and
// equals Trace-SAM at lambda 1 with one sample; the gradient-norm penalty
// (GNP) steps on g0 + lambda·H·g0 with H the exact Hessian.
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { mlp } from '../../lib/model/presets.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import type { SharpnessConfigInput } from '../../lib/optim/rules/index.js';
import { parseTrainConfig, sharpnessOf } from '../../lib/train/config.js';
import { float64Model, maxAbsDiff, randomBatch, rng, toNumbers } from '../helpers.js';

const make = () => float64Model(mlp({ layers: [5, 7, 3], activation: 'tanh' }), 6);
const { x, y } = randomBatch([12, 5], 3, 2);
const lr = 0.5;

/** w after one plain SGD step (no momentum) with the given config. */
function stepped(sharpness: SharpnessConfigInput) {
  const model = make();
  const r = new Optimizer(model, { base: { kind: 'sgd', lr }, sharpness }).step(x, y);
  return { w: model.getParams(), r };
}

describe('random weight perturbation', () => {
  const P = make().numParams;
  const r = rng(8);
  const u = Array.from({ length: P }, () => r() * 2 - 1);
  const rho = 0.05;

  it('steps on ∇L(w + ρu), and reads L(w + ρu) − L(w)', () => {
    const model = make();
    const w0 = model.getParams();
    const l0 = model.loss(x, y);
    model.setParams(w0.map((w, i) => w + rho * u[i]));
    const shifted = model.lossAndGrad(x, y);
    const g = toNumbers(shifted.grad);
    const { w, r: result } = stepped({ kind: 'rwp', rho, mu: () => u });
    expect(maxAbsDiff(w, w0.map((wi, i) => wi - lr * g[i]))).toBeLessThan(1e-13);
    expect(result.sharpness).toBeCloseTo(shifted.loss - l0, 13);
  });

  it('is Trace-SAM at lambda 1 with one sample (its g0 coefficient 1 − lambda is 0)', () => {
    const a = stepped({ kind: 'rwp', rho, mu: () => u }).w;
    const b = stepped({ kind: 'trace-sam', rho, lambda: 1, samples: 1, mu: () => u }).w;
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-14);
  });
});

describe('gradient-norm penalty', () => {
  it('steps on g0 + λ·H·g0 (exact Hessian) and reads ½‖g0‖²', () => {
    const model = make();
    const w0 = model.getParams();
    const g0 = toNumbers(model.lossAndGrad(x, y).grad);
    const H = hessian(model, { x, y }, { mode: 'eval' }).full().matrix;
    const P = g0.length;
    const lambda = 0.3;
    const hg = Array.from({ length: P }, (_, i) => g0.reduce((s, gj, j) => s + H[i * P + j] * gj, 0));
    const { w, r } = stepped({ kind: 'gnp', lambda });
    expect(maxAbsDiff(w, w0.map((wi, i) => wi - lr * (g0[i] + lambda * hg[i])))).toBeLessThan(1e-12);
    expect(r.sharpness).toBeCloseTo(0.5 * g0.reduce((s, v) => s + v * v, 0), 13);
    expect(r.sharpnessAware).toBe(true);
    expect(r.counters.hvp).toBe(1);
  });

  it('refuses a negative lambda, naming it', () => {
    expect(() => new Optimizer(make(), { base: { kind: 'sgd', lr }, sharpness: { kind: 'gnp', lambda: -1 } })).toThrow(/lambda must be ≥ 0/);
  });
});

describe('the training defaults of the controls', () => {
  it("RWP at Trace-SAM's radius, GNP at finite-difference Frob-SAM's lambda", () => {
    const trace = sharpnessOf(parseTrainConfig({ optimizer: 'trace-sam' })) as { rho: number };
    const frob = sharpnessOf(parseTrainConfig({ optimizer: 'frob-sam' })) as { lambda: number };
    expect(sharpnessOf(parseTrainConfig({ optimizer: 'rwp' }))).toMatchObject({ kind: 'rwp', rho: trace.rho, samples: 1 });
    expect(sharpnessOf(parseTrainConfig({ optimizer: 'gnp' }))).toEqual({ kind: 'gnp', lambda: frob.lambda });
  });
});

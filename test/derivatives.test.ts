// Gradients, HVPs and third-order gradients against central finite
// differences in float64, on an MLP with BatchNorm and on a small CNN.
import { describe, expect, it } from 'vitest';
import type { Model } from '../lib/model/model.js';
import { cnn, mlp } from '../lib/model/presets.js';
import { ops } from '../lib/ops.js';
import { tensor, type Tensor } from '../lib/tensor.js';
import { float64Model, randomBatch, randomVector, toNumbers } from './helpers.js';

const cases = [
  {
    name: 'MLP with BatchNorm (train mode)',
    make: () => float64Model(mlp({ layers: [5, 8, 7, 3], activation: 'tanh', batchNorm: true }), 3),
    batch: () => randomBatch([12, 5], 3, 11),
  },
  {
    name: 'small CNN (conv, BN, relu, maxpool, fc)',
    make: () => float64Model(cnn({ input: [2, 6, 6], channels: [3, 4], hidden: 6, classes: 3 }), 4),
    batch: () => randomBatch([6, 2, 6, 6], 3, 12),
  },
  {
    name: 'GELU / softplus MLP with label smoothing',
    make: () =>
      float64Model(
        {
          input: [4],
          layers: [
            { type: 'linear', inFeatures: 4, outFeatures: 6 },
            { type: 'gelu' },
            { type: 'linear', inFeatures: 6, outFeatures: 5 },
            { type: 'softplus', beta: 2 },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
          loss: { type: 'cross-entropy', labelSmoothing: 0.1 },
        },
        5,
      ),
    batch: () => randomBatch([9, 4], 3, 13),
  },
];

/** f evaluated at w ± eps·d, parameters restored exactly afterwards. */
function centralDifference<T>(model: Model, d: Tensor, eps: number, f: () => T): [T, T] {
  const w = model.params.clone();
  ops.axpy(model.params, eps, d);
  const plus = f();
  ops.copy(model.params, w);
  ops.axpy(model.params, -eps, d);
  const minus = f();
  ops.copy(model.params, w);
  w.dispose();
  return [plus, minus];
}

describe.each(cases)('$name', ({ make, batch }) => {
  const model = make();
  const { x, y } = batch();
  const P = model.numParams;
  const eps = 1e-5;

  it('lossAndGrad agrees with central differences of the loss', () => {
    const { grad } = model.lossAndGrad(x, y, { updateStats: false });
    const g = toNumbers(grad);
    // every coordinate of a random subset, and three random directions
    const coords = Array.from({ length: 25 }, (_, k) => (k * 7919) % P);
    for (const i of coords) {
      const basis = new Float64Array(P);
      basis[i] = 1;
      const u = tensor(basis, [P], { dtype: 'float64' });
      const [lp, lm] = centralDifference(model, u, eps, () => model.loss(x, y));
      expect(Math.abs((lp - lm) / (2 * eps) - g[i])).toBeLessThan(1e-7);
      u.dispose();
    }
    for (let s = 0; s < 3; s++) {
      const d = randomVector(P, 100 + s);
      const [lp, lm] = centralDifference(model, d, eps, () => model.loss(x, y));
      expect(Math.abs((lp - lm) / (2 * eps) - ops.dot(grad, d))).toBeLessThan(1e-7);
    }
  });

  it('hvp agrees with central differences of the gradient', () => {
    for (let s = 0; s < 3; s++) {
      const v = randomVector(P, 200 + s);
      const hv = toNumbers(model.hvp(x, y, v));
      const [gp, gm] = centralDifference(model, v, eps, () => toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad));
      let err = 0;
      let scale = 0;
      for (let i = 0; i < P; i++) {
        err = Math.max(err, Math.abs((gp[i] - gm[i]) / (2 * eps) - hv[i]));
        scale = Math.max(scale, Math.abs(hv[i]));
      }
      expect(scale).toBeGreaterThan(1e-3);
      expect(err).toBeLessThan(1e-6 * Math.max(1, scale));
    }
  });

  it('the gradient of vᵀHv agrees with central differences of hvp', () => {
    const v = randomVector(P, 300);
    const { q, grad } = model.quadraticFormGrad(x, y, v);
    const hv = model.hvp(x, y, v);
    expect(Math.abs(q - ops.dot(hv, v))).toBeLessThan(1e-10);
    for (let s = 0; s < 3; s++) {
      const d = randomVector(P, 400 + s);
      const [qp, qm] = centralDifference(model, d, eps, () => {
        const h = model.hvp(x, y, v);
        const val = ops.dot(h, v);
        h.dispose();
        return val;
      });
      const exact = ops.dot(grad, d);
      expect(Math.abs((qp - qm) / (2 * eps) - exact)).toBeLessThan(1e-6 * Math.max(1, Math.abs(exact)));
    }
  });
});

// lossLandscape against exact answers: on a model whose loss is quadratic in
// its weights (a linear layer under MSE), L(w + αd₁ + βd₂) along the
// Hessian's eigenvectors is L + α⟨g, d₁⟩ + β⟨g, d₂⟩ + ½(λ₁α² + λ₂β²) at every
// grid point; the weights come back bit for bit; random directions are
// normalised filter by filter (Li et al. 2018).
import { describe, expect, it } from 'vitest';
import { filterNormalisedDirection, lossLandscape } from '../../lib/hessian/landscape.js';
import { mlp } from '../../lib/model/presets.js';
import { ops } from '../../lib/tensor/ops.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { float64Model, randomBatch, toNumbers } from '../helpers.js';

describe('lossLandscape', () => {
  it('a quadratic loss along the top eigenvectors: L + α⟨g,d₁⟩ + β⟨g,d₂⟩ + ½(λ₁α² + λ₂β²) at every grid point (1e-10); the weights restored bit for bit', () => {
    const model = float64Model({ input: [4], layers: [{ type: 'linear', inFeatures: 4, outFeatures: 2 }], loss: { type: 'mse' } }, 3);
    const { x } = randomBatch([10, 4], 2, 4);
    const y = tensor(Float64Array.from({ length: 20 }, (_, i) => Math.cos(i)), [10, 2], { dtype: 'float64' });
    const before = Float64Array.from(model.getParams());
    const r = lossLandscape(model, { x, y }, { points: 7, range: 0.5 });
    expect(model.getParams()).toEqual(before);
    expect(r).toMatchObject({ directions: 'eigenvectors', passes: 49 });
    expect(r.alphas).toHaveLength(7);
    expect(r.alphas[3]).toBe(0);
    expect(Math.abs(r.cosine)).toBeLessThan(1e-10);
    // the gradient's components along the directions: recover them from the two axes' slopes through 0
    const { loss: l0, grad } = model.lossAndGrad(x, y, { updateStats: false });
    expect(Math.abs(r.center - l0)).toBeLessThan(1e-14);
    const [l1, l2] = r.eigenvalues!;
    // ⟨g, d⟩ by symmetric differences on the grid (exact for a quadratic)
    const h = r.alphas[4];
    const g1 = (r.loss[3][4] - r.loss[3][2]) / (2 * h), g2 = (r.loss[4][3] - r.loss[2][3]) / (2 * h);
    expect(Math.abs(g1 ** 2 + g2 ** 2)).toBeLessThanOrEqual(ops.dot(grad, grad) * (1 + 1e-9));
    let worst = 0;
    r.betas.forEach((b, j) =>
      r.alphas.forEach((a, i) => {
        const predicted = l0 + a * g1 + b * g2 + 0.5 * (l1 * a * a + l2 * b * b);
        worst = Math.max(worst, Math.abs(r.loss[j][i] - predicted) / l0);
      }),
    );
    expect(worst).toBeLessThan(1e-10);
  });

  it('given directions: each grid value is the loss at w + αd₁ + βd₂ computed directly', () => {
    const model = float64Model(mlp({ layers: [3, 5, 2], activation: 'tanh' }), 5);
    const batch = randomBatch([6, 3], 2, 6);
    const P = model.numParams;
    const d1 = tensor(Float64Array.from({ length: P }, (_, i) => Math.sin(i)), [P], { dtype: 'float64' });
    const d2 = tensor(Float64Array.from({ length: P }, (_, i) => Math.cos(3 * i)), [P], { dtype: 'float64' });
    const r = lossLandscape(model, batch, { directions: [d1, d2], points: 5, range: 0.2 });
    const w = Float64Array.from(model.getParams());
    const a = toNumbers(d1), b = toNumbers(d2);
    for (const [j, i] of [[0, 4], [4, 0], [1, 3]]) {
      const probe = float64Model(mlp({ layers: [3, 5, 2], activation: 'tanh' }), 5);
      probe.setParams(w.map((v, k) => v + r.alphas[i] * a[k] + r.betas[j] * b[k]));
      expect(Math.abs(r.loss[j][i] - probe.loss(batch.x, batch.y))).toBeLessThan(1e-14);
    }
    expect(r.directions).toBe('given');
  });

  it('random directions are normalised filter by filter: each row of a weight matrix has its weights’ norm, biases get 0', () => {
    const model = float64Model(mlp({ layers: [3, 5, 2], activation: 'tanh' }), 7);
    const d = toNumbers(filterNormalisedDirection(model, 1, 0));
    const w = model.getParams();
    for (const p of model.paramInfo()) {
      if (p.shape.length === 1) {
        expect(Array.from(d.subarray(p.offset, p.offset + p.numel)).every((v) => v === 0)).toBe(true);
        continue;
      }
      const size = p.numel / p.shape[0];
      for (let f = 0; f < p.shape[0]; f++) {
        const s = p.offset + f * size;
        const norm = (v: ArrayLike<number>) => Math.hypot(...Array.from({ length: size }, (_, i) => v[s + i]));
        expect(Math.abs(norm(d) - norm(w))).toBeLessThan(1e-12 * norm(w));
      }
    }
    expect(toNumbers(filterNormalisedDirection(model, 1, 1))).not.toEqual(d);
    const r = lossLandscape(model, randomBatch([6, 3], 2, 8), { directions: 'random', points: 3 });
    expect(r.directions).toBe('random');
    expect(r.loss.flat().every(Number.isFinite)).toBe(true);
  });

  it('bad options are refused by name', () => {
    const model = float64Model(mlp({ layers: [3, 5, 2], activation: 'tanh' }), 7);
    const batch = randomBatch([6, 3], 2, 8);
    expect(() => lossLandscape(model, batch, { points: 4 })).toThrow(/options\.points.*odd/);
    expect(() => lossLandscape(model, batch, { range: 0 })).toThrow(/options\.range/);
    expect(() => lossLandscape(model, batch, { directions: 'sideways' as 'random' })).toThrow(/options\.directions.*'eigenvectors', 'random' or two flat tensors/);
  });
});

// BatchNorm running statistics move only in passes that ask for it.
import { describe, expect, it } from 'vitest';
import { cnn, mlp } from '../../lib/model/presets.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { float64Model, maxAbsDiff, randomBatch, randomVector, toNumbers } from '../helpers.js';

describe('BatchNorm running statistics', () => {
  for (const [name, make, shape] of [
    ['batchnorm1d', () => float64Model(mlp({ layers: [5, 8, 3], batchNorm: true })), [10, 5]],
    ['batchnorm2d', () => float64Model(cnn({ input: [1, 6, 6], channels: [3], hidden: 4, classes: 3 })), [4, 1, 6, 6]],
  ] as const) {
    it(`${name}: unchanged by loss, lossAndGrad(updateStats: false), hvp and quadraticFormGrad`, () => {
      const model = make();
      const { x, y } = randomBatch([...shape], 3, 7);
      const { values, counters } = model.buffers();
      const before = toNumbers(values);
      const countsBefore = Array.from(counters.toArray() as BigInt64Array);
      model.loss(x, y);
      model.lossAndGrad(x, y, { updateStats: false });
      const v = randomVector(model.numParams, 3);
      model.hvp(x, y, v);
      model.quadraticFormGrad(x, y, v);
      expect(maxAbsDiff(toNumbers(values), before)).toBe(0);
      expect(Array.from(counters.toArray() as BigInt64Array)).toEqual(countsBefore);

      model.lossAndGrad(x, y, { updateStats: true });
      expect(maxAbsDiff(toNumbers(values), before)).toBeGreaterThan(0);
      expect(Array.from(counters.toArray() as BigInt64Array)).toEqual(countsBefore.map((c) => c + 1n));
    });
  }

  it('running statistics follow PyTorch: momentum 0.1, unbiased variance', () => {
    const model = float64Model({ input: [2], layers: [{ type: 'batchnorm1d', numFeatures: 2 }, { type: 'linear', inFeatures: 2, outFeatures: 2 }] });
    const { x, y } = randomBatch([5, 2], 2, 9);
    const xs = toNumbers(x);
    model.lossAndGrad(x, y);
    const stats = toNumbers(model.buffers().values);
    for (let c = 0; c < 2; c++) {
      const col = [0, 1, 2, 3, 4].map((i) => xs[i * 2 + c]);
      const mean = col.reduce((a, b) => a + b) / 5;
      const unbiased = col.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
      expect(stats[c]).toBeCloseTo(0.1 * mean, 14);
      expect(stats[2 + c]).toBeCloseTo(0.9 + 0.1 * unbiased, 14);
    }
  });

  it('eval mode uses running statistics (outputs do not depend on the rest of the batch)', () => {
    const model = float64Model(mlp({ layers: [4, 6, 2], batchNorm: true }));
    const { x, y } = randomBatch([8, 4], 2, 5);
    model.lossAndGrad(x, y);
    model.eval();
    const full = toNumbers(model.forward(x));
    const { x: other } = randomBatch([8, 4], 2, 6);
    const firstRow = toNumbers(x).slice(0, 4);
    const mixed = toNumbers(other);
    mixed.set(firstRow, 0);
    const out = toNumbers(model.forward(tensor(mixed, [8, 4], { dtype: 'float64' })));
    expect(maxAbsDiff(out.slice(0, 2), full.slice(0, 2))).toBeLessThan(1e-15);
  });
});

// The losses' bookkeeping outside the derivatives (those are in
// test/numerics/derivatives.test.ts and pytorch-twin.test.ts): training
// accuracy and evaluate() for the losses with class labels (cross-entropy,
// nll), none for the ones with float targets (mse, bce-with-logits, huber).
import { describe, expect, it } from 'vitest';
import { synthetic } from '../../lib/data/dataset.js';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { evaluate } from '../../lib/train/evaluate.js';

const data = synthetic({ count: 23, shape: [4], classes: 3, seed: 5 });
const make = (loss: object) => new Model({ ...mlp({ layers: [4, 6, 3] }), loss } as never, { dtype: 'float64', seed: 2 });
const x = tensor(Float64Array.from(data.x), [23, 4], { dtype: 'float64' });

describe('nll: the outputs read as log-probabilities', () => {
  const model = make({ type: 'nll' });
  model.eval();
  const out = model.forward(x).toArray() as Float64Array;
  const rows = Array.from(data.y, (label, i) => ({ label, row: Array.from(out.subarray(3 * i, 3 * i + 3)) }));
  const argmaxRight = rows.filter(({ label, row }) => row.every((v) => v <= row[label])).length;

  it('evaluate() gives −mean out[i, y_i] and the argmax accuracy', () => {
    const e = evaluate(model, data, 7);
    const nll = -rows.reduce((s, { label, row }) => s + row[label], 0) / rows.length;
    expect(Math.abs(e.loss - nll)).toBeLessThan(1e-12);
    expect(Math.abs(e.loss - model.loss(x, labels(data.y)))).toBeLessThan(1e-12);
    expect(e.top1).toBeCloseTo(argmaxRight / rows.length, 12);
    expect(e.top5).toBe(1); // 3 classes
    expect(e.count).toBe(23);
  });

  it('lossAndGrad counts the argmax as the training accuracy', () => {
    model.lossAndGrad(x, labels(data.y), { updateStats: false });
    expect(model.native.lastCorrect).toBe(argmaxRight);
  });
});

describe('losses with float targets: no accuracy', () => {
  const y = tensor(Float64Array.from({ length: 69 }, (_, i) => 0.5 + 0.5 * Math.sin(i)), [23, 3], { dtype: 'float64' });
  for (const loss of [{ type: 'mse' }, { type: 'bce-with-logits' }, { type: 'huber', delta: 0.3 }] as const) {
    it(`${loss.type}: lossAndGrad reports none, evaluate() refuses a class-label dataset and says why`, () => {
      const model = make(loss);
      model.lossAndGrad(x, y, { updateStats: false });
      expect(model.native.lastCorrect).toBe(-1);
      expect(() => evaluate(model, data)).toThrow(
        `evaluate: the model's loss is '${loss.type}', which takes float targets of the output's shape, but a dataset holds int class labels`,
      );
    });
  }
});

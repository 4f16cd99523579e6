// Layer-specific input rules and initialisation (the derivatives of every
// layer are checked in derivatives.test.ts, hvp-cache.test.ts and against
// PyTorch in pytorch-twin.test.ts).
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { tensor } from '../../lib/tensor/tensor.js';

const embed = (layers: object[]) => new Model({ input: [3], layers } as never, { dtype: 'float64', seed: 1 });
const ids = (values: number[]) => tensor(BigInt64Array.from(values, BigInt), [values.length / 3, 3], { dtype: 'int64' });

describe('embedding', () => {
  const model = embed([{ type: 'embedding', numEmbeddings: 200, embeddingDim: 50 }, { type: 'flatten' }, { type: 'linear', inFeatures: 150, outFeatures: 2 }]);

  it('initialises its weight N(0, 1), as PyTorch does', () => {
    const w = Array.from(model.getParams().subarray(0, 200 * 50));
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    const sd = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / (w.length - 1));
    expect(Math.abs(mean)).toBeLessThan(0.03); // 4 standard errors of 10,000 draws
    expect(Math.abs(sd - 1)).toBeLessThan(0.03);
  });

  it('takes int64 indices in range, and must come first', () => {
    const y = tensor(BigInt64Array.from([0n, 1n]), [2], { dtype: 'int64' });
    expect(Number.isFinite(model.native.loss(ids([0, 5, 199, 3, 3, 3]), y, false))).toBe(true);
    expect(() => model.native.loss(tensor(new Float64Array(6), [2, 3], { dtype: 'float64' }), y, false)).toThrow(
      /argument 'x' is float64 but the model starts with an embedding: give int64 indices/,
    );
    expect(() => model.native.loss(ids([0, 5, 200, 3, 3, 3]), y, false)).toThrow(/spec.layers\[0\]: index 200 is outside the 200 embeddings \(0..199\)/);
    expect(() => model.native.loss(ids([0, -1, 2, 3, 3, 3]), y, false)).toThrow(/index -1 is outside/);
    expect(() => embed([{ type: 'linear', inFeatures: 3, outFeatures: 3 }, { type: 'embedding', numEmbeddings: 4, embeddingDim: 2 }])).toThrow(
      /spec.layers\[1\]: an embedding reads integer indices, so it must be the first layer/,
    );
  });
});

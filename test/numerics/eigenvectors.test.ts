// Eigenvectors from Lanczos (eigenvalues({vectors: true})), deflation, and
// principal angles between subspaces, against exact answers: the full
// matrix's eigenvectors, hand-made subspaces with known angles, and the
// default MLP's top eigenpairs checked by their own residuals.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR, fashionMnist } from '../../lib/data/dataset.js';
import { compareSubspaces } from '../../lib/hessian/compare.js';
import { ggn } from '../../lib/hessian/gauss-newton.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { symmetricEigen } from '../../lib/hessian/linalg.js';
import { principalAngles } from '../../lib/hessian/subspace.js';
import { mlp } from '../../lib/model/presets.js';
import { ops } from '../../lib/tensor/ops.js';
import { labels, tensor, type Tensor } from '../../lib/tensor/tensor.js';
import { float64Model, randomBatch, toNumbers } from '../helpers.js';

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i], 0);
const flat = (values: number[]) => tensor(Float64Array.from(values), [values.length], { dtype: 'float64' });

describe('eigenvectors by Lanczos', () => {
  it('on a small MLP they are the full Hessian’s eigenvectors (|cos| ≥ 1 − 1e-9), top and bottom, with measured residuals', () => {
    const model = float64Model(mlp({ layers: [4, 6, 3], activation: 'tanh' }), 3);
    const h = hessian(model, randomBatch([10, 4], 3, 4));
    const full = h.full();
    const exact = symmetricEigen(full.matrix, full.size, true);
    const n = full.size;
    const column = (j: number) => Array.from({ length: n }, (_, i) => exact.vectors![i * n + j]);
    const r = h.eigenvalues({ k: 3, which: 'both', vectors: true });
    for (const [i, x] of r.largestVectors!.entries()) {
      expect(Math.abs(dot(toNumbers(x), column(n - 1 - i)))).toBeGreaterThan(1 - 1e-9);
      expect(r.largestVectorResiduals![i]).toBeLessThan(1e-8 * Math.abs(r.largest[0]));
    }
    for (const [i, x] of r.smallestVectors!.entries()) expect(Math.abs(dot(toNumbers(x), column(i)))).toBeGreaterThan(1 - 1e-9);
    for (const x of [...r.largestVectors!, ...r.smallestVectors!]) x.dispose();
  });

  it('deflation by the top two vectors gives the next eigenvalues', () => {
    const model = float64Model(mlp({ layers: [4, 6, 3], activation: 'tanh' }), 5);
    const h = hessian(model, randomBatch([10, 4], 3, 6));
    const exact = h.spectrum().eigenvalues.slice().reverse();
    const first = h.eigenvalues({ k: 2, vectors: true });
    const next = h.eigenvalues({ k: 3, deflate: first.largestVectors, vectors: true });
    for (let i = 0; i < 3; i++) expect(Math.abs(next.largest[i] - exact[2 + i])).toBeLessThan(1e-9 * exact[0]);
    // the new vectors are orthogonal to the deflated ones
    for (const x of next.largestVectors!) for (const d of first.largestVectors!) expect(Math.abs(ops.dot(x, d))).toBeLessThan(1e-10);
    for (const x of [...first.largestVectors!, ...next.largestVectors!]) x.dispose();
  });

  it('vectors need the basis: refused with reorthogonalize none or a budget it exceeds, by name', () => {
    const model = float64Model(mlp({ layers: [4, 6, 3], activation: 'tanh' }), 5);
    const h = hessian(model, randomBatch([10, 4], 3, 6));
    expect(() => h.eigenvalues({ vectors: true, reorthogonalize: 'none' })).toThrow(/eigenvectors \(vectors: true\) needs the basis kept.*'none'/);
    expect(() => h.eigenvalues({ vectors: true, maxBasisBytes: 1000 })).toThrow(/needs the basis kept.*raise maxBasisBytes/);
    expect(() => h.eigenvalues({ deflate: [flat([1, 2])] })).toThrow(/options\.deflate\[0\] must be a flat float64 tensor of the model's 51 parameters/);
    expect(() => h.eigenvalues({ method: 'power', vectors: true })).toThrow(/vectors and deflate are Lanczos options/);
  });

  // The default MLP of `usam train` (784-128-10, ReLU) in float64, on 256
  // Fashion-MNIST training images (synthetic images of that shape without the dataset)
  it(`the default MLP's top five Hessian eigenpairs: residuals ≤ 1e-3·λ₁, vectors orthonormal to 1e-8 (${existsSync(FASHION_MNIST_DIR) ? 'Fashion-MNIST' : 'synthetic images: no Fashion-MNIST here'})`, () => {
    const model = float64Model(mlp({ layers: [784, 128, 10], activation: 'relu', input: [1, 28, 28] }), 7);
    let batch: { x: Tensor; y: Tensor };
    if (existsSync(FASHION_MNIST_DIR)) {
      const d = fashionMnist('train');
      batch = { x: tensor(Float64Array.from(d.x.subarray(0, 256 * 784)), [256, 1, 28, 28], { dtype: 'float64' }), y: labels(Array.from(d.y.subarray(0, 256))) };
    } else batch = randomBatch([256, 1, 28, 28], 10, 8);
    const h = hessian(model, batch);
    const r = h.eigenvalues({ k: 5, vectors: true });
    const xs = r.largestVectors!;
    expect(r.converged).toBe(true);
    for (const res of r.largestVectorResiduals!) expect(res).toBeLessThanOrEqual(1e-3 * r.largest[0]);
    for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) expect(Math.abs(ops.dot(xs[i], xs[j]) - (i === j ? 1 : 0))).toBeLessThan(1e-8);
    // each value is its vector's Rayleigh quotient
    for (let i = 0; i < 5; i++) expect(Math.abs(h.quadraticForm(xs[i]) - r.largest[i])).toBeLessThan(1e-6 * r.largest[0]);
    for (const x of xs) x.dispose();
  }, 120_000);
});

describe('principal angles between subspaces', () => {
  it('span(e1, e2) against span(u, 3 e2 + 2u), u = cos θ e1 + sin θ e3: angles 0 and θ, overlap (1 + cos²θ)/2', () => {
    const theta = 0.7;
    const r = principalAngles([flat([1, 0, 0, 0]), flat([0, 1, 0, 0])], [flat([Math.cos(theta), 0, Math.sin(theta), 0]), flat([2 * Math.cos(theta), 3, 2 * Math.sin(theta), 0])]);
    expect(r.angles[0]).toBeLessThan(1e-7);
    expect(Math.abs(r.angles[1] - theta)).toBeLessThan(1e-12);
    expect(Math.abs(r.overlap - (1 + Math.cos(theta) ** 2) / 2)).toBeLessThan(1e-12);
    const orthogonal = principalAngles([flat([1, 0, 0])], [flat([0, 0, 2])]);
    expect(orthogonal).toMatchObject({ cosines: [0], overlap: 0 });
    expect(() => principalAngles([flat([1, 0]), flat([2, 0])], [flat([1, 0])])).toThrow(/a\[1\] is zero or in the span/);
    expect(() => principalAngles([flat([1, 0])], [flat([1, 0, 0])])).toThrow(/b\[0\] has shape \[3\]|have 2 entries/);
  });

  it('compareSubspaces: the Hessian and the GGN of a model linear in its parameters under MSE share their top eigenspace; a nonlinear model’s do not quite', () => {
    const linear = float64Model({ input: [5], layers: [{ type: 'linear', inFeatures: 5, outFeatures: 3 }], loss: { type: 'mse' } }, 2);
    const { x } = randomBatch([12, 5], 3, 9);
    const y = tensor(Float64Array.from({ length: 36 }, (_, i) => Math.sin(i)), [12, 3], { dtype: 'float64' });
    const same = compareSubspaces(hessian(linear, { x, y }), ggn(linear, { x, y }), { k: 4 });
    expect(Math.max(...same.angles)).toBeLessThan(1e-6);
    expect(Math.abs(same.overlap - 1)).toBeLessThan(1e-10);
    for (let i = 0; i < 4; i++) expect(Math.abs(same.a.values[i] - same.b.values[i])).toBeLessThan(1e-9 * same.a.values[0]);
    const model = float64Model(mlp({ layers: [5, 8, 3], activation: 'tanh' }), 4);
    const batch = randomBatch([12, 5], 3, 10);
    const differ = compareSubspaces(hessian(model, batch), ggn(model, batch), { k: 3 });
    expect(differ.overlap).toBeLessThan(1 - 1e-6);
    expect(differ.hvps).toBeGreaterThan(0);
  });
});

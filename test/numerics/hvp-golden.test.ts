// HVPs against the reference implementation's exact Hessian (float64).
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { goldenSetup, hessianGolden, readGolden } from '../../lib/golden/format.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { symmetricEigen } from '../../lib/hessian/linalg.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { goldenDir, maxAbsDiff, toNumbers } from '../helpers.js';

const g = readGolden(hessianGolden, join(goldenDir, 'hessian-mlp-tanh-s1.json'));

describe('HVP on hessian-mlp-tanh-s1 (float64)', () => {
  const { model, x, y } = goldenSetup(g, g.params);
  const P = model.numParams;

  it('loss equals the file', () => {
    expect(Math.abs(model.loss(x, y) - g.loss_value)).toBeLessThan(1e-12);
  });

  it('hvp(v) equals the file Hv to 1e-10', () => {
    const v = tensor(Float64Array.from(g.hvpProbe.v), [P], { dtype: 'float64' });
    const hv = toNumbers(model.hvp(x, y, v));
    expect(maxAbsDiff(hv, g.hvpProbe.Hv)).toBeLessThan(1e-10);
  });

  it('the full Hessian from P HVPs reproduces eigenvalues, trace and Frobenius norm to 1e-8', () => {
    // P HVPs with the unit vectors, symmetrised (the probe API's full())
    const full = hessian(model, { x, y }, { mode: 'train' }).full();
    expect(full.hvps).toBe(P);
    expect(full.asymmetry).toBeLessThan(1e-12);
    const H = full.matrix;
    let trace = 0;
    let frob = 0;
    for (let i = 0; i < P; i++) trace += H[i * P + i];
    for (const h of H) frob += h * h;
    const { values } = symmetricEigen(H, P);
    expect(Math.abs(trace - g.trace)).toBeLessThan(1e-8);
    expect(Math.abs(frob - g.frobeniusSquared)).toBeLessThan(1e-8);
    expect(maxAbsDiff(values, g.eigenvalues)).toBeLessThan(1e-8);
    expect(Math.abs(values[P - 1] - g.maxEigenvalue)).toBeLessThan(1e-8);
    expect(Math.abs(values[0] - g.minEigenvalue)).toBeLessThan(1e-8);
  });
});

// Dense symmetric eigenproblems: JavaScript (Householder + QL) and LAPACK
// through LibTorch agree, and each satisfies A v = λ v to rounding.
import { describe, expect, it } from 'vitest';
import { LAPACK_MIN_SIZE, symmetricEigen, tridiagonalEigen, type EigenBackend } from '../../lib/hessian/linalg.js';
import { native } from '../../lib/native/load.js';
import { maxAbsDiff, rng } from '../helpers.js';

function randomSymmetric(n: number, seed: number): Float64Array {
  const r = rng(seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = 2 * r() - 1;
  return a;
}

/** max_j ‖A v_j − λ_j v_j‖ and max |VᵀV − I|. */
function eigenErrors(a: ArrayLike<number>, n: number, values: Float64Array, vectors: Float64Array) {
  let residual = 0, orthogonality = 0;
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < n; i++) {
      let av = 0;
      for (let k = 0; k < n; k++) av += a[i * n + k] * vectors[k * n + j];
      residual = Math.max(residual, Math.abs(av - values[j] * vectors[i * n + j]));
    }
    for (let l = 0; l < n; l++) {
      let d = 0;
      for (let k = 0; k < n; k++) d += vectors[k * n + j] * vectors[k * n + l];
      orthogonality = Math.max(orthogonality, Math.abs(d - (j === l ? 1 : 0)));
    }
  }
  return { residual, orthogonality };
}

describe('symmetric eigenproblems', () => {
  for (const n of [5, 60]) {
    it(`n = ${n}: JavaScript and LAPACK give the same ascending values, and vectors with A v = λ v`, () => {
      const a = randomSymmetric(n, n);
      const copy = Float64Array.from(a);
      const results = (['js', 'lapack'] as EigenBackend[]).map((b) => symmetricEigen(a, n, true, b));
      expect(maxAbsDiff(results[0].values, results[1].values)).toBeLessThan(1e-12);
      for (const r of results) {
        for (let i = 1; i < n; i++) expect(r.values[i]).toBeGreaterThanOrEqual(r.values[i - 1]);
        const e = eigenErrors(a, n, r.values, r.vectors!);
        expect(e.residual).toBeLessThan(1e-12);
        expect(e.orthogonality).toBeLessThan(1e-12);
      }
      expect(a).toEqual(copy); // the input is left alone
      // 'auto' picks LAPACK from LAPACK_MIN_SIZE rows on; either way the values agree
      expect(symmetricEigen(a, n).values).toEqual(symmetricEigen(a, n, false, n >= LAPACK_MIN_SIZE ? 'lapack' : 'js').values);
    });
  }

  it('tridiagonal: both backends agree with the dense problem', () => {
    const n = 70;
    const r = rng(3);
    const alpha = Array.from({ length: n }, () => r());
    const beta = Array.from({ length: n - 1 }, () => r() + 0.1);
    const dense = new Float64Array(n * n);
    for (let i = 0; i < n; i++) dense[i * n + i] = alpha[i];
    for (let i = 0; i + 1 < n; i++) dense[i * n + i + 1] = dense[(i + 1) * n + i] = beta[i];
    for (const b of ['js', 'lapack'] as EigenBackend[]) {
      const t = tridiagonalEigen(alpha, beta, true, b);
      expect(maxAbsDiff(t.values, symmetricEigen(dense, n, false, 'js').values)).toBeLessThan(1e-12);
      expect(eigenErrors(dense, n, t.values, t.vectors!).residual).toBeLessThan(1e-12);
    }
    expect(() => tridiagonalEigen(alpha, beta.slice(1))).toThrow(/argument 'beta' has 68 entries; 70 diagonal entries \(alpha\) need 69 off-diagonal ones/);
  });

  it('the native call refuses what is not an n×n float64 matrix, naming the argument', () => {
    const linalg = native().linalg;
    expect(() => linalg.symmetricEigen(new Float32Array(4) as unknown as Float64Array, 2, false)).toThrow(/argument 'a' must be a Float64Array/);
    expect(() => linalg.symmetricEigen(new Float64Array(5), 2, false)).toThrow(/argument 'a' has 5 entries; an n×n matrix with n = 2 needs 4/);
    expect(() => linalg.symmetricEigen(new Float64Array(4), 0, false)).toThrow(/argument 'n' must be an integer/);
    expect(() => linalg.symmetricEigen(Float64Array.from([1, NaN, NaN, 1]), 2, false)).toThrow(/non-finite entry at row 0, column 1/);
    expect(() => symmetricEigen([1, 2, 2, 1], 2, false, 'magma' as EigenBackend)).toThrow(/symmetricEigen: argument 'backend' must be one of 'auto', 'js', 'lapack', got the string "magma"/);
  });
});

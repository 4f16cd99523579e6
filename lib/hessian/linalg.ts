// Dense symmetric eigen-decomposition in float64: in JavaScript (Householder
// reduction to tridiagonal form, then the implicit QL algorithm) for small
// matrices, where a native call costs more than it saves, and by LAPACK through
// LibTorch (native/linalg.cc) from LAPACK_MIN_SIZE rows on, where the O(n³)
// loop in JavaScript falls behind (scripts/bench/eigen.ts measures both).
// Used for full Hessians and for the tridiagonal matrices of Lanczos.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { ops } from '../tensor/ops.js';

export interface Eigen {
  /** Eigenvalues in ascending order. */
  values: Float64Array;
  /** Column j (vectors[i * n + j]) is the unit eigenvector of values[j], when asked for. */
  vectors?: Float64Array;
}

export type EigenBackend = 'auto' | 'js' | 'lapack';
const BACKENDS = ['auto', 'js', 'lapack'] as const;

/** From this many rows on, 'auto' hands the problem to LAPACK (measured: docs/benchmarks.md). */
export const LAPACK_MIN_SIZE = 24;

function useLapack(n: number, backend: EigenBackend): boolean {
  return backend === 'lapack' || (backend === 'auto' && n >= LAPACK_MIN_SIZE);
}

/** Eigenvalues (and optionally vectors) of the symmetric n×n row-major matrix `a` (not modified). */
export function symmetricEigen(a: ArrayLike<number>, n: number, wantVectors = false, backend: EigenBackend = 'auto'): Eigen {
  check.values('symmetricEigen', 'a', a);
  check.number('symmetricEigen', 'n', n, { integer: true, min: 0 });
  check.boolean('symmetricEigen', 'wantVectors', wantVectors);
  check.oneOf('symmetricEigen', 'backend', backend, BACKENDS);
  if (a.length !== n * n) throw new check.ArgumentError('symmetricEigen', 'a', `has ${a.length} entries; an n × n matrix (n = ${n}) has ${n * n}`);
  if (useLapack(n, backend)) return ops.symmetricEigen(Float64Array.from(a), n, wantVectors);
  const v = Float64Array.from(a);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  householderTridiagonal(v, n, d, e);
  tridiagonalQL(v, n, d, e);
  sortAscending(d, v, n);
  return wantVectors ? { values: d, vectors: v } : { values: d };
}

/**
 * Eigen-decomposition of the symmetric tridiagonal matrix with diagonal
 * `alpha` and off-diagonal `beta` (beta[i] couples i and i+1).
 */
export function tridiagonalEigen(alpha: ArrayLike<number>, beta: ArrayLike<number>, wantVectors = true, backend: EigenBackend = 'auto'): Eigen {
  check.values('tridiagonalEigen', 'alpha', alpha);
  check.values('tridiagonalEigen', 'beta', beta);
  check.boolean('tridiagonalEigen', 'wantVectors', wantVectors);
  check.oneOf('tridiagonalEigen', 'backend', backend, BACKENDS);
  const n = alpha.length;
  if (beta.length !== n - 1 && !(n === 0 && beta.length === 0))
    throw new check.ArgumentError('tridiagonalEigen', 'beta', `has ${beta.length} entries; ${n} diagonal entries (alpha) need ${n - 1} off-diagonal ones`);
  if (useLapack(n, backend)) {
    const dense = new Float64Array(n * n);
    for (let i = 0; i < n; i++) dense[i * n + i] = alpha[i];
    for (let i = 0; i + 1 < n; i++) dense[(i + 1) * n + i] = dense[i * n + i + 1] = beta[i];
    return ops.symmetricEigen(dense, n, wantVectors);
  }
  const d = Float64Array.from(alpha);
  const e = new Float64Array(n);
  for (let i = 1; i < n; i++) e[i] = beta[i - 1];
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  tridiagonalQL(v, n, d, e);
  sortAscending(d, v, n);
  return wantVectors ? { values: d, vectors: v } : { values: d };
}

// Householder reduction of a symmetric matrix to tridiagonal form; on exit
// v holds the orthogonal transform, d the diagonal, e the sub-diagonal (e[0] = 0).
function householderTridiagonal(v: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let j = 0; j < n; j++) d[j] = v[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
        v[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        v[j * n + i] = f;
        g = e[j] + v[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[k * n + j] * d[k];
          e[k] += v[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) v[k * n + j] -= f * e[k] + g * d[k];
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    v[(n - 1) * n + i] = v[i * n + i];
    v[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = v[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += v[k * n + i + 1] * v[k * n + j];
        for (let k = 0; k <= i; k++) v[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) v[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = v[(n - 1) * n + j];
    v[(n - 1) * n + j] = 0;
  }
  v[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

// Implicit QL iterations on the tridiagonal (d, e), accumulating into v.
function tridiagonalQL(v: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  if (n > 0) e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 300) throw new UsamError('symmetric eigensolver did not converge');
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = c, c3 = c;
        const el1 = e[l + 1];
        let s = 0, s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          for (let k = 0; k < n; k++) {
            h = v[k * n + i + 1];
            v[k * n + i + 1] = s * v[k * n + i] + c * h;
            v[k * n + i] = c * v[k * n + i] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] = d[l] + f;
    e[l] = 0;
  }
}

function sortAscending(d: Float64Array, v: Float64Array, n: number): void {
  const order = Array.from(d.keys()).sort((i, j) => d[i] - d[j]);
  const dv = Float64Array.from(order, (i) => d[i]);
  const vv = new Float64Array(n * n);
  for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) vv[k * n + j] = v[k * n + order[j]];
  d.set(dv);
  v.set(vv);
}

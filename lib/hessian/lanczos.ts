// Lanczos with full reorthogonalisation: the Krylov basis of H from a start
// vector, the tridiagonal T = QᵀHQ, and its Ritz pairs. Serves both the
// extreme eigenvalues and stochastic Lanczos quadrature.
import { ops } from '../ops.js';
import type { Tensor } from '../tensor.js';
import { tridiagonalEigen } from './linalg.js';
import type { HessianOperator } from './operator.js';

export interface LanczosRun {
  alpha: number[];
  beta: number[];
  /** Ritz values (ascending) and, for each, the first and last components of its eigenvector of T */
  ritz: { value: number; first: number; last: number }[];
  /** |beta_m · y_last|: the residual norm ‖H x − θ x‖ of each Ritz pair */
  residuals: number[];
  steps: number;
}

function ritzOf(alpha: number[], beta: number[], lastBeta: number) {
  const m = alpha.length;
  const { values, vectors } = tridiagonalEigen(alpha, beta.slice(0, m - 1));
  const ritz = Array.from(values, (value, j) => ({ value, first: vectors![j], last: vectors![(m - 1) * m + j] }));
  return { ritz, residuals: ritz.map((r) => Math.abs(lastBeta * r.last)) };
}

/**
 * Runs up to `maxSteps` Lanczos steps from `start` (normalised here).
 * `done(ritz, residuals)` is asked after every step whether to stop.
 */
export function lanczos(
  op: HessianOperator,
  start: Tensor,
  maxSteps: number,
  done?: (run: Pick<LanczosRun, 'ritz' | 'residuals'>) => boolean,
): LanczosRun {
  const steps = Math.min(maxSteps, op.size);
  const basis: Tensor[] = [];
  const alpha: number[] = [];
  const beta: number[] = [];
  const q = start.clone();
  ops.scale(q, 1 / ops.norm(q));
  basis.push(q);
  const w = op.zeros();
  let lastBeta = 0;
  try {
    for (let j = 0; j < steps; j++) {
      op.apply(basis[j], w);
      const a = ops.dot(basis[j], w);
      alpha.push(a);
      // full reorthogonalisation, twice ("twice is enough"), against all basis vectors
      for (let pass = 0; pass < 2; pass++)
        for (const qi of basis) ops.axpy(w, -ops.dot(qi, w), qi);
      lastBeta = ops.norm(w);
      const isLast = j + 1 === steps || lastBeta <= 1e-12 * Math.max(1, Math.abs(a));
      if (!isLast && done && done(ritzOf(alpha, beta, lastBeta))) break;
      if (isLast) break;
      beta.push(lastBeta);
      const next = w.clone();
      ops.scale(next, 1 / lastBeta);
      basis.push(next);
    }
    const { ritz, residuals } = ritzOf(alpha, beta, lastBeta);
    return { alpha, beta, ritz, residuals, steps: alpha.length };
  } finally {
    w.dispose();
    for (const t of basis) t.dispose();
  }
}

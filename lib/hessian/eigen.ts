// Extreme eigenvalues of the Hessian: Lanczos with full reorthogonalisation
// (the method), and power iteration with deflation (the slow baseline).
import { ops } from '../ops.js';
import { lanczos } from './lanczos.js';
import type { HessianOperator } from './operator.js';
import { extent } from '../extent.js';

export interface EigenOptions {
  k?: number;
  which?: 'largest' | 'smallest' | 'both';
  /** stop when every wanted Ritz pair has ‖Hx − θx‖ ≤ tol·max|θ| */
  tol?: number;
  maxIter?: number;
  method?: 'lanczos' | 'power';
  seed?: number;
  /** an extra stopping rule, asked after every HVP with the current estimates of the wanted eigenvalues (largest first) */
  stop?: (estimates: number[]) => boolean;
}

export interface EigenResult {
  method: 'lanczos' | 'power';
  /** largest: descending; smallest: ascending */
  largest?: number[];
  smallest?: number[];
  /** residual norms ‖Hx − θx‖, in the order of the values */
  largestResiduals?: number[];
  smallestResiduals?: number[];
  converged: boolean;
  iterations: number;
  hvps: number;
}

export function eigenvalues(op: HessianOperator, o: EigenOptions = {}): EigenResult {
  const k = o.k ?? 1;
  const which = o.which ?? 'largest';
  const tol = o.tol ?? 1e-6;
  if (!Number.isInteger(k) || k < 1 || k > op.size) throw new Error(`eigenvalues: k must be an integer in [1, ${op.size}], got ${k}`);
  if (!(tol > 0)) throw new Error(`eigenvalues: tol must be > 0, got ${tol}`);
  const gen = op.newGenerator(o.seed ?? 0);
  const start = op.random(gen, 'sphere');
  const before = op.hvps;
  try {
    if ((o.method ?? 'lanczos') === 'power') {
      if (which !== 'largest') throw new Error("eigenvalues: power iteration finds only which: 'largest' (of magnitude); use method 'lanczos'");
      return powerIteration(op, start, k, tol, o.maxIter ?? 1000, before, o.stop);
    }
    const maxIter = o.maxIter ?? Math.min(op.size, Math.max(100, 6 * k));
    const wanted = (ritz: { value: number }[], residuals: number[]) => {
      const m = ritz.length;
      const scale = Math.max(extent(ritz.map((r) => Math.abs(r.value))).max, 1e-300);
      const idx: number[] = [];
      if (which !== 'smallest') for (let i = 0; i < Math.min(k, m); i++) idx.push(m - 1 - i);
      if (which !== 'largest') for (let i = 0; i < Math.min(k, m); i++) idx.push(i);
      return { ok: m >= k && idx.every((i) => residuals[i] <= tol * scale), scale, idx };
    };
    const run = lanczos(op, start, maxIter, ({ ritz, residuals }) => {
      const w = wanted(ritz, residuals);
      return w.ok || (o.stop?.(w.idx.map((i) => ritz[i].value)) ?? false);
    });
    const m = run.ritz.length;
    const take = (indices: number[]) => ({ values: indices.map((i) => run.ritz[i].value), residuals: indices.map((i) => run.residuals[i]) });
    const top = take(Array.from({ length: Math.min(k, m) }, (_, i) => m - 1 - i));
    const bottom = take(Array.from({ length: Math.min(k, m) }, (_, i) => i));
    return {
      method: 'lanczos',
      ...(which !== 'smallest' ? { largest: top.values, largestResiduals: top.residuals } : {}),
      ...(which !== 'largest' ? { smallest: bottom.values, smallestResiduals: bottom.residuals } : {}),
      converged: wanted(run.ritz, run.residuals).ok || run.steps === op.size,
      iterations: run.steps,
      hvps: op.hvps - before,
    };
  } finally {
    start.dispose();
  }
}

// Power iteration on H − Σ λ_j v_j v_jᵀ, one eigenpair after the other.
function powerIteration(
  op: HessianOperator,
  start: ReturnType<HessianOperator['zeros']>,
  k: number,
  tol: number,
  maxIter: number,
  before: number,
  stop?: (estimates: number[]) => boolean,
): EigenResult {
  const found: { value: number; vector: ReturnType<HessianOperator['zeros']> }[] = [];
  const residuals: number[] = [];
  const w = op.zeros();
  let iterations = 0;
  let converged = true;
  const gen = op.newGenerator(1);
  try {
    for (let i = 0; i < k; i++) {
      const v = i === 0 ? start.clone() : op.random(gen, 'sphere');
      let lambda = 0;
      let ok = false;
      for (let it = 0; it < maxIter; it++) {
        iterations++;
        op.apply(v, w);
        for (const f of found) ops.axpy(w, -f.value * ops.dot(f.vector, v), f.vector);
        const next = ops.dot(v, w);
        const change = Math.abs(next - lambda);
        lambda = next;
        ops.copy(v, w);
        ops.scale(v, 1 / ops.norm(v));
        if ((it > 0 && change <= tol * Math.abs(lambda)) || stop?.([...found.map((f) => f.value), lambda])) {
          ok = true;
          break;
        }
      }
      converged &&= ok;
      // residual ‖Hv − λv‖ of the deflated operator
      op.apply(v, w);
      for (const f of found) ops.axpy(w, -f.value * ops.dot(f.vector, v), f.vector);
      ops.axpy(w, -lambda, v);
      residuals.push(ops.norm(w));
      found.push({ value: lambda, vector: v });
    }
    return { method: 'power', largest: found.map((f) => f.value), largestResiduals: residuals, converged, iterations, hvps: op.hvps - before };
  } finally {
    w.dispose();
    for (const f of found) f.vector.dispose();
  }
}

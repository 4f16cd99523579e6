// Extreme eigenvalues of the Hessian: Lanczos (the method; with full
// reorthogonalisation when its basis fits the memory budget, else the
// three-term recurrence with its ghost copies removed), and power iteration
// with deflation (the slow baseline).
import { UsamError } from '../errors.js';
import { ops } from '../tensor/ops.js';
import { type Tensor, tensorArg } from '../tensor/tensor.js';
import { orthonormalBasis, projectOut } from './subspace.js';
import { lanczos, type LanczosMemoryOptions, type LanczosRun } from './lanczos.js';
import { tridiagonalEigen } from './linalg.js';
import type { Work } from '../model/work.js';
import type { CurvatureOperator } from './operator.js';
import { extent } from '../extent.js';

export type Which = 'largest' | 'smallest' | 'both';

export interface EigenOptions extends LanczosMemoryOptions {
  k?: number;
  which?: Which;
  /** stop when every wanted Ritz pair has ‖Hx − θx‖ ≤ tol·max|θ| */
  tol?: number;
  maxIter?: number;
  method?: 'lanczos' | 'power';
  seed?: number;
  /** an extra stopping rule, asked after every HVP with the current estimates of the wanted eigenvalues (largest first) */
  stop?: (estimates: number[]) => boolean;
  /**
   * also return the eigenvectors (Lanczos: Ritz vectors from the kept basis,
   * so the basis must fit maxBasisBytes), unit-norm flat tensors the caller
   * disposes, with their residuals ‖Ax − λx‖ measured by one more product each
   */
  vectors?: boolean;
  /**
   * deflation: find the eigenpairs of the operator on the orthogonal
   * complement of these vectors (e.g. those found before; orthonormalised
   * here, left as they are)
   */
  deflate?: Tensor[];
}

/** eigenvalues({vectors: true})' vectors, in the order of the values, and their measured residuals ‖Ax − λx‖. */
export interface EigenVectors {
  largestVectors?: Tensor[];
  smallestVectors?: Tensor[];
  largestVectorResiduals?: number[];
  smallestVectorResiduals?: number[];
}

/** The largest eigenvalues (descending) and their residual norms ‖Hx − θx‖, in the order of the values. */
export type LargestEigenvalues = { largest: number[]; largestResiduals: number[] };
/** The smallest eigenvalues (ascending) and their residual norms. */
export type SmallestEigenvalues = { smallest: number[]; smallestResiduals: number[] };

/**
 * eigenvalues()' result: `largest` is there when `which` is 'largest' (the
 * default) or 'both', `smallest` when it is 'smallest' or 'both', and the
 * type says so (no `!` needed).
 */
export type EigenResult<W extends Which = Which> = EigenRun &
  EigenVectors &
  ([W] extends ['largest'] ? LargestEigenvalues : [W] extends ['smallest'] ? SmallestEigenvalues : [W] extends ['both'] ? LargestEigenvalues & SmallestEigenvalues : Partial<LargestEigenvalues & SmallestEigenvalues>);

/** What every eigenvalues() result has. */
export interface EigenRun {
  method: 'lanczos' | 'power';
  converged: boolean;
  iterations: number;
  hvps: number;
  /** Lanczos: 'full' (the basis kept) or 'none' (three vectors; ghost copies removed) */
  reorthogonalization?: 'full' | 'none';
  /** bytes of the flat vectors held at most */
  vectorBytes?: number;
  /** why the run fell back from full reorthogonalisation */
  note?: string;
}

type Ritz = Pick<LanczosRun, 'ritz' | 'residuals'>;

/**
 * Ritz pairs of a run without reorthogonalisation, ghosts removed
 * (after Cullum & Willoughby 1985): copies of one converged eigenvalue
 * collapse to one, and a single unconverged Ritz value (residual above
 * `converged`) that is also an eigenvalue of T with its first row and column
 * deleted is spurious: a copy still forming. A single converged value is kept
 * (the test alone would drop genuine eigenvalues that have no copy yet).
 */
export function withoutGhosts(run: Ritz, alpha: number[], beta: number[], scale: number, converged: number): Ritz {
  const m = run.ritz.length;
  if (m < 2) return run;
  const tol = 1e-10 * scale;
  const reduced = tridiagonalEigen(alpha.slice(1, m), beta.slice(1, m - 1), false).values;
  const ritz: Ritz['ritz'] = [];
  const residuals: number[] = [];
  for (let i = 0; i < m; ) {
    // a cluster of copies: nearly converged values within their residuals (and
    // rounding) of each other; an unconverged value's residual is too wide a
    // window (it would swallow its genuine neighbours)
    const copies = (a: number, b: number) =>
      Math.max(run.residuals[a], run.residuals[b]) <= 1e-6 * scale && run.ritz[b].value - run.ritz[a].value <= tol + run.residuals[a] + run.residuals[b];
    let end = i + 1;
    while (end < m && copies(end - 1, end)) end++;
    let best = i;
    for (let j = i + 1; j < end; j++) if (run.residuals[j] < run.residuals[best]) best = j;
    const value = run.ritz[best].value;
    const spurious = end - i === 1 && run.residuals[best] > converged && reduced.some((r) => Math.abs(r - value) <= tol);
    if (!spurious) {
      ritz.push(run.ritz[best]);
      residuals.push(run.residuals[best]);
    }
    i = end;
  }
  return { ritz, residuals };
}

export function* eigenvalues(op: CurvatureOperator, o: EigenOptions = {}): Work<EigenResult> {
  const k = o.k ?? 1;
  const which = o.which ?? 'largest';
  const tol = o.tol ?? 1e-6;
  if (!Number.isInteger(k) || k < 1 || k > op.size) throw new UsamError(`eigenvalues: k must be an integer in [1, ${op.size}], got ${k}`);
  if (!(tol > 0)) throw new UsamError(`eigenvalues: tol must be > 0, got ${tol}`);
  if (o.deflate !== undefined && !Array.isArray(o.deflate)) throw new UsamError('eigenvalues: options.deflate must be an array of flat tensors (e.g. the largestVectors of an earlier run)');
  for (const [i, d] of (o.deflate ?? []).entries()) {
    tensorArg('eigenvalues', `options.deflate[${i}]`, d);
    if (d.shape.length !== 1 || d.shape[0] !== op.model.numParams || d.dtype !== op.model.dtype)
      throw new UsamError(`eigenvalues: options.deflate[${i}] must be a flat ${op.model.dtype} tensor of the model's ${op.model.numParams} parameters, got ${d.dtype} [${d.shape}]`);
  }
  const deflate = o.deflate?.length ? orthonormalBasis('eigenvalues', 'options.deflate', o.deflate, true) : [];
  const gen = op.newGenerator(o.seed ?? 0);
  const start = op.random(gen, 'sphere');
  const before = op.hvps;
  try {
    if (deflate.length > 0 && k > op.size - deflate.length)
      throw new UsamError(`eigenvalues: k must be at most ${op.size - deflate.length} (the size less the ${deflate.length} deflated vectors), got ${k}`);
    if ((o.method ?? 'lanczos') === 'power') {
      if (which !== 'largest') throw new UsamError("eigenvalues: power iteration finds only which: 'largest' (of magnitude); use method 'lanczos'");
      if (o.vectors || deflate.length > 0) throw new UsamError("eigenvalues: vectors and deflate are Lanczos options; use method 'lanczos' (the default)");
      return yield* powerIteration(op, start, k, tol, o.maxIter ?? 1000, before, o.stop);
    }
    const maxIter = o.maxIter ?? Math.min(op.size - deflate.length, Math.max(100, 6 * k));
    const scaleOf = (ritz: { value: number }[]) => Math.max(extent(ritz.map((r) => Math.abs(r.value))).max, 1e-300);
    // with the basis kept every Ritz value is genuine; without it, ghosts go first
    const clean = (r: Ritz & Pick<LanczosRun, 'alpha' | 'beta' | 'reorthogonalization'>): Ritz =>
      r.reorthogonalization === 'none' ? withoutGhosts(r, r.alpha, r.beta, scaleOf(r.ritz), tol * scaleOf(r.ritz)) : r;
    const wanted = ({ ritz, residuals }: Ritz) => {
      const m = ritz.length;
      const scale = scaleOf(ritz);
      const idx: number[] = [];
      if (which !== 'smallest') for (let i = 0; i < Math.min(k, m); i++) idx.push(m - 1 - i);
      if (which !== 'largest') for (let i = 0; i < Math.min(k, m); i++) idx.push(i);
      return { ok: m >= k && idx.every((i) => residuals[i] <= tol * scale), idx };
    };
    const topOf = (m: number) => Array.from({ length: Math.min(k, m) }, (_, i) => m - 1 - i);
    const bottomOf = (m: number) => Array.from({ length: Math.min(k, m) }, (_, i) => i);
    const run = yield* lanczos(
      op,
      start,
      maxIter,
      (r) => {
        const c = clean(r);
        const w = wanted(c);
        return w.ok || (o.stop?.(w.idx.map((i) => c.ritz[i].value)) ?? false);
      },
      o,
      {
        deflate,
        // the basis is kept (full), so every Ritz pair is genuine: the indices are the run's own
        vectors: o.vectors ? (r) => [...(which !== 'smallest' ? topOf(r.ritz.length) : []), ...(which !== 'largest' ? bottomOf(r.ritz.length) : [])] : undefined,
      },
    );
    const final = clean(run);
    const m = final.ritz.length;
    const take = (indices: number[]) => ({ values: indices.map((i) => final.ritz[i].value), residuals: indices.map((i) => final.residuals[i]) });
    const top = take(topOf(m));
    const bottom = take(bottomOf(m));
    let vectors: EigenVectors = {};
    if (run.vectors) {
      const nTop = which !== 'smallest' ? top.values.length : 0;
      const residuals = yield* measuredResiduals(op, run.vectors, [...(nTop ? top.values : []), ...(which !== 'largest' ? bottom.values : [])], deflate);
      vectors = {
        ...(which !== 'smallest' ? { largestVectors: run.vectors.slice(0, nTop), largestVectorResiduals: residuals.slice(0, nTop) } : {}),
        ...(which !== 'largest' ? { smallestVectors: run.vectors.slice(nTop), smallestVectorResiduals: residuals.slice(nTop) } : {}),
      };
    }
    return {
      method: 'lanczos',
      ...(which !== 'smallest' ? { largest: top.values, largestResiduals: top.residuals } : {}),
      ...(which !== 'largest' ? { smallest: bottom.values, smallestResiduals: bottom.residuals } : {}),
      ...vectors,
      converged: wanted(final).ok || (run.steps === op.size && run.reorthogonalization === 'full'),
      iterations: run.steps,
      hvps: op.hvps - before,
      reorthogonalization: run.reorthogonalization,
      vectorBytes: run.vectorBytes,
      ...(run.note ? { note: run.note } : {}),
    };
  } finally {
    start.dispose();
    for (const d of deflate) d.dispose();
  }
}

// ‖A' x − λx‖ for each pair, A' the operator deflated by `deflate` (projected on both sides), one product each.
function* measuredResiduals(op: CurvatureOperator, xs: Tensor[], values: number[], deflate: Tensor[]): Work<number[]> {
  const w = op.zeros();
  try {
    const out: number[] = [];
    for (const [i, x] of xs.entries()) {
      yield* op.applyWork(x, w);
      projectOut(w, deflate, 1);
      ops.axpy(w, -values[i], x);
      out.push(ops.norm(w));
    }
    return out;
  } finally {
    w.dispose();
  }
}

// Power iteration on H − Σ λ_j v_j v_jᵀ, one eigenpair after the other.
function* powerIteration(
  op: CurvatureOperator,
  start: ReturnType<CurvatureOperator['zeros']>,
  k: number,
  tol: number,
  maxIter: number,
  before: number,
  stop?: (estimates: number[]) => boolean,
): Work<EigenResult> {
  const found: { value: number; vector: ReturnType<CurvatureOperator['zeros']> }[] = [];
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
        (yield* op.applyWork(v, w));
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
      (yield* op.applyWork(v, w));
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

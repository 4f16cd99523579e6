// Lanczos: the Krylov basis of H from a start vector, the tridiagonal
// T = QᵀHQ, and its Ritz pairs. Serves both the extreme eigenvalues and
// stochastic Lanczos quadrature.
//
// Full reorthogonalisation keeps every basis vector: (steps + 1) flat vectors
// of the model's size (≈100 × 45 MB for ResNet-18 in float32). The memory is
// estimated before anything is allocated and held against a budget; above it
// the run either stops with a message ('full') or ('auto', the default) runs
// the three-term recurrence, which keeps three vectors and reorthogonalises
// only against the previous two. Without full reorthogonalisation, converged
// Ritz values reappear as copies ("ghosts") in finite precision; eigen.ts
// removes them (Cullum–Willoughby), and SLQ's quadrature is unaffected in
// expectation (the copies split the weight of one node).
import { UsamError } from '../errors.js';
import { totalmem } from 'node:os';
import { ops } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { tridiagonalEigen } from './linalg.js';
import { projectOut } from './subspace.js';
import type { Work } from '../model/work.js';
import type { CurvatureOperator } from './operator.js';

export type Reorthogonalization = 'full' | 'none' | 'auto';

export interface LanczosMemoryOptions {
  /** 'full' keeps the basis (refused above the budget), 'none' keeps three vectors, 'auto' (default): full when it fits */
  reorthogonalize?: Reorthogonalization;
  /** the most bytes the kept basis may take (default: a quarter of this machine's memory) */
  maxBasisBytes?: number;
}

export interface LanczosRun {
  alpha: number[];
  beta: number[];
  /** Ritz values (ascending) and, for each, the first and last components of its eigenvector of T */
  ritz: { value: number; first: number; last: number }[];
  /** |beta_m · y_last|: the residual norm ‖H x − θ x‖ of each Ritz pair */
  residuals: number[];
  steps: number;
  reorthogonalization: 'full' | 'none';
  /** bytes of the flat vectors the run held at most */
  vectorBytes: number;
  /** why the run did not reorthogonalise fully, when it did not by choice of 'auto' */
  note?: string;
}

function ritzOf(alpha: number[], beta: number[], lastBeta: number) {
  const m = alpha.length;
  const { values, vectors } = tridiagonalEigen(alpha, beta.slice(0, m - 1));
  const ritz = Array.from(values, (value, j) => ({ value, first: vectors![j], last: vectors![(m - 1) * m + j] }));
  return { ritz, residuals: ritz.map((r) => Math.abs(lastBeta * r.last)) };
}

const formatBytes = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`);

/**
 * Which reorthogonalisation a run of `steps` steps gets, and the bytes of the
 * vectors it will hold, decided before any allocation.
 */
export function planLanczos(op: CurvatureOperator, steps: number, o: LanczosMemoryOptions = {}, runs = 1, workVectors = 1, needBasis?: string) {
  const mode = o.reorthogonalize ?? 'auto';
  if (mode !== 'full' && mode !== 'none' && mode !== 'auto')
    throw new UsamError(`reorthogonalize is '${String(mode)}'; use 'full', 'none' or 'auto'`);
  const budget = o.maxBasisBytes ?? Math.floor(totalmem() / 4);
  if (!(budget > 0)) throw new UsamError(`maxBasisBytes must be a positive number of bytes, got ${budget}`);
  const vector = op.model.numParams * (op.model.dtype === 'float64' ? 8 : 4);
  // the basis (steps + 1 vectors at most) and the work vectors (H q_j; for a
  // block also the row q_j is copied into); three-term: q_{j-1}, q_j, the
  // start copy and the work vectors. `runs` runs in lockstep hold that many times as much
  const full = runs * (steps + 1 + workVectors) * vector;
  const threeTerm = runs * (3 + workVectors) * vector;
  const each = runs > 1 ? ` in each of ${runs} runs at once` : '';
  const describe = `full reorthogonalisation of ${steps} steps keeps ${steps + 1} basis vectors of ${op.model.numParams} ${op.model.dtype} values${each}: ${formatBytes(full)}, over the budget of ${formatBytes(budget)} (maxBasisBytes)`;
  if (needBasis !== undefined) {
    // Ritz vectors are combinations of the basis: it is kept whatever the mode says
    if (mode === 'none') throw new UsamError(`lanczos: ${needBasis} needs the basis kept; reorthogonalize 'none' keeps three vectors (leave it out or use 'full')`);
    if (full > budget) throw new UsamError(`lanczos: ${needBasis} needs the basis kept, and ${describe}; raise maxBasisBytes or take fewer steps (maxIter)`);
  }
  if (mode === 'none') return { reorthogonalization: 'none' as const, vectorBytes: threeTerm };
  if (full <= budget) return { reorthogonalization: 'full' as const, vectorBytes: full };
  if (mode === 'full')
    throw new UsamError(
      `lanczos: ${describe}; raise maxBasisBytes, take fewer steps (maxIter/steps), or use reorthogonalize: 'none' (three vectors, ${formatBytes(threeTerm)})`,
    );
  return { reorthogonalization: 'none' as const, vectorBytes: threeTerm, note: `${describe}: ran without reorthogonalisation (three vectors, ${formatBytes(threeTerm)})` };
}

/**
 * One Lanczos run as a process that is fed H·q_j: `current` is the vector H
 * must be applied to next, `advance(w)` takes w = H·current (and overwrites
 * it) and says whether the run has ended. lanczos() drives one such process
 * with single HVPs; quadrature() drives several in lockstep with block HVPs.
 */
export class LanczosProcess {
  readonly alpha: number[] = [];
  readonly beta: number[] = [];
  private readonly basis: Tensor[] = []; // all vectors (full), or q_{j-1}, q_j (three-term)
  private readonly keepAll: boolean;
  private lastBeta = 0;
  ended = false;

  constructor(
    start: Tensor,
    private readonly steps: number,
    readonly plan: ReturnType<typeof planLanczos>,
    private readonly done?: (run: Pick<LanczosRun, 'ritz' | 'residuals' | 'alpha' | 'beta' | 'reorthogonalization'>) => boolean,
    /** orthonormal vectors the run stays orthogonal to (deflation: it finds the eigenpairs of the rest) */
    private readonly deflate: Tensor[] = [],
  ) {
    this.keepAll = plan.reorthogonalization === 'full';
    const q = start.clone();
    projectOut(q, this.deflate);
    ops.scale(q, 1 / ops.norm(q));
    this.basis.push(q);
    this.ended = steps < 1;
  }

  get current(): Tensor {
    return this.basis[this.basis.length - 1];
  }

  advance(w: Tensor): boolean {
    const { alpha, beta, basis } = this;
    const current = this.current;
    projectOut(w, this.deflate);
    const a = ops.dot(current, w);
    alpha.push(a);
    if (this.keepAll) {
      // full reorthogonalisation, twice ("twice is enough"), against all basis vectors
      projectOut(w, basis);
    } else {
      // the three-term recurrence w − α q_j − β q_{j−1}, then once more against
      // those two (local reorthogonalisation: it costs two dots)
      ops.axpy(w, -a, current);
      if (basis.length > 1) ops.axpy(w, -beta[beta.length - 1], basis[0]);
      projectOut(w, basis, 1);
    }
    this.lastBeta = ops.norm(w);
    const isLast = alpha.length === this.steps || this.lastBeta <= 1e-12 * Math.max(1, Math.abs(a));
    if (isLast || (this.done && this.done({ ...ritzOf(alpha, beta, this.lastBeta), alpha, beta, reorthogonalization: this.plan.reorthogonalization }))) {
      this.ended = true;
      return true;
    }
    beta.push(this.lastBeta);
    let next: Tensor;
    if (this.keepAll || basis.length < 2) next = w.clone();
    else {
      next = basis.shift()!; // reuse q_{j−1}'s memory for q_{j+1}
      ops.copy(next, w);
    }
    ops.scale(next, 1 / this.lastBeta);
    basis.push(next);
    return false;
  }

  /**
   * The Ritz vectors x = Q y for eigenvectors y of T (as tridiagonalEigen's
   * columns, one per wanted index): new flat tensors, the caller's to dispose.
   * Needs the basis (full reorthogonalisation).
   */
  ritzVectors(indices: number[]): Tensor[] {
    if (!this.keepAll) throw new UsamError('internal error: Ritz vectors need the kept basis');
    const m = this.alpha.length;
    const { vectors } = tridiagonalEigen(this.alpha, this.beta.slice(0, m - 1));
    return indices.map((j) => {
      const x = this.basis[0].clone();
      ops.scale(x, vectors![j]);
      for (let i = 1; i < m; i++) ops.axpy(x, vectors![i * m + j], this.basis[i]);
      ops.scale(x, 1 / ops.norm(x));
      return x;
    });
  }

  result(): LanczosRun {
    const { ritz, residuals } = ritzOf(this.alpha, this.beta, this.lastBeta);
    return { alpha: this.alpha, beta: this.beta, ritz, residuals, steps: this.alpha.length, ...this.plan };
  }

  dispose(): void {
    for (const t of this.basis) t.dispose();
    this.basis.length = 0;
  }
}

/**
 * Runs up to `maxSteps` Lanczos steps from `start` (normalised here).
 * `done` is asked after every step, with the Ritz pairs so far, whether to stop.
 */
export function* lanczos(
  op: CurvatureOperator,
  start: Tensor,
  maxSteps: number,
  done?: (run: Pick<LanczosRun, 'ritz' | 'residuals' | 'alpha' | 'beta' | 'reorthogonalization'>) => boolean,
  memory: LanczosMemoryOptions = {},
  /** vectors: which Ritz vectors to return (chosen from the final run: indices into its ascending ritz); deflate: as LanczosProcess */
  extra: { vectors?: (run: LanczosRun) => number[]; deflate?: Tensor[] } = {},
): Work<LanczosRun & { vectors?: Tensor[] }> {
  const deflated = extra.deflate?.length ?? 0;
  const steps = Math.min(maxSteps, op.size - deflated);
  const plan = planLanczos(op, steps, memory, 1, 1, extra.vectors ? 'eigenvectors (vectors: true)' : undefined);
  const run = new LanczosProcess(start, steps, plan, done, extra.deflate);
  const w = op.zeros();
  try {
    while (!run.ended) {
      yield* op.applyWork(run.current, w);
      run.advance(w);
    }
    const result = run.result();
    return extra.vectors ? { ...result, vectors: run.ritzVectors(extra.vectors(result)) } : result;
  } finally {
    w.dispose();
    run.dispose();
  }
}

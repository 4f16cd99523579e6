// Stochastic estimators from HVPs: Hutchinson and Hutch++ for tr H, E‖Hv‖²
// for ‖H‖_F², and stochastic Lanczos quadrature (SLQ) for spectral densities
// and tr f(H) (here Σ log(|λ| + δ), the damped log-determinant), each with
// its standard error. Where only vᵀHv is needed (Hutchinson, Hutch++'s
// deflated part) it comes from a curvature pass, not an HVP.
import { UsamError } from '../errors.js';
import { projectOut } from './subspace.js';
import { ops } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Work } from '../model/work.js';
import { type LanczosMemoryOptions, LanczosProcess, planLanczos } from './lanczos.js';
import type { CurvatureOperator } from './operator.js';
import { zeros } from '../tensor/tensor.js';

export interface Estimate {
  /** how it was estimated: 'hutchinson' (the trace; ‖H‖_F² as E‖Hv‖²), 'hutch++', 'slq' (stochastic Lanczos quadrature) */
  method: string;
  estimate: number;
  standardError: number;
  samples: number;
  hvps: number;
}

function meanAndError(xs: number[]): { mean: number; se: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, se: NaN };
  const v = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(v / n) };
}

function checkSamples(samples: number, min: number, what: string): void {
  if (!Number.isInteger(samples) || samples < min) throw new UsamError(`${what}: samples must be an integer ≥ ${min}, got ${samples}`);
}

/**
 * K rows of vectors and K rows of their HVPs, applied in one pass when K > 1:
 * the estimators fill `v` rows in the order they draw them, so what they
 * estimate does not depend on the block size.
 */
class Rows {
  readonly v: Tensor[];
  readonly hv: Tensor[];
  private readonly flatV: Tensor;
  private readonly flatHv: Tensor;
  constructor(
    private readonly op: CurvatureOperator,
    readonly size: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new UsamError(`block must be an integer ≥ 1 (vectors per HVP pass), got ${size}`);
    const P = op.model.numParams;
    this.flatV = zeros([size * P], op.model);
    this.flatHv = zeros([size * P], op.model);
    this.v = Array.from({ length: size }, (_, k) => this.flatV.narrow(k * P, P));
    this.hv = Array.from({ length: size }, (_, k) => this.flatHv.narrow(k * P, P));
  }
  /** hv[r] ← H v[r] for the first k rows */
  *apply(k: number): Work<void> {
    if (k === 1) {
      yield* this.op.applyWork(this.v[0], this.hv[0]);
      return;
    }
    const P = this.op.model.numParams;
    const v = this.flatV.narrow(0, k * P).view([k, P]), hv = this.flatHv.narrow(0, k * P).view([k, P]);
    try {
      yield* this.op.applyWork(v, hv);
    } finally {
      v.dispose();
      hv.dispose();
    }
  }
  /** v[r]ᵀ H v[r] for the first k rows, in one pass (CurvatureOperator.curvatureWork) */
  *curvatures(k: number): Work<number[]> {
    if (k === 1) return yield* this.op.curvatureWork(this.v[0]);
    const P = this.op.model.numParams;
    const v = this.flatV.narrow(0, k * P).view([k, P]);
    try {
      return yield* this.op.curvatureWork(v);
    } finally {
      v.dispose();
    }
  }
  dispose(): void {
    for (const t of [...this.v, ...this.hv, this.flatV, this.flatHv]) t.dispose();
  }
}

/**
 * The mean of a per-vector measure over `samples` random v, with its standard
 * error; `measure(rows, k)` gives it for the first k rows, `block` at a time.
 */
function* sampleMean(
  op: CurvatureOperator,
  samples: number,
  seed: number,
  kind: 'rademacher' | 'gaussian',
  measure: (rows: Rows, k: number) => Work<number[]>,
  block = 1,
): Work<Estimate> {
  const rows = new Rows(op, Math.min(block, samples));
  const gen = op.newGenerator(seed);
  const before = op.hvps;
  const xs: number[] = [];
  try {
    for (let i = 0; i < samples; i += rows.size) {
      const k = Math.min(rows.size, samples - i);
      for (let r = 0; r < k; r++) op.random(gen, kind, rows.v[r]);
      xs.push(...(yield* measure(rows, k)));
    }
  } finally {
    rows.dispose();
  }
  const { mean, se } = meanAndError(xs);
  return { method: 'hutchinson', estimate: mean, standardError: se, samples, hvps: op.hvps - before };
}

/** Hutchinson: tr H = E[vᵀHv], v rademacher; each vᵀHv from a curvature pass. */
export function* hutchinson(op: CurvatureOperator, samples: number, seed: number, block = 1): Work<Estimate> {
  checkSamples(samples, 2, 'trace');
  return yield* sampleMean(op, samples, seed, 'rademacher', (rows, k) => rows.curvatures(k), block);
}

/**
 * Hutch++ (Meyer et al. 2021) with `samples` HVPs: a third sketch the top of
 * the spectrum exactly (tr QᵀHQ), a third applies H to it, and a third
 * estimates the trace of the deflated rest by Hutchinson; each phase applies
 * H to `block` vectors per pass, the same estimate.
 */
export function* hutchPlusPlus(op: CurvatureOperator, samples: number, seed: number, block = 1): Work<Estimate> {
  checkSamples(samples, 6, "trace({method: 'hutch++'})");
  const m = Math.floor(samples / 3);
  const rows = new Rows(op, Math.min(block, m));
  const gen = op.newGenerator(seed);
  const before = op.hvps;
  const basis: Tensor[] = [];
  // runs `count` rows through H in blocks: fill(r, i) writes the i-th vector into row r, use(r, i) reads
  // its HVP (rows.hv[r]); with `quadratic`, use(r, i, q) gets only q = vᵀHv, from a curvature pass
  const inBlocks = function* (
    count: number,
    fill: (row: Tensor, i: number) => void,
    use: (r: number, i: number, q: number) => void,
    quadratic = false,
  ): Work<void> {
    for (let i = 0; i < count; i += rows.size) {
      const k = Math.min(rows.size, count - i);
      for (let r = 0; r < k; r++) fill(rows.v[r], i + r);
      const q = quadratic ? yield* rows.curvatures(k) : (yield* rows.apply(k), []);
      for (let r = 0; r < k; r++) use(r, i + r, q[r]);
    }
  };
  try {
    // the sketch: Q = orth(H S), S rademacher (Gram-Schmidt twice, in draw order)
    yield* inBlocks(
      m,
      (row) => op.random(gen, 'rademacher', row),
      (r) => {
        const q = rows.hv[r].clone();
        projectOut(q, basis);
        const n = ops.norm(q);
        if (n <= 1e-12) return q.dispose();
        ops.scale(q, 1 / n);
        basis.push(q);
      },
    );
    let exact = 0;
    yield* inBlocks(
      basis.length,
      (row, i) => ops.copy(row, basis[i]),
      (_r, _i, q) => (exact += q),
      true,
    );
    const xs: number[] = [];
    yield* inBlocks(
      Math.max(samples - m - basis.length, 2),
      (row) => {
        op.random(gen, 'rademacher', row);
        projectOut(row, basis, 1); // (I − QQᵀ)v
      },
      (_r, _i, q) => xs.push(q),
      true,
    );
    const { mean, se } = meanAndError(xs);
    return { method: 'hutch++', estimate: exact + mean, standardError: se, samples, hvps: op.hvps - before };
  } finally {
    rows.dispose();
    for (const b of basis) b.dispose();
  }
}

/** ‖H‖_F² = E‖Hv‖², v ~ N(0, I). */
export function* frobeniusSquared(op: CurvatureOperator, samples: number, seed: number, block = 1): Work<Estimate> {
  checkSamples(samples, 2, 'frobeniusSquared');
  return yield* sampleMean(
    op,
    samples,
    seed,
    'gaussian',
    function* (rows, k) {
      yield* rows.apply(k);
      return rows.hv.slice(0, k).map((hv) => ops.dot(hv, hv));
    },
    block,
  );
}

export interface QuadratureRun {
  nodes: number[];
  weights: number[];
}

export interface Quadrature {
  runs: QuadratureRun[];
  hvps: number;
  reorthogonalization: 'full' | 'none';
  vectorBytes: number;
  note?: string;
}

/**
 * SLQ: `runs` Lanczos runs of `steps` steps from random unit vectors; nodes θ_j
 * with weights y_j[0]². With `block` > 1, that many runs go in lockstep, each
 * step one block HVP over their current vectors (the same runs: the start
 * vectors are drawn in the same order; the memory is `block` runs' worth).
 */
export function* quadrature(op: CurvatureOperator, steps: number, runs: number, seed: number, memory: LanczosMemoryOptions = {}, block = 1): Work<Quadrature> {
  if (!Number.isInteger(steps) || steps < 1) throw new UsamError(`steps must be an integer ≥ 1, got ${steps}`);
  if (!Number.isInteger(runs) || runs < 1) throw new UsamError(`runs must be an integer ≥ 1, got ${runs}`);
  const together = Math.min(block, runs);
  const length = Math.min(steps, op.size);
  const plan = planLanczos(op, length, memory, together, 2); // each run's row of v and of H v
  const gen = op.newGenerator(seed);
  const before = op.hvps;
  const out: QuadratureRun[] = [];
  const rows = new Rows(op, together);
  try {
    for (let first = 0; first < runs; first += together) {
      const group: LanczosProcess[] = [];
      try {
        for (let r = first; r < Math.min(first + together, runs); r++) {
          const v = op.random(gen, 'rademacher');
          group.push(new LanczosProcess(v, length, plan));
          v.dispose();
        }
        for (let active = group; active.length > 0; active = active.filter((p) => !p.ended)) {
          // one run applies H to its own vector; several go through the rows of a block
          if (active.length === 1) yield* op.applyWork(active[0].current, rows.hv[0]);
          else {
            active.forEach((p, r) => ops.copy(rows.v[r], p.current));
            yield* rows.apply(active.length);
          }
          active.forEach((p, r) => p.advance(rows.hv[r]));
        }
        for (const p of group) {
          const { ritz } = p.result();
          out.push({ nodes: ritz.map((x) => x.value), weights: ritz.map((x) => x.first * x.first) });
        }
      } finally {
        for (const p of group) p.dispose();
      }
    }
  } finally {
    rows.dispose();
  }
  const { reorthogonalization, vectorBytes, note } = plan;
  return { runs: out, hvps: op.hvps - before, reorthogonalization, vectorBytes, ...(note ? { note } : {}) };
}

/** tr f(H) ≈ size · mean over runs of Σ_j w_j f(θ_j). */
export function* spectralSum(
  op: CurvatureOperator,
  f: (lambda: number) => number,
  steps: number,
  runs: number,
  seed: number,
  memory: LanczosMemoryOptions = {},
  block = 1,
): Work<Estimate & Omit<Quadrature, 'runs' | 'hvps'>> {
  const q = yield* quadrature(op, steps, runs, seed, memory, block);
  const xs = q.runs.map((r) => op.size * r.nodes.reduce((s, t, j) => s + r.weights[j] * f(t), 0));
  const { mean, se } = meanAndError(xs);
  return { method: 'slq', estimate: mean, standardError: se, samples: runs, hvps: q.hvps, reorthogonalization: q.reorthogonalization, vectorBytes: q.vectorBytes, ...(q.note ? { note: q.note } : {}) };
}

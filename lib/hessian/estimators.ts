// Stochastic estimators from HVPs: Hutchinson and Hutch++ for tr H, E‖Hv‖²
// for ‖H‖_F², and stochastic Lanczos quadrature (SLQ) for spectral densities
// and tr f(H) (here Σ log(|λ| + δ), the damped log-determinant), each with
// its standard error.
import { native } from '../native/load.js';
import { ops } from '../ops.js';
import type { Tensor } from '../tensor.js';
import type { Work } from '../model/work.js';
import { lanczos, type LanczosMemoryOptions, type LanczosRun } from './lanczos.js';
import type { HessianOperator } from './operator.js';

export interface Estimate {
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
  if (!Number.isInteger(samples) || samples < min) throw new Error(`${what}: samples must be an integer ≥ ${min}, got ${samples}`);
}

/**
 * The mean of f(v, Hv) over `samples` random v, with its standard error; with
 * `block` > 1, H is applied to `block` vectors per pass. The vectors are drawn
 * one after another either way, so the estimate does not depend on `block`.
 */
function* sampleMean(
  op: HessianOperator,
  samples: number,
  seed: number,
  kind: 'rademacher' | 'gaussian',
  f: (v: Tensor, hv: Tensor) => number,
  block = 1,
): Work<Estimate> {
  if (!Number.isInteger(block) || block < 1) throw new Error(`block must be an integer ≥ 1 (vectors per HVP pass), got ${block}`);
  const gen = op.newGenerator(seed);
  const before = op.hvps;
  const K = Math.min(block, samples), P = op.model.numParams;
  const flatV = native().Tensor.zeros([K * P], op.model.dtype, op.model.device);
  const flatHv = native().Tensor.zeros([K * P], op.model.dtype, op.model.device);
  const rowsV = Array.from({ length: K }, (_, k) => flatV.narrow(k * P, P));
  const rowsHv = Array.from({ length: K }, (_, k) => flatHv.narrow(k * P, P));
  const xs: number[] = [];
  try {
    for (let i = 0; i < samples; i += K) {
      const k = Math.min(K, samples - i);
      for (let r = 0; r < k; r++) op.random(gen, kind, rowsV[r]);
      if (k === 1) yield* op.applyWork(rowsV[0], rowsHv[0]);
      else {
        const v = flatV.narrow(0, k * P).view([k, P]), hv = flatHv.narrow(0, k * P).view([k, P]);
        yield* op.applyWork(v, hv);
        v.dispose();
        hv.dispose();
      }
      for (let r = 0; r < k; r++) xs.push(f(rowsV[r], rowsHv[r]));
    }
  } finally {
    for (const t of [...rowsV, ...rowsHv, flatV, flatHv]) t.dispose();
  }
  const { mean, se } = meanAndError(xs);
  return { estimate: mean, standardError: se, samples, hvps: op.hvps - before };
}

/** Hutchinson: tr H = E[vᵀHv], v rademacher. */
export function* hutchinson(op: HessianOperator, samples: number, seed: number, block = 1): Work<Estimate> {
  checkSamples(samples, 2, 'trace');
  return yield* sampleMean(op, samples, seed, 'rademacher', (v, hv) => ops.dot(v, hv), block);
}

/**
 * Hutch++ (Meyer et al. 2021) with `samples` HVPs: a third sketch the top of
 * the spectrum exactly (tr QᵀHQ), a third applies H to it, and a third
 * estimates the trace of the deflated rest by Hutchinson.
 */
export function* hutchPlusPlus(op: HessianOperator, samples: number, seed: number): Work<Estimate> {
  checkSamples(samples, 6, "trace({method: 'hutch++'})");
  const gen = op.newGenerator(seed);
  const before = op.hvps;
  const m = Math.floor(samples / 3);
  const basis: Tensor[] = [];
  const tmp = op.zeros();
  try {
    for (let i = 0; i < m; i++) {
      const s = op.random(gen, 'rademacher');
      const q = (yield* op.applyWork(s, op.zeros()));
      s.dispose();
      for (let pass = 0; pass < 2; pass++) for (const b of basis) ops.axpy(q, -ops.dot(b, q), b);
      const n = ops.norm(q);
      if (n <= 1e-12) {
        q.dispose();
        continue;
      }
      ops.scale(q, 1 / n);
      basis.push(q);
    }
    let exact = 0;
    for (const q of basis) exact += ops.dot(q, (yield* op.applyWork(q, tmp)));
    const rest = samples - m - basis.length;
    const xs: number[] = [];
    const v = op.zeros();
    for (let i = 0; i < Math.max(rest, 2); i++) {
      op.random(gen, 'rademacher', v);
      for (const b of basis) ops.axpy(v, -ops.dot(b, v), b); // (I − QQᵀ)v
      xs.push(ops.dot(v, (yield* op.applyWork(v, tmp))));
    }
    v.dispose();
    const { mean, se } = meanAndError(xs);
    return { estimate: exact + mean, standardError: se, samples, hvps: op.hvps - before };
  } finally {
    tmp.dispose();
    for (const b of basis) b.dispose();
  }
}

/** ‖H‖_F² = E‖Hv‖², v ~ N(0, I). */
export function* frobeniusSquared(op: HessianOperator, samples: number, seed: number, block = 1): Work<Estimate> {
  checkSamples(samples, 2, 'frobeniusSquared');
  return yield* sampleMean(op, samples, seed, 'gaussian', (_v, hv) => ops.dot(hv, hv), block);
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

/** SLQ: `runs` Lanczos runs of `steps` steps from random unit vectors; nodes θ_j with weights y_j[0]². */
export function* quadrature(op: HessianOperator, steps: number, runs: number, seed: number, memory: LanczosMemoryOptions = {}): Work<Quadrature> {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be an integer ≥ 1, got ${steps}`);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`runs must be an integer ≥ 1, got ${runs}`);
  const gen = op.newGenerator(seed);
  const before = op.hvps;
  const out: QuadratureRun[] = [];
  let last: LanczosRun | undefined;
  for (let r = 0; r < runs; r++) {
    const v = op.random(gen, 'rademacher');
    try {
      last = yield* lanczos(op, v, steps, undefined, memory);
    } finally {
      v.dispose();
    }
    out.push({ nodes: last.ritz.map((x) => x.value), weights: last.ritz.map((x) => x.first * x.first) });
  }
  const { reorthogonalization, vectorBytes, note } = last!;
  return { runs: out, hvps: op.hvps - before, reorthogonalization, vectorBytes, ...(note ? { note } : {}) };
}

/** tr f(H) ≈ size · mean over runs of Σ_j w_j f(θ_j). */
export function* spectralSum(
  op: HessianOperator,
  f: (lambda: number) => number,
  steps: number,
  runs: number,
  seed: number,
  memory: LanczosMemoryOptions = {},
): Work<Estimate & Omit<Quadrature, 'runs' | 'hvps'>> {
  const q = yield* quadrature(op, steps, runs, seed, memory);
  const xs = q.runs.map((r) => op.size * r.nodes.reduce((s, t, j) => s + r.weights[j] * f(t), 0));
  const { mean, se } = meanAndError(xs);
  return { estimate: mean, standardError: se, samples: runs, hvps: q.hvps, reorthogonalization: q.reorthogonalization, vectorBytes: q.vectorBytes, ...(q.note ? { note: q.note } : {}) };
}

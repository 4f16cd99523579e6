// The standard set of Hessian probes, run one after another on one Hessian:
// the Trainer's per-epoch probes and `usam probe` both run it, so a probe of
// a saved run and the probes during training measure the same things the
// same way.
import type { Work } from '../model/work.js';
import type { Hessian } from './hessian.js';

export interface ProbeSuiteOptions {
  /** Hutchinson samples for the trace and for ‖H‖_F² */
  samples: number;
  /** one seed per estimator: no estimator reuses another's vectors */
  seeds: { trace: number; frobenius: number; eigen: number; density: number; logAbsDet: number };
  /** also λmin (Lanczos for both ends) */
  smallest?: boolean;
  /** relative residual tolerance of the eigenvalues */
  eigenTol?: number;
  eigenMaxIter?: number;
  /** Lanczos steps and runs of the SLQ density and of log|det| */
  slqSteps?: number;
  slqRuns?: number;
  gridPoints?: number;
  logAbsDetDamping?: number;
  /** told after each probe, with the HVPs it used */
  onProbe?: (name: ProbeName, hvps: number, seconds: number) => void;
}

export type ProbeName = 'trace' | 'frobenius' | 'eigenvalues' | 'density' | 'logAbsDet';

export interface ProbeSuiteResult {
  trace: number;
  traceStandardError: number;
  frobeniusSquared: number;
  frobeniusStandardError: number;
  maxEigenvalue: number;
  minEigenvalue?: number;
  eigenConverged: boolean;
  /** Σ log(|λ| + damping) by SLQ */
  logAbsDet: number;
  logAbsDetDamping: number;
  density: { grid: number[]; values: number[] };
  /** HVPs of all the probes */
  hvps: number;
}

export function* probeSuiteWork(h: Hessian, o: ProbeSuiteOptions): Work<ProbeSuiteResult> {
  const start = h.hvps;
  const timed = function* <T>(name: ProbeName, work: Work<T>): Work<T> {
    const before = h.hvps, t0 = Date.now();
    const r = yield* work;
    o.onProbe?.(name, h.hvps - before, (Date.now() - t0) / 1000);
    return r;
  };
  const trace = yield* timed('trace', h.traceWork({ samples: o.samples, seed: o.seeds.trace }));
  const frob = yield* timed('frobenius', h.frobeniusSquaredWork({ samples: o.samples, seed: o.seeds.frobenius }));
  const eig = yield* timed(
    'eigenvalues',
    h.eigenvaluesWork({ k: 1, which: o.smallest ? 'both' : 'largest', tol: o.eigenTol ?? 1e-3, maxIter: o.eigenMaxIter ?? 40, seed: o.seeds.eigen }),
  );
  const steps = o.slqSteps ?? 30, runs = o.slqRuns ?? 1;
  const d = yield* timed('density', h.densityWork({ steps, runs, seed: o.seeds.density, gridPoints: o.gridPoints ?? 120 }));
  const damping = o.logAbsDetDamping ?? 1e-3;
  const logDet = yield* timed('logAbsDet', h.logAbsDetWork({ damping, steps, runs, seed: o.seeds.logAbsDet }));
  return {
    trace: trace.estimate,
    traceStandardError: trace.standardError,
    frobeniusSquared: frob.estimate,
    frobeniusStandardError: frob.standardError,
    maxEigenvalue: eig.largest![0],
    ...(o.smallest ? { minEigenvalue: eig.smallest![0] } : {}),
    eigenConverged: eig.converged,
    logAbsDet: logDet.estimate,
    logAbsDetDamping: damping,
    density: { grid: d.grid, values: d.density },
    hvps: h.hvps - start,
  };
}

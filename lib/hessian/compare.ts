// Comparing the top (or bottom) eigenspaces of two curvature operators: the
// Hessian against the GGN, one operator at two checkpoints, a Hessian
// against a Fisher. Each operator's eigenpairs come from Lanczos with
// vectors; the result holds the values of both and the principal angles
// between the two k-dimensional eigenspaces.
import * as check from '../arguments.js';
import { runAsync, runSync, type Work } from '../model/work.js';
import type { EigenOptions } from './eigen.js';
import type { Tensor } from '../tensor/tensor.js';
import { Curvature } from './hessian.js';
import { type PrincipalAngles, principalAngles } from './subspace.js';

export type CompareOptions = Omit<EigenOptions, 'vectors' | 'which' | 'stop' | 'method'> & { which?: 'largest' | 'smallest' };

export interface SubspaceComparison extends PrincipalAngles {
  k: number;
  which: 'largest' | 'smallest';
  /** each operator's eigenvalues (largest first, or smallest first) and measured residuals ‖Ax − λx‖ */
  a: { values: number[]; residuals: number[] };
  b: { values: number[]; residuals: number[] };
  hvps: number;
}

function checkOperators(fn: string, a: unknown, b: unknown): void {
  check.instanceOf(fn, 'a', a, Curvature, 'a curvature operator (hessian(), ggn(), fisher())');
  check.instanceOf(fn, 'b', b, Curvature, 'a curvature operator (hessian(), ggn(), fisher())');
}

export function* compareSubspacesWork(a: Curvature, b: Curvature, o: CompareOptions = {}): Work<SubspaceComparison> {
  checkOperators('compareSubspaces', a, b);
  check.options('compareSubspaces', 'options', o);
  const which = o.which ?? 'largest';
  check.oneOf('compareSubspaces', 'options.which', which, ['largest', 'smallest'] as const);
  const k = o.k ?? 5;
  const before = a.hvps + b.hvps;
  const runs: { values: number[]; residuals: number[]; vectors: Tensor[] }[] = [];
  try {
    for (const op of [a, b]) {
      const r = yield* op.eigenvaluesWork({ ...o, k, which, vectors: true });
      runs.push({
        values: (which === 'largest' ? r.largest : r.smallest) ?? [],
        residuals: (which === 'largest' ? r.largestVectorResiduals : r.smallestVectorResiduals) ?? [],
        vectors: (which === 'largest' ? r.largestVectors : r.smallestVectors) ?? [],
      });
    }
    const angles = principalAngles(runs[0].vectors, runs[1].vectors);
    const strip = (r: (typeof runs)[number]) => ({ values: r.values, residuals: r.residuals });
    return { k, which, ...angles, a: strip(runs[0]), b: strip(runs[1]), hvps: a.hvps + b.hvps - before };
  } finally {
    for (const r of runs) for (const v of r.vectors) v.dispose();
  }
}

/** Principal angles between the top-k (or bottom-k) eigenspaces of two operators on one model's parameters. */
export function compareSubspaces(a: Curvature, b: Curvature, o: CompareOptions = {}): SubspaceComparison {
  return runSync(compareSubspacesWork(a, b, o));
}

/** compareSubspaces on libuv's thread pool. */
export async function compareSubspacesAsync(a: Curvature, b: Curvature, o: CompareOptions = {}): Promise<SubspaceComparison> {
  checkOperators('compareSubspacesAsync', a, b);
  return a.operator.model.exclusive(() => runAsync(compareSubspacesWork(a, b, o)));
}

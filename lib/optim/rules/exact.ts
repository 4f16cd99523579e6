// math.md §6: the exact (second-order) estimator. q_i = u_iᵀHu_i comes from
// an HVP, and its gradient ∇q_i (a third derivative) from autograd, so the
// objective is differentiated exactly, with no first-order leak. Both forms
// carry rho², so that lambda means what it means for the finite-difference
// rules (§2 folds the 1/rho² of d_i into lambda: their penalty gradient is
// lambda·phi'·psi'·(g_i − g0) ≈ lambda·phi'·psi'·½rho²·∇q_i):
//   (phi, psi):  F = L + lambda·rho²·phi(m),  m = (1/n)·Σ psi(q_i/2)
//                grad = g0 + lambda·rho²·phi'(m)·(1/n)·Σ psi'(q_i/2)·½∇q_i
//   Frobenius:   F = L + lambda·rho²·½·SampleVar(q_i/2)
//                (the second-order part of §3's L_i − L = rho²·q_i/2)
//                grad = g0 + lambda·rho²·(1/(n−1))·Σ (q_i/2 − mean)·½∇q_i
// `penalty` reports the measure's estimate as the finite-difference rules do
// (phi(m); ½·rho²·SampleVar(q/2) for Frobenius), so the two are comparable.
import { ops } from '../../tensor/ops.js';
import type { Work } from '../../model/work.js';
import type { ScalarFunction } from '../../sharpness/functions.js';
import { finite, type DirectionSampler, type RuleContext, type RuleResult } from './context.js';

export type ExactOptions =
  | { form: 'family'; psi: ScalarFunction; phi: ScalarFunction; lambda: number; samples: number }
  | { form: 'frobenius'; lambda: number; samples: number };

export function* exactStep(ctx: RuleContext, o: ExactOptions, sampler: DirectionSampler): Work<RuleResult> {
  const n = o.samples;
  const h = ctx.workspace.list('perturbed-grad-', n);
  const half: number[] = [];
  // the samples share one gradient graph per batch (it does not depend on u)
  yield* ctx.passes.keepingGradientGraphs(
    (function* () {
      for (let i = 0; i < n; i++) half.push((yield* ctx.passes.quadraticFormGradWork(sampler.next(ctx.model.numParams), h[i])) / 2);
    })(),
  );
  if (o.form === 'frobenius') {
    const mean = half.reduce((a, b) => a + b, 0) / n;
    const rho2 = ctx.rho * ctx.rho;
    const c = (o.lambda * rho2) / (n - 1);
    const gradSum = ops.combine(ctx.grad, [1, ...half.map((x) => 0.5 * c * (x - mean))], [ctx.g0, ...h]);
    const sampleVar = half.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1);
    // ‖H‖_F² = ½·Var(q) = 2·Var(q/2)
    return { sharpness: 2 * sampleVar, penalty: 0.5 * rho2 * sampleVar, gradSum };
  }
  const m = half.reduce((s, x) => s + finite(o.psi.f(x), 'psi', x, ctx.step), 0) / n;
  const penalty = finite(o.phi.f(m), 'phi', m, ctx.step);
  const outer = o.lambda * ctx.rho * ctx.rho * finite(o.phi.df(m), 'phi (derivative df)', m, ctx.step);
  const coefficients = half.map((x) => (0.5 * outer * finite(o.psi.df(x), 'psi (derivative df)', x, ctx.step)) / n);
  const gradSum = ops.combine(ctx.grad, [1, ...coefficients], [ctx.g0, ...h]);
  const sharpness = o.phi.f(half.reduce((s, x) => s + o.psi.f(2 * x), 0) / n);
  return { sharpness, penalty, gradSum };
}

// math.md §2: the zeroth-order objective of any (phi, psi, mu) (Trace-SAM,
// Det-SAM, custom), from n+1 forward-backward passes.
//   d_i = (L(w + rho·u_i) − L(w)) / rho²,  m = mean psi(d_i)
//   grad = g0 + lambda·phi'(m)·(1/n)·Σ psi'(d_i)·(g_i − g0)
import { ops } from '../../tensor/ops.js';
import type { Work } from '../../model/work.js';
import type { ScalarFunction } from '../../sharpness/functions.js';
import { curvatureSamples, finite, perturbedPasses, type DirectionSampler, type RuleContext, type RuleResult } from './context.js';

export interface ZerothOrderOptions {
  psi: ScalarFunction;
  phi: ScalarFunction;
  lambda: number;
  samples: number;
  antithetic: boolean;
}

export function* zerothOrderStep(ctx: RuleContext, o: ZerothOrderOptions, sampler: DirectionSampler): Work<RuleResult> {
  const n = o.samples;
  const passes = yield* perturbedPasses(ctx, sampler, n, o.antithetic);
  const { losses, grads: g } = passes;
  const d = losses.map((li) => (li - ctx.loss) / (ctx.rho * ctx.rho));
  const m = d.reduce((s, di) => s + finite(o.psi.f(di), 'psi', di, ctx.step), 0) / n;
  const penalty = finite(o.phi.f(m), 'phi', m, ctx.step);
  const outer = o.lambda * finite(o.phi.df(m), 'phi (derivative df)', m, ctx.step);
  const coefficients = d.map((di) => (outer * finite(o.psi.df(di), 'psi (derivative df)', di, ctx.step)) / n);
  // grad = (1 − Σc_i)·g0 + Σ c_i·g_i, one fused native call
  const gradSum = ops.combine(ctx.grad, [1 - coefficients.reduce((a, b) => a + b, 0), ...coefficients], [ctx.g0, ...g]);
  // The reading S(w) = phi(mean psi(q_i)) takes the curvature samples with
  // the first-order part removed (math.md §2a): the d_i of the rule keep it,
  // as the reference does, and are not samples of uᵀHu.
  const q = curvatureSamples(ctx, passes);
  const sharpness = o.phi.f(q.reduce((s, qi) => s + o.psi.f(qi), 0) / n);
  return { sharpness, penalty, gradSum, perturbationRounding: passes.rounding };
}

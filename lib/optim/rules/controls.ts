// The controls a reviewer asks for beside the paper's rules (docs/reproduction.md):
//   random weight perturbation (RWP): grad = (1/n)·Σ_i ∇L(w + rho·u_i), u_i ~ mu
//     (Trace-SAM at lambda 1 with one sample is exactly this: its g0
//     coefficient 1 − lambda is 0);
//   gradient-norm penalty (GNP): F = L + (lambda/2)·‖∇L‖², grad = g0 + lambda·H·g0
//     by one HVP: the leading term of finite-difference Frob-SAM's objective
//     (math.md §3), on its own.
import { ops } from '../../ops.js';
import type { Work } from '../../model/work.js';
import { curvatureSamples, perturbedPasses, type DirectionSampler, type RuleContext, type RuleResult } from './context.js';

export function* randomPerturbationStep(ctx: RuleContext, o: { samples: number; antithetic: boolean }, sampler: DirectionSampler): Work<RuleResult> {
  const n = o.samples;
  const passes = yield* perturbedPasses(ctx, sampler, n, o.antithetic);
  const gradSum = ops.combine(ctx.grad, passes.grads.map(() => 1 / n), passes.grads);
  // the reading: the mean loss increase under the random perturbation; the
  // penalty, the mean curvature sample (what Trace-SAM would read)
  const rise = passes.losses.reduce((s, l) => s + (l - ctx.loss), 0) / n;
  const q = curvatureSamples(ctx, passes);
  return { sharpness: rise, penalty: q.reduce((a, b) => a + b, 0) / n, gradSum };
}

export function* gradientNormPenaltyStep(ctx: RuleContext, o: { lambda: number }): Work<RuleResult> {
  const hg = ctx.workspace.get('hessian-times-gradient');
  yield* ctx.passes.hvpWork(ctx.g0, hg);
  const half = 0.5 * ops.dot(ctx.g0, ctx.g0);
  const gradSum = ops.combine(ctx.grad, [1, o.lambda], [ctx.g0, hg]);
  return { sharpness: half, penalty: half, gradSum };
}

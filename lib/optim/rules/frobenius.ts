// math.md §3: Frob-SAM, the variance form.
//   F = L + (lambda/rho²)·½·SampleVar_i[L_i]
//   grad = g0 + (lambda/rho²)·(1/(n−1))·Σ_i (L_i − L̄)·g_i
import type { Work } from '../../model/work.js';
import { ops } from '../../tensor/ops.js';
import { curvatureSamples, perturbedPasses, type DirectionSampler, type RuleContext, type RuleResult } from './context.js';

export function* frobeniusStep(
  ctx: RuleContext,
  o: { lambda: number; samples: number; antithetic: boolean },
  sampler: DirectionSampler,
): Work<RuleResult> {
  const n = o.samples;
  const rho2 = ctx.rho * ctx.rho;
  const passes = yield* perturbedPasses(ctx, sampler, n, o.antithetic);
  const { losses, grads: g } = passes;
  const mean = losses.reduce((a, b) => a + b, 0) / n;
  const c = o.lambda / rho2 / (n - 1);
  const gradSum = ops.combine(ctx.grad, [1, ...losses.map((l) => c * (l - mean))], [ctx.g0, ...g]);
  const sampleVar = losses.reduce((s, l) => s + (l - mean) ** 2, 0) / (n - 1);
  // The reading: ½·SampleVar(q_i) (math.md §2a), ‖H‖_F² for gaussian u on a
  // quadratic. Without the first-order term removed the variance of the L_i
  // is that of rho·gᵀu_i, 2‖g‖²/rho² after scaling. The penalty, the rule's
  // own objective, is the variance form of math.md §3 as it was.
  const q = curvatureSamples(ctx, passes);
  const qMean = q.reduce((a, b) => a + b, 0) / n;
  const qVar = q.reduce((s, x) => s + (x - qMean) ** 2, 0) / (n - 1);
  return { sharpness: 0.5 * qVar, penalty: (0.5 * sampleVar) / rho2, gradSum, perturbationRounding: passes.rounding };
}

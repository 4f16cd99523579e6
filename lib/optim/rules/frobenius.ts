// math.md §3: Frob-SAM, the variance form.
//   F = L + (lambda/rho²)·½·SampleVar_i[L_i]
//   grad = g0 + (lambda/rho²)·(1/(n−1))·Σ_i (L_i − L̄)·g_i
import type { Work } from '../../model/work.js';
import { ops } from '../../ops.js';
import { perturbedPasses, type DirectionSampler, type RuleContext, type RuleResult } from './context.js';

export function* frobeniusStep(
  ctx: RuleContext,
  o: { lambda: number; samples: number; antithetic: boolean },
  sampler: DirectionSampler,
): Work<RuleResult> {
  const n = o.samples;
  const rho2 = ctx.rho * ctx.rho;
  const { losses, grads: g } = yield* perturbedPasses(ctx, sampler, n, o.antithetic);
  const mean = losses.reduce((a, b) => a + b, 0) / n;
  const c = o.lambda / rho2 / (n - 1);
  const gradSum = ops.combine(ctx.grad, [1, ...losses.map((l) => c * (l - mean))], [ctx.g0, ...g]);
  const sampleVar = losses.reduce((s, l) => s + (l - mean) ** 2, 0) / (n - 1);
  // ‖H‖_F² = ½·Var(uᵀHu) with uᵀHu ≈ 2·(L_i − L)/rho²: ½·4·Var(L_i)/rho⁴
  return { sharpness: (2 * sampleVar) / (rho2 * rho2), penalty: (0.5 * sampleVar) / rho2, gradSum };
}

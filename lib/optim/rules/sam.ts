// math.md §4: SAM (and ASAM's step, lib/optim/rules/asam.ts).
//   SAM:  e = rho·g0 / (‖g0‖ + 1e-7)
//   ASAM: T = eta + |w|;  e = rho·T²⊙g0 / (‖T⊙g0‖ + 1e-7)
//   grad = ∇L(w + e)
import { z } from 'zod';
import type { Work } from '../../model/work.js';
import { ops } from '../../tensor/ops.js';
import { sharpnessFields } from '../../sharpness/config.js';
import type { Tensor } from '../../tensor/tensor.js';
import { gradientNorm, type RuleContext, type RuleResult } from './context.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';

export function* samStep(ctx: RuleContext, o: ({ adaptive: false } | { adaptive: true; eta: number }) & { scale?: Tensor }): Work<RuleResult> {
  if (!o.adaptive && !o.scale) {
    // e = s·g0: w + s·g0 in one fused pass, no vector e
    ctx.weights.shift(ctx.rho / (gradientNorm(ctx) + 1e-7), ctx.g0);
    return yield* perturbedGradient(ctx);
  }
  const e = ctx.workspace.get('direction');
  if (o.adaptive) {
    const t = ctx.workspace.get('asam-scale');
    ops.abs(t, ctx.weights.w);
    ops.addScalar(t, o.eta);
    ops.mul(e, t, ctx.g0); // T⊙g0
    const scale = ctx.rho / (ops.norm(e) + 1e-7);
    ops.mul(e, e, t); // T²⊙g0
    ops.scale(e, scale);
  } else {
    ops.copy(e, ctx.g0);
    ops.scale(e, ctx.rho / (gradientNorm(ctx) + 1e-7));
  }
  if (o.scale) ops.mul(e, e, o.scale); // parameter groups with their own rho
  ctx.weights.shift(1, e); // w + e
  return yield* perturbedGradient(ctx);
}

// grad = ∇L(w + e), with the pass's own sum of it (the step's NaN/Inf check)
function* perturbedGradient(ctx: RuleContext): Work<RuleResult> {
  const perturbedLoss = yield* ctx.passes.lossAndGradWork(ctx.grad, ctx.statsEveryPass);
  const sharpness = perturbedLoss - ctx.loss;
  return { sharpness, penalty: sharpness, gradSum: ctx.passes.gradSum ?? undefined };
}

const schema = z.object({ kind: z.literal('sam'), rho: sharpnessFields.rho }).strict();
declare module './registry.js' {
  interface RuleSchemas {
    sam: typeof schema;
  }
}

export const samRule = defineRule({
  kind: 'sam',
  summary: 'SAM: the gradient at w + e, e = rho·g/‖g‖ (math.md §4)',
  schema,
  radius: true,
  groupRho: true,
  reading: () => ({ short: 'L(w+e)−L(w)', name: 'SAM: L(w + e) − L(w), ‖e‖ = ρ', unit: 'loss (nats) at the run’s ρ: SAM’s own measure, not a Hessian one', kind: 'estimate' }),
  measure: 'maxEigenvalue',
  training: { default: { rho: 0.05 } },
  controls: { default: ['sgd-2x'] },
  sweep: { default: [{ rho: 0.05 }, { rho: 0.1 }] },
  build: (c, env) => ({ step: (ctx) => samStep(ctx, { adaptive: false, scale: env.rhoScale() }) }),
});

/** The SAM preset: `sam({ rho: 0.05 })`. */
export const sam = configBuilder<typeof schema>('sam', 'sam');

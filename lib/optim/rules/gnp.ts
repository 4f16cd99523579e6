// A control a reviewer asks for beside the paper's rules
// (docs/reproduction.md): the gradient-norm penalty (GNP),
//   F = L + (lambda/2)·‖∇L‖²,  grad = g0 + lambda·H·g0 by one HVP:
// the leading term of finite-difference Frob-SAM's objective (math.md §3),
// on its own.
import { z } from 'zod';
import type { Work } from '../../model/work.js';
import { ops } from '../../tensor/ops.js';
import type { RuleContext, RuleResult } from './context.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';

export function* gradientNormPenaltyStep(ctx: RuleContext, o: { lambda: number }): Work<RuleResult> {
  const hg = ctx.workspace.get('hessian-times-gradient');
  yield* ctx.passes.hvpWork(ctx.g0, hg);
  const half = 0.5 * ops.dot(ctx.g0, ctx.g0);
  const gradSum = ops.combine(ctx.grad, [1, o.lambda], [ctx.g0, hg]);
  return { sharpness: half, penalty: half, gradSum };
}

const schema = z.object({ kind: z.literal('gnp'), lambda: z.number({ message: 'lambda must be a number' }).nonnegative('lambda must be ≥ 0 (the weight of ½‖∇L‖²)') }).strict();
declare module './registry.js' {
  interface RuleSchemas {
    gnp: typeof schema;
  }
}

export const gnpRule = defineRule({
  kind: 'gnp',
  summary: 'control: the gradient-norm penalty (lambda/2)·‖∇L‖², by one HVP',
  schema,
  // no radius: its steps are sharpness-aware whatever the rho schedule says
  radius: false,
  reading: () => ({ short: '½‖g‖²', name: 'GNP: ½‖∇L(w)‖²', unit: 'the penalised quantity, exact; loss² / weight²', kind: 'estimate' }),
  // at finite-difference Frob-SAM's lambda, the weight of the term it isolates
  follows: { rule: 'frob-sam', fields: ['lambda'] },
  build: (c) => ({ step: (ctx) => gradientNormPenaltyStep(ctx, { lambda: c.lambda }) }),
});

/** The GNP control: `gradientNormPenalty({ lambda: 0.003 })`. */
export const gradientNormPenalty = configBuilder<typeof schema>('gnp', 'gradientNormPenalty');

// A control a reviewer asks for beside the paper's rules
// (docs/reproduction.md): random weight perturbation (RWP),
//   grad = (1/n)·Σ_i ∇L(w + rho·u_i), u_i ~ mu.
// Trace-SAM at lambda 1 with one sample is exactly this: its g0 coefficient
// 1 − lambda is 0.
import { z } from 'zod';
import type { Work } from '../../model/work.js';
import { ops } from '../../tensor/ops.js';
import { sharpnessFields } from '../../sharpness/config.js';
import { curvatureSamples, perturbedPasses, type DirectionSampler, type RuleContext, type RuleResult } from './context.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';
import { directionSampler } from './universal-class.js';

export function* randomPerturbationStep(ctx: RuleContext, o: { samples: number; antithetic: boolean }, sampler: DirectionSampler): Work<RuleResult> {
  const n = o.samples;
  const passes = yield* perturbedPasses(ctx, sampler, n, o.antithetic, false);
  const gradSum = ops.combine(ctx.grad, passes.grads.map(() => 1 / n), passes.grads);
  // the reading: the mean loss increase under the random perturbation; the
  // penalty, the mean curvature sample (what Trace-SAM would read)
  const rise = passes.losses.reduce((s, l) => s + (l - ctx.loss), 0) / n;
  const q = curvatureSamples(ctx, passes);
  return { sharpness: rise, penalty: q.reduce((a, b) => a + b, 0) / n, gradSum };
}

const schema = z
  .object({
    kind: z.literal('rwp'),
    rho: sharpnessFields.rho,
    samples: sharpnessFields.samples.default(1),
    directions: sharpnessFields.directions,
    mu: sharpnessFields.mu,
    halfCube: sharpnessFields.halfCube,
  })
  .strict();
declare module './registry.js' {
  interface RuleSchemas {
    rwp: typeof schema;
  }
}

export const rwpRule = defineRule({
  kind: 'rwp',
  summary: 'control: random weight perturbation, the mean gradient at w + rho·u_i',
  schema,
  radius: true,
  reading: () => ({ short: 'L(w+ρu)−L(w)', name: 'RWP: L(w + ρu) − L(w), random u', unit: 'loss (nats): the mean rise under the random perturbation at the run’s ρ', kind: 'estimate' }),
  // at Trace-SAM's radius, which it controls
  training: { default: { samples: 1 } },
  follows: { rule: 'trace-sam', fields: ['rho'] },
  build: (c, env) => {
    const sampler = directionSampler(env, c.mu ?? 'gaussian', c.halfCube);
    const antithetic = c.directions === 'antithetic';
    return { step: (ctx) => randomPerturbationStep(ctx, { samples: c.samples, antithetic }, sampler), sampler, drawsPerStep: antithetic ? c.samples / 2 : c.samples };
  },
});

/** The RWP control: `randomPerturbation({ rho: 0.015 })`. */
export const randomPerturbation = configBuilder<typeof schema>('rwp', 'randomPerturbation');

// math.md §4: ASAM, SAM's step with the adaptive perturbation
// e = rho·T²⊙g0 / ‖T⊙g0‖, T = eta + |w| (lib/optim/rules/sam.ts).
import { z } from 'zod';
import { sharpnessFields } from '../../sharpness/config.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';
import { samStep } from './sam.js';

const schema = z.object({ kind: z.literal('asam'), rho: sharpnessFields.rho, eta: z.number().nonnegative().default(0.01) }).strict();
declare module './registry.js' {
  interface RuleSchemas {
    asam: typeof schema;
  }
}

export const asamRule = defineRule({
  kind: 'asam',
  summary: 'ASAM: SAM with a perturbation scaled by |w| + eta per coordinate (math.md §4)',
  schema,
  radius: true,
  groupRho: true,
  reading: () => ({ short: 'L(w+e)−L(w)', name: 'ASAM: L(w + e) − L(w), adaptive e', unit: 'loss (nats) at the run’s ρ, η: ASAM’s own measure, not a Hessian one', kind: 'estimate' }),
  measure: 'maxEigenvalue',
  training: { default: { rho: 0.5, eta: 0.01 } },
  controls: { default: ['sgd-2x'] },
  sweep: { default: [{ rho: 0.5 }, { rho: 1 }] },
  build: (c, env) => ({ step: (ctx) => samStep(ctx, { adaptive: true, eta: c.eta, scale: env.rhoScale() }) }),
});

/** The ASAM preset: `asam({ rho: 0.5, eta: 0.01 })`. */
export const asam = configBuilder<typeof schema>('asam', 'asam');

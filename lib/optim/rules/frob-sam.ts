// Frob-SAM (math.md §3): the variance form, F = L + (lambda/rho²)·½·SampleVar_i L(w + rho·u_i),
// gaussian u; the measure is ‖H‖_F² = ½·Var(uᵀHu).
import { z } from 'zod';
import { sharpnessFields } from '../../sharpness/config.js';
import { FD_SAMPLE } from '../../sharpness/reading.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';
import { buildUniversalClass, universalClassFields } from './universal-class.js';

const schema = z
  .object({
    kind: z.literal('frob-sam'),
    ...universalClassFields,
    lambda: sharpnessFields.penaltyWeight,
    samples: z.number().int().min(2, 'Frob-SAM needs samples ≥ 2 (it estimates a variance); set samples to 2 or more').default(2),
  })
  .strict();
declare module './registry.js' {
  interface RuleSchemas {
    'frob-sam': typeof schema;
  }
}

export const frobSamRule = defineRule({
  kind: 'frob-sam',
  summary: 'Frob-SAM: penalises ‖H‖_F² by the variance of the perturbed losses (math.md §3)',
  schema,
  radius: true,
  reading: (estimator) =>
    estimator === 'exact'
      ? { short: '‖H‖_F² ≈', name: 'Frob-SAM (exact): ‖H‖_F² estimate', unit: '½·SampleVar(uᵀHu) by HVPs, gaussian u; loss² / weight⁴', kind: 'estimate' }
      : { short: 'fd Frob signal', name: 'Frob-SAM: finite-difference ½·Var(q) at radius ρ', unit: `½·SampleVar of ${FD_SAMPLE}; → ‖H‖_F² as ρ → 0 on a smooth loss (4× the probe at the defaults)`, kind: 'signal' },
  measure: 'frobeniusSquared',
  // The finite-difference objective is dominated by a (lambda/2)·‖g‖² term at
  // every usable rho (math §3); the exact one is lambda·rho²/4·‖H‖_F² with no
  // ‖g‖² term (§6): their lambdas differ by orders of magnitude.
  training: { default: { rho: 0.005, lambda: 0.003, samples: 2 }, exact: { rho: 0.007, lambda: 1, samples: 2 } },
  controls: { default: ['sgd-3x', 'gnp'], exact: ['sgd-3x'] },
  sweep: {
    default: [
      { rho: 0.005, lambda: 0.003 },
      { rho: 0.005, lambda: 0.005 },
      { rho: 0.005, lambda: 0.01 },
    ],
    exact: [
      { rho: 0.007, lambda: 1 },
      { rho: 0.01, lambda: 1 },
      { rho: 0.014, lambda: 1 },
    ],
  },
  build: (c, env) => buildUniversalClass(c, env, { form: 'frobenius', mu: c.mu ?? 'gaussian' }),
});

/** The Frob-SAM preset: `frobSam({ rho: 0.005, lambda: 0.003, samples: 2 })`. */
export const frobSam = configBuilder<typeof schema>('frob-sam', 'frobSam');

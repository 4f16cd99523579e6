// Trace-SAM (math.md §1): phi = psi = identity, mu gaussian; the measure is
// E uᵀHu = tr H. Its objective is L + lambda·(mean L(w + rho·u_i) − L)/rho².
import { z } from 'zod';
import { sharpnessFields } from '../../sharpness/config.js';
import { scalarPresets } from '../../sharpness/functions.js';
import { FD_SAMPLE } from '../../sharpness/reading.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';
import { buildUniversalClass, universalClassFields } from './universal-class.js';

const schema = z
  .object({
    kind: z.literal('trace-sam'),
    ...universalClassFields,
    lambda: sharpnessFields.penaltyWeight,
    samples: sharpnessFields.samples.default(1),
  })
  .strict();
declare module './registry.js' {
  interface RuleSchemas {
    'trace-sam': typeof schema;
  }
}

export const traceSamRule = defineRule({
  kind: 'trace-sam',
  summary: 'Trace-SAM: penalises tr H (phi = psi = identity, gaussian u; math.md §1)',
  schema,
  radius: true,
  reading: (estimator) =>
    estimator === 'exact'
      ? { short: 'tr H ≈', name: 'Trace-SAM (exact): tr H estimate', unit: 'mean of uᵀHu by HVPs, gaussian u; loss / weight²', kind: 'estimate' }
      : { short: 'fd curvature', name: 'Trace-SAM: finite-difference curvature at radius ρ', unit: `mean of ${FD_SAMPLE}; → tr H as ρ → 0 on a smooth loss (not on ReLU networks)`, kind: 'signal' },
  measure: 'trace',
  // usam reproduce --sweep on the default MLP (docs/reproduction.md): the
  // perturbation has norm ≈ rho·√P, so rho is small for ~1e5 parameters; the
  // penalty is ≈ λρ²/2·tr H, ρ² sets its weight and λ > 1 only adds gradient noise
  training: { default: { rho: 0.015, lambda: 1, samples: 1 }, exact: { rho: 0.015, lambda: 1, samples: 1 } },
  controls: { default: ['sgd-2x', 'rwp'] },
  sweep: { default: [{ rho: 0.015, lambda: 1 }, { rho: 0.0175, lambda: 1 }, { rho: 0.02, lambda: 1 }] },
  build: (c, env) => buildUniversalClass(c, env, { form: 'family', psi: scalarPresets.identity, phi: scalarPresets.identity, mu: c.mu ?? 'gaussian' }),
});

/** The Trace-SAM preset: `traceSam({ rho: 0.015, lambda: 1 })`. */
export const traceSam = configBuilder<typeof schema>('trace-sam', 'traceSam');

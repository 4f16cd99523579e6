// Det-SAM (math.md §1): psi(x) = exp(−x/2), phi(x) = x^−2, mu uniform on the
// cube [−a, a]^P; the measure is (E exp(−uᵀHu/2))⁻², which tends to
// |det(I + H)|-like growth for large a and to 1 + (a²/3)·tr H for small a.
import { z } from 'zod';
import { DEFAULT_HALF_CUBE, sharpnessFields } from '../../sharpness/config.js';
import { scalarPresets } from '../../sharpness/functions.js';
import { FD_SAMPLE } from '../../sharpness/reading.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';
import { buildUniversalClass, universalClassFields } from './universal-class.js';

const schema = z
  .object({
    kind: z.literal('det-sam'),
    ...universalClassFields,
    lambda: sharpnessFields.penaltyWeight,
    samples: sharpnessFields.samples.default(1),
    halfCube: sharpnessFields.halfCube.default(DEFAULT_HALF_CUBE),
  })
  .strict();
declare module './registry.js' {
  interface RuleSchemas {
    'det-sam': typeof schema;
  }
}

export const detSamRule = defineRule({
  kind: 'det-sam',
  summary: 'Det-SAM: psi = exp(−x/2), phi = x^−2, u on the cube [−a, a]^P (math.md §1)',
  schema,
  radius: true,
  reading: (estimator) =>
    estimator === 'exact'
      ? { short: 'Det measure ≈', name: 'Det-SAM (exact): (E exp(−uᵀHu/2))⁻², u on [−a, a]^P', unit: 'the Det-SAM measure at its cube, by HVPs; ≈ 1 + (a²/3)·tr H for small a; dimensionless', kind: 'estimate' }
      : { short: 'fd Det signal', name: 'Det-SAM: finite-difference (mean exp(−q/2))⁻² at radius ρ', unit: `${FD_SAMPLE}, u on [−a, a]^P; → the Det-SAM measure as ρ → 0 on a smooth loss`, kind: 'signal' },
  measure: 'logAbsDet',
  // ρ = 1: the perturbation is the cube's u itself; a small cube makes the measure ≈ 1 + (a²/3)·tr H (math §1)
  training: { default: { rho: 1, lambda: 1, samples: 1, halfCube: DEFAULT_HALF_CUBE }, exact: { rho: 1, lambda: 1, samples: 1, halfCube: DEFAULT_HALF_CUBE } },
  controls: { default: ['sgd-2x', 'rwp'] },
  sweep: { default: [{ lambda: 1, halfCube: 0.01 }, { lambda: 1, halfCube: 0.02 }] },
  build: (c, env) => buildUniversalClass(c, env, { form: 'family', psi: scalarPresets['exp-neg-half'], phi: scalarPresets['inverse-square'], mu: c.mu ?? 'cube' }),
});

/** The Det-SAM preset: `detSam({ rho: 1, lambda: 1, halfCube: 0.02 })`. */
export const detSam = configBuilder<typeof schema>('det-sam', 'detSam');

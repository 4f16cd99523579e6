// The universal class itself (math.md §1-2): any phi, psi (presets or
// functions with their derivatives) and mu. Not offered by `usam train`,
// whose flags cannot carry functions.
import { z } from 'zod';
import { scalar, sharpnessFields } from '../../sharpness/config.js';
import { scalarPresets } from '../../sharpness/functions.js';
import { FD_SAMPLE } from '../../sharpness/reading.js';
import { configBuilder, defineRule, type SharpnessConfigInput } from './registry.js';
import { buildUniversalClass, universalClassFields } from './universal-class.js';

const schema = z.object({ kind: z.literal('universal'), ...universalClassFields, samples: sharpnessFields.samples.default(1), psi: scalar('psi'), phi: scalar('phi') }).strict();
declare module './registry.js' {
  interface RuleSchemas {
    universal: typeof schema;
  }
}

export const universalRule = defineRule({
  kind: 'universal',
  summary: 'the universal class: phi(E psi(uᵀHu)) for any phi, psi, mu (math.md §1-2)',
  schema,
  radius: true,
  reading: (estimator) =>
    estimator === 'exact'
      ? { short: 'S ≈', name: 'universal (exact): φ(mean ψ(uᵀHu))', unit: 'the measure by HVPs', kind: 'estimate' }
      : { short: 'fd S signal', name: 'universal: finite-difference φ(mean ψ(q)) at radius ρ', unit: `${FD_SAMPLE}; → φ(E ψ(uᵀHu)) as ρ → 0 on a smooth loss`, kind: 'signal' },
  build: (c, env) =>
    buildUniversalClass(c, env, {
      form: 'family',
      psi: typeof c.psi === 'string' ? scalarPresets[c.psi] : c.psi,
      phi: typeof c.phi === 'string' ? scalarPresets[c.phi] : c.phi,
      mu: c.mu ?? 'gaussian',
    }),
});

/** A member of the universal class: `universal({ psi: 'identity', phi: 'square', rho, lambda })`. */
export const universal = configBuilder<typeof schema>('universal', 'universal');

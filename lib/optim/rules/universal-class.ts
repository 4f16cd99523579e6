// What the rules of the universal class (math.md §1-3, §6: Trace-SAM,
// Det-SAM, Frob-SAM and any (phi, psi, mu)) share: their config fields and
// how a config becomes a step, by finite differences (n + 1
// forward-backward passes) or by the exact estimator (HVPs).
import { ConfigError } from '../../errors.js';
import { sharpnessFields, type UserSampler } from '../../sharpness/config.js';
import type { ScalarFunction } from '../../sharpness/functions.js';
import { DirectionSampler } from './context.js';
import { exactStep } from './exact.js';
import { frobeniusStep } from './frobenius.js';
import type { BuiltRule, RuleEnv } from './registry.js';
import { zerothOrderStep } from './zeroth-order.js';

/** The fields of a universal-class config (samples' default is each rule's own). */
export const universalClassFields = {
  rho: sharpnessFields.rho,
  lambda: sharpnessFields.lambda,
  estimator: sharpnessFields.estimator,
  directions: sharpnessFields.directions,
  halfCube: sharpnessFields.halfCube,
  mu: sharpnessFields.mu,
};

type Mu = 'gaussian' | 'rademacher' | 'sphere' | 'cube' | UserSampler;

/** A parsed universal-class config, as far as building its step needs it. */
interface UniversalClassConfig {
  lambda: number;
  samples: number;
  estimator: 'finite-difference' | 'exact';
  directions: 'independent' | 'antithetic';
  halfCube?: number;
  mu?: Mu;
}

/** The objective: the (phi, psi) family of §2, or the variance form of §3 (Frob-SAM). */
export type UniversalForm = { form: 'family'; psi: ScalarFunction; phi: ScalarFunction; mu: Mu } | { form: 'frobenius'; mu: Mu };

/** The directions' sampler of a rule that draws u ~ mu. */
export function directionSampler(env: RuleEnv, mu: Mu, halfCube: number | undefined): DirectionSampler {
  return new DirectionSampler(mu, env.generator, halfCube, () => env.model.zerosLikeParams());
}

export function buildUniversalClass(c: UniversalClassConfig, env: RuleEnv, f: UniversalForm): BuiltRule {
  const sampler = directionSampler(env, f.mu, c.halfCube);
  const antithetic = c.directions === 'antithetic';
  if (c.estimator === 'exact') {
    if (env.statsEveryPass)
      throw new ConfigError(
        'optimizer options',
        "batchNorm: 'every-pass' moves the statistics at each perturbed forward-backward pass, and the exact estimator has none (its passes are HVPs at w); use batchNorm 'once' with it",
      );
    // the exact estimator draws every direction (antithetic pairs are for finite differences)
    const o = f.form === 'frobenius' ? ({ form: 'frobenius', lambda: c.lambda, samples: c.samples } as const) : ({ form: 'family', psi: f.psi, phi: f.phi, lambda: c.lambda, samples: c.samples } as const);
    return { step: (ctx) => exactStep(ctx, o, sampler), sampler, drawsPerStep: c.samples };
  }
  const drawsPerStep = antithetic ? c.samples / 2 : c.samples;
  if (f.form === 'frobenius') return { step: (ctx) => frobeniusStep(ctx, { lambda: c.lambda, samples: c.samples, antithetic }, sampler), sampler, drawsPerStep };
  const o = { psi: f.psi, phi: f.phi, lambda: c.lambda, samples: c.samples, antithetic };
  return { step: (ctx) => zerothOrderStep(ctx, o, sampler), sampler, drawsPerStep };
}

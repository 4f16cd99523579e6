// The fields of sharpness-aware configs (zod), shared by the rules' schemas
// (lib/optim/rules/<kind>.ts, one per rule): the (phi, psi, mu) family of
// math.md §1-3, the radius, the weight, the samples and the estimator (§6).
import { z } from 'zod';
import { scalarPresets, type ScalarFunction } from './functions.js';

const presetNames = Object.keys(scalarPresets).join(', ');

/** psi or phi: a preset name, or a user function given with its derivative. */
export const scalar = (field: 'psi' | 'phi') =>
  z
    .custom<keyof typeof scalarPresets | { f: (x: number) => number; df?: (x: number) => number }>(() => true)
    .superRefine((v, ctx) => {
      if (typeof v === 'string') {
        if (!(v in scalarPresets)) ctx.addIssue({ code: 'custom', message: `unknown ${field} preset '${v}'; use one of ${presetNames}, or { f, df }` });
        return;
      }
      const o = v as Partial<ScalarFunction> | null;
      if (typeof o !== 'object' || o === null || typeof o.f !== 'function') {
        ctx.addIssue({ code: 'custom', message: `${field} must be a preset (${presetNames}) or { f: (x) => number, df: (x) => number }` });
        return;
      }
      if (typeof o.df !== 'function')
        ctx.addIssue({ code: 'custom', path: ['df'], message: `${field}.df is missing: give the derivative of ${field} too, as { f: (x) => ..., df: (x) => ... }` });
      for (const probe of [0, 1]) {
        const value = o.f(probe);
        if (typeof value !== 'number')
          ctx.addIssue({ code: 'custom', path: ['f'], message: `${field}.f(${probe}) returned ${typeof value}, not a number` });
      }
    })
    .transform((v) => v as keyof typeof scalarPresets | ScalarFunction);

/** A user sampler: returns one direction u (a flat vector of P numbers) per call. */
export type UserSampler = (numParams: number) => ArrayLike<number>;
const userSampler = z.custom<UserSampler>((v) => typeof v === 'function', { message: 'must be a function (numParams) => flat vector' });

export const measure = z.union([z.enum(['gaussian', 'rademacher', 'sphere', 'cube']), userSampler]);

/**
 * Det-SAM's cube [−a, a]^P: one default for the preset, training and the
 * probes. 0.02 is the largest a the sweep on the default MLP kept within
 * 0.5 pt of SGD (docs/reproduction.md); with rho 1 the perturbation has norm
 * a·√(P/3) ≈ 3.7 for its 101,770 parameters. The reference's argparse
 * default is 1 and its README's ResNet-18 command uses 0.01.
 */
export const DEFAULT_HALF_CUBE = 0.02;

const positive = (what: string) => z.number({ message: `${what} must be a number` }).positive(`${what} must be > 0`);
/** The fields the rules' schemas share, with one message each. */
export const sharpnessFields = {
  rho: positive('rho'),
  lambda: z.number({ message: 'lambda must be a finite number' }).finite(),
  /** the weight of a penalty (Trace-, Det-, Frob-SAM): a negative one would reward the measure; the universal class takes any lambda */
  penaltyWeight: z
    .number({ message: 'lambda must be a finite number' })
    .finite()
    .nonnegative('lambda must be ≥ 0: it weighs the penalty, and a negative one would reward sharpness (the universal class takes any lambda)'),
  samples: z.number().int().positive('samples must be an integer ≥ 1'),
  estimator: z.enum(['finite-difference', 'exact']).default('finite-difference'),
  directions: z.enum(['independent', 'antithetic']).default('independent'),
  halfCube: positive('halfCube').optional(),
  mu: measure.optional(),
};

// Sharpness-aware optimizer configs (zod): the (phi, psi, mu) family of
// math.md §1-3 with its presets, SAM and ASAM (§4), and the estimator (§6).
import { z } from 'zod';
import { formatIssues } from '../model/spec.js';
import { scalarPresets, type ScalarFunction } from './functions.js';

const presetNames = Object.keys(scalarPresets).join(', ');

/** psi or phi: a preset name, or a user function given with its derivative. */
const scalar = (field: 'psi' | 'phi') =>
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
const common = {
  rho: positive('rho'),
  lambda: z.number({ message: 'lambda must be a finite number' }).finite(),
  samples: z.number().int().positive('samples must be an integer ≥ 1'),
  estimator: z.enum(['finite-difference', 'exact']).default('finite-difference'),
  directions: z.enum(['independent', 'antithetic']).default('independent'),
  halfCube: positive('halfCube').optional(),
  mu: measure.optional(),
};

export const sharpnessConfig = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('sam'), rho: common.rho }).strict(),
    z.object({ kind: z.literal('asam'), rho: common.rho, eta: z.number().nonnegative().default(0.01) }).strict(),
    z.object({ kind: z.literal('trace-sam'), ...common, samples: common.samples.default(1) }).strict(),
    z.object({ kind: z.literal('det-sam'), ...common, samples: common.samples.default(1), halfCube: common.halfCube.default(DEFAULT_HALF_CUBE) }).strict(),
    z
      .object({ kind: z.literal('frob-sam'), ...common, samples: z.number().int().min(2, 'Frob-SAM needs samples ≥ 2 (it estimates a variance); set samples to 2 or more').default(2) })
      .strict(),
    // controls (docs/reproduction.md): random weight perturbation at radius rho, and an explicit gradient-norm penalty
    z.object({ kind: z.literal('rwp'), rho: common.rho, samples: common.samples.default(1), directions: common.directions, mu: measure.optional(), halfCube: common.halfCube }).strict(),
    z.object({ kind: z.literal('gnp'), lambda: z.number({ message: 'lambda must be a number' }).nonnegative('lambda must be ≥ 0 (the weight of ½‖∇L‖²)') }).strict(),
    z.object({ kind: z.literal('universal'), ...common, samples: common.samples.default(1), psi: scalar('psi'), phi: scalar('phi') }).strict(),
  ])
  .superRefine((c, ctx) => {
    if ('directions' in c && c.directions === 'antithetic' && c.samples % 2 !== 0)
      ctx.addIssue({ code: 'custom', path: ['samples'], message: `antithetic directions come in ± pairs: samples must be even, got ${c.samples}` });
    if ('mu' in c && c.mu === 'cube' && c.kind !== 'det-sam' && c.halfCube === undefined)
      ctx.addIssue({ code: 'custom', path: ['halfCube'], message: 'mu "cube" needs halfCube (the cube is [-halfCube, halfCube]^P)' });
  });

export type SharpnessConfigInput = z.input<typeof sharpnessConfig>;
export type SharpnessConfig = z.output<typeof sharpnessConfig>;

export function parseSharpness(config: unknown, root = 'sharpness'): SharpnessConfig {
  const r = sharpnessConfig.safeParse(config);
  if (!r.success) throw new Error(`invalid ${root} config:\n${formatIssues(r.error, root)}`);
  return r.data;
}

/** The (phi, psi, mu) of a zeroth-order config (math.md §1 table). */
export function familyOf(c: Extract<SharpnessConfig, { kind: 'trace-sam' | 'det-sam' | 'universal' }>) {
  switch (c.kind) {
    case 'trace-sam':
      return { psi: scalarPresets.identity, phi: scalarPresets.identity, mu: c.mu ?? 'gaussian' };
    case 'det-sam':
      return { psi: scalarPresets['exp-neg-half'], phi: scalarPresets['inverse-square'], mu: c.mu ?? 'cube' };
    case 'universal':
      return {
        psi: typeof c.psi === 'string' ? scalarPresets[c.psi] : c.psi,
        phi: typeof c.phi === 'string' ? scalarPresets[c.phi] : c.phi,
        mu: c.mu ?? 'gaussian',
      };
  }
}

type Without<T, K extends string> = Omit<T, K | 'kind'>;
type Of<K extends SharpnessConfig['kind']> = Without<Extract<SharpnessConfigInput, { kind: K }>, never>;

/** Presets (math.md §1-4). */
export const sam = (o: Of<'sam'>): SharpnessConfigInput => ({ kind: 'sam', ...o });
export const asam = (o: Of<'asam'>): SharpnessConfigInput => ({ kind: 'asam', ...o });
export const traceSam = (o: Of<'trace-sam'>): SharpnessConfigInput => ({ kind: 'trace-sam', ...o });
export const detSam = (o: Of<'det-sam'>): SharpnessConfigInput => ({ kind: 'det-sam', ...o });
export const frobSam = (o: Of<'frob-sam'>): SharpnessConfigInput => ({ kind: 'frob-sam', ...o });
export const universal = (o: Of<'universal'>): SharpnessConfigInput => ({ kind: 'universal', ...o });
/** Controls: random weight perturbation, grad = mean ∇L(w + rho·u_i); a gradient-norm penalty, F = L + (lambda/2)·‖∇L‖². */
export const randomPerturbation = (o: Of<'rwp'>): SharpnessConfigInput => ({ kind: 'rwp', ...o });
export const gradientNormPenalty = (o: Of<'gnp'>): SharpnessConfigInput => ({ kind: 'gnp', ...o });

// clipGradNorm against its definition (torch.nn.utils.clip_grad_norm_:
// g ← g · min(1, maxNorm / (‖g‖ + 1e-6))), applied once to each rule's
// final gradient, before weight decay. With an SGD base of lr 1 and no
// momentum, a step moves w by −(g + wd·w), so the unclipped step of a twin
// optimizer (same model seed, same direction seed) gives g exactly, and the
// clipped step must move w by −(c·g + wd·w). float64.
import { describe, expect, it } from 'vitest';
import { CLIP_EPSILON } from '../../lib/optim/clip.js';
import { Model, mlp, noWeightDecay, Optimizer, type OptimizerOptions, type ParamGroupInput, type SharpnessConfigInput } from '../../lib/index.js';
import { randomBatch } from '../helpers.js';

const spec = mlp({ layers: [6, 8, 3], activation: 'tanh' });
const wd = 0.01;
const base = { kind: 'sgd', lr: 1, momentum: 0, weightDecay: wd } as const;

/** w before the step, and w after one step of the optimizer made with `options`. */
function oneStep(options: Partial<OptimizerOptions>, groups?: (m: Model) => ParamGroupInput) {
  const model = new Model(spec, { dtype: 'float64', seed: 4 });
  const opt = new Optimizer(model, { base, seed: 9, ...options, ...(groups ? { groups: [groups(model)] } : {}) });
  const { x, y } = randomBatch([16, 6], 3, 2);
  const before = model.getParams();
  const r = opt.step(x, y);
  const after = model.getParams();
  opt.dispose();
  model.dispose();
  return { before, after, r };
}

/** g from an unclipped step: Δw = −(g + wd·w). */
const gradientOf = (s: { before: ArrayLike<number>; after: ArrayLike<number> }, decay: ArrayLike<number>) =>
  Float64Array.from(s.before, (w, i) => -(s.after[i] - w) - decay[i] * w);
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((a, b) => a + b * b, 0));

const rules: [string, SharpnessConfigInput | undefined][] = [
  ['SGD', undefined],
  ['SAM', { kind: 'sam', rho: 0.05 }],
  ['ASAM', { kind: 'asam', rho: 0.5 }],
  ['Trace-SAM', { kind: 'trace-sam', rho: 0.01, lambda: 1, samples: 2 }],
  ['Det-SAM', { kind: 'det-sam', rho: 1, lambda: 1, samples: 2, halfCube: 0.02 }],
  ['Frob-SAM', { kind: 'frob-sam', rho: 0.005, lambda: 0.003, samples: 2 }],
  ['Trace-SAM (exact)', { kind: 'trace-sam', rho: 0.01, lambda: 1, samples: 2, estimator: 'exact' }],
];

describe('clipGradNorm: the final gradient of every rule, clipped once before weight decay', () => {
  it.each(rules)('%s: clipped to maxNorm by c = maxNorm / (‖g‖ + 1e-6); the pre-clip norm is reported', (_, sharpness) => {
    const free = oneStep({ sharpness });
    const decay = new Float64Array(free.before.length).fill(wd);
    const g = gradientOf(free, decay);
    const n = norm(g);
    const maxNorm = n / 4;
    const clipped = oneStep({ sharpness, clipGradNorm: maxNorm });
    const c = maxNorm / (n + CLIP_EPSILON);
    let worst = 0;
    for (let i = 0; i < g.length; i++) {
      const expected = clipped.before[i] - (c * g[i] + wd * clipped.before[i]);
      worst = Math.max(worst, Math.abs(clipped.after[i] - expected));
    }
    expect(worst / n).toBeLessThan(1e-12);
    expect(Math.abs(clipped.r.gradNorm! - n) / n).toBeLessThan(1e-12);
    expect(clipped.r.clipped).toBe(true);
    expect(clipped.r.loss).toBe(free.r.loss);
    expect(free.r.gradNorm).toBeUndefined();
  });

  it('a maxNorm above the norm changes nothing, bit for bit', () => {
    const sharpness = { kind: 'frob-sam', rho: 0.005, lambda: 0.003, samples: 2 } as const;
    const free = oneStep({ sharpness });
    const loose = oneStep({ sharpness, clipGradNorm: 1e6 });
    expect(Array.from(loose.after)).toEqual(Array.from(free.after));
    expect(loose.r.clipped).toBe(false);
    expect(loose.r.gradNorm).toBeGreaterThan(0);
  });

  it('perGroup: each parameter group is clipped by its own norm (biases, without weight decay, in their own group)', () => {
    const sharpness = { kind: 'sam', rho: 0.05 } as const;
    const model = new Model(spec, { dtype: 'float64', seed: 4 });
    const isBias = model.paramInfo().flatMap((p) => Array.from({ length: p.numel }, () => p.name.endsWith('.bias')));
    model.dispose();
    const free = oneStep({ sharpness }, noWeightDecay);
    const decay = Float64Array.from(isBias, (b) => (b ? 0 : wd));
    const g = gradientOf(free, decay);
    const part = (bias: boolean) => g.filter((_, i) => isBias[i] === bias);
    const [nw, nb] = [norm(part(false)), norm(part(true))];
    const maxNorm = Math.min(nw, nb) / 3;
    const clipped = oneStep({ sharpness, clipGradNorm: { maxNorm, perGroup: true } }, noWeightDecay);
    const coefficient = (bias: boolean) => maxNorm / ((bias ? nb : nw) + CLIP_EPSILON);
    let worst = 0;
    for (let i = 0; i < g.length; i++) {
      const expected = clipped.before[i] - (coefficient(isBias[i]) * g[i] + decay[i] * clipped.before[i]);
      worst = Math.max(worst, Math.abs(clipped.after[i] - expected));
    }
    expect(worst / norm(g)).toBeLessThan(1e-12);
    expect(Math.abs(clipped.r.gradNorm! - norm(g)) / norm(g)).toBeLessThan(1e-12);
  });

  it('refuses a maxNorm that is not a positive number, naming the field', () => {
    const model = new Model(spec, { dtype: 'float64', seed: 4 });
    expect(() => new Optimizer(model, { base, clipGradNorm: 0 })).toThrow(/options.clipGradNorm/);
    expect(() => new Optimizer(model, { base, clipGradNorm: { maxNorm: -1 } })).toThrow(/options.clipGradNorm.maxNorm/);
    model.dispose();
  });
});

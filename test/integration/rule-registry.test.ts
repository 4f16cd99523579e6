// A rule of one's own, defined in one descriptor here and registered: it
// trains through the Optimizer, the training config (what `usam train`
// parses) and the report, with no other file touched. The rule is
// unnormalised SAM (Andriushchenko & Flammarion 2022): grad = ∇L(w + rho·g),
// checked against the step computed here by hand.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  ConfigError,
  defineRule,
  DivergenceError,
  findRule,
  Model,
  NonFiniteError,
  ops,
  Optimizer,
  parseTrainConfig,
  readRun,
  registerRule,
  renderReport,
  Trainer,
  trainingDefaultsOf,
  UsamError,
  type RuleContext,
} from '../../lib/index.js';
import { AddonLoadError } from '../../lib/native/load.js';
import { armNames } from '../../lib/experiments/reproduce.js';
import { sharpnessOf } from '../../lib/train/config.js';
import { float64Model, randomBatch } from '../helpers.js';

const tinyMlp = () => float64Model({ input: [6], layers: [{ type: 'linear', inFeatures: 6, outFeatures: 5 }, { type: 'tanh' }, { type: 'linear', inFeatures: 5, outFeatures: 3 }] });
const batch = (n: number, seed: number) => randomBatch([n, 6], 3, seed);

const schema = z.object({ kind: z.literal('unnormalized-sam'), rho: z.number().positive('rho must be > 0') }).strict();
declare module '../../lib/optim/rules/registry.js' {
  interface RuleSchemas {
    'unnormalized-sam': typeof schema;
  }
}

function* step(ctx: RuleContext) {
  ops.combine(ctx.model.params, [1, ctx.rho], [ctx.w0, ctx.g0]); // w + rho·g
  const perturbed = yield* ctx.passes.lossAndGradWork(ctx.grad, ctx.statsEveryPass);
  return { sharpness: perturbed - ctx.loss, penalty: perturbed - ctx.loss };
}

const reading = { short: 'L(w+ρg)−L', name: 'USAM: L(w + ρg) − L(w)', unit: 'loss (nats) at the run’s ρ', kind: 'estimate' } as const;
registerRule(
  defineRule({
    kind: 'unnormalized-sam',
    summary: 'unnormalised SAM: the gradient at w + rho·g',
    schema,
    radius: true,
    reading: () => reading,
    measure: 'maxEigenvalue',
    training: { default: { rho: 0.01 } },
    build: () => ({ step }),
  }),
);

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('a rule defined in one descriptor', () => {
  it('steps through the Optimizer as computed by hand: w − lr·∇L(w + rho·∇L(w))', () => {
    const model = tinyMlp();
    const { x, y } = batch(16, 2);
    const w0 = model.getParams();
    const g0 = Float64Array.from(model.lossAndGrad(x, y).grad.toArray() as Float64Array);
    const rho = 0.05;
    const lr = 0.1;
    model.setParams(w0.map((w, i) => w + rho * g0[i]));
    const lPlus = model.loss(x, y);
    const g1 = Float64Array.from(model.lossAndGrad(x, y).grad.toArray() as Float64Array);
    model.setParams(w0);
    const l0 = model.loss(x, y);
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr }, sharpness: { kind: 'unnormalized-sam', rho } });
    const r = opt.step(x, y);
    const w1 = model.getParams();
    for (let i = 0; i < w1.length; i++) expect(w1[i]).toBeCloseTo(w0[i] - lr * g1[i], 14);
    expect(r.sharpness).toBeCloseTo(lPlus - l0, 14);
    expect(opt.reading).toEqual(reading);
    expect(() => new Optimizer(model, { base: { kind: 'sgd', lr }, sharpness: { kind: 'unnormalized-sam', rho: -1 } })).toThrow(/sharpness.rho: rho must be > 0/);
    opt.dispose();
    model.dispose();
  });

  it('is a training optimizer with its own defaults, trains, and the report names its reading', () => {
    expect(parseTrainConfig({ optimizer: 'unnormalized-sam' }).optimizer).toBe('unnormalized-sam');
    expect(sharpnessOf(parseTrainConfig({ optimizer: 'unnormalized-sam' }))).toEqual({ kind: 'unnormalized-sam', rho: 0.01 });
    expect(sharpnessOf(parseTrainConfig({ optimizer: 'unnormalized-sam', rho: 0.02, lambda: 3 }))).toEqual({ kind: 'unnormalized-sam', rho: 0.02 });
    expect(trainingDefaultsOf('unnormalized-sam')).toEqual({ rho: 0.01 });
    expect(armNames()).toContain('unnormalized-sam');
    const out = join(mkdtempSync(join(tmpdir(), 'usam-rule-')), 'run');
    dirs.push(out);
    const t = new Trainer({ optimizer: 'unnormalized-sam', dataset: 'synthetic', model: 'tiny', epochs: 1, batchSize: 128, out });
    const r = t.run();
    t.dispose();
    expect(r.metrics[0].sharpnessReading).toBe(reading.name);
    expect(Number.isFinite(r.metrics[0].sharpness)).toBe(true);
    const html = renderReport([readRun(out)]);
    expect(html).toContain(reading.name);
  });

  it('a taken name, a base optimizer\'s name or a schema without its kind is refused', () => {
    const d = findRule('unnormalized-sam')!;
    expect(() => registerRule(d)).toThrow(/'unnormalized-sam' is taken \(a registered rule\)/);
    expect(() => registerRule({ ...d, kind: 'sgd' })).toThrow(/'sgd' is taken \(a base optimizer\)/);
    expect(() => registerRule({ ...d, kind: 'other' })).toThrow(/descriptor.schema: must be a z.object\(\{ kind: z.literal\('other'\)/);
    expect(() => parseTrainConfig({ optimizer: 'nope' })).toThrow(/optimizer: unknown optimizer 'nope'; use one of sgd, adam, adamw, sam, /);
  });
});

describe('typed errors', () => {
  it('a bad config is a ConfigError naming each field', () => {
    const model = tinyMlp();
    let caught: unknown;
    try {
      new Optimizer(model, { base: { kind: 'sgd', lr: -1 }, sharpness: { kind: 'frob-sam', rho: 0, lambda: 1, samples: 1 } });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect(caught).toBeInstanceOf(UsamError);
    expect((caught as ConfigError).issues.map((i) => i.path)).toEqual(['base.lr']);
    try {
      new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'frob-sam', rho: 0, lambda: 1, samples: 1 } });
    } catch (e) {
      caught = e;
    }
    expect((caught as ConfigError).issues.map((i) => i.path).sort()).toEqual(['sharpness.rho', 'sharpness.samples']);
    expect(() => parseTrainConfig({ epochs: 0 })).toThrow(ConfigError);
    expect(() => new Model({ input: [3], layers: [{ type: 'linear', inFeatures: 0, outFeatures: 2 }] })).toThrow(UsamError);
    model.dispose();
  });

  it('a step that meets NaN is a NonFiniteError with the step, the quantity and the value; nothing is updated', () => {
    const model = tinyMlp();
    const { x, y } = batch(8, 1);
    const w0 = model.getParams();
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'universal', psi: { f: () => NaN, df: () => 0 }, phi: 'identity', rho: 0.01, lambda: 1 } });
    let caught: unknown;
    try {
      opt.step(x, y);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(NonFiniteError);
    expect(caught).toMatchObject({ step: 1, quantity: 'psi' });
    expect(Number.isNaN((caught as NonFiniteError).value)).toBe(true);
    expect(model.getParams()).toEqual(w0);
    opt.dispose();
    model.dispose();
  });

  it('a diverging run is a DivergenceError with its epoch, step, ratio and limit', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'usam-rule-')), 'run');
    dirs.push(out);
    // the configuration train.test.ts shows diverging finitely (its losses stay numbers)
    const t = new Trainer({ dataset: 'synthetic', epochs: 10, hidden: [16], lr: 1, momentum: 0.9, optimizer: 'frob-sam', rho: 0.01, lambda: 0.02, lrSchedule: 'constant', out });
    let caught: unknown;
    try {
      t.run();
    } catch (e) {
      caught = e;
    }
    t.dispose();
    expect(caught).toBeInstanceOf(DivergenceError);
    expect(caught).toBeInstanceOf(UsamError);
    const d = caught as DivergenceError;
    expect(d.limit).toBe(10);
    expect(d.ratio).toBeGreaterThan(10);
    expect(d.step).toBeGreaterThan(50);
    expect(d.message).toContain(`training diverged in epoch ${d.epoch}, at step ${d.step}`);
  });

  it('the load error is a UsamError too', () => {
    expect(new AddonLoadError([], { USAM_SYSTEM_TORCH_DIRS: '' })).toBeInstanceOf(UsamError);
  });
});

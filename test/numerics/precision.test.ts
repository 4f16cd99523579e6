// precision 'bf16' (ModelOptions.precision): the products of Linear and
// Conv2d in bfloat16 in the once-differentiated passes, float32 elsewhere.
// What can be held exactly: the HVPs and curvature jets (the probes) stay
// float32 bit for bit; the bf16 passes really differ from float32 (they are
// not silently float32); a rule that mixes gradients with second-order terms
// is refused. What is measured against float32 (the same model and batch):
// the loss and the gradient, within bounds set by bfloat16's unit roundoff
// u = 2⁻⁸ (8 significant bits; UNIT_ROUNDOFF): the loss to 50·u relative, the gradient to
// 50·u in norm (a gradient is a sum of terms that cancel, so its relative
// error is many u); docs/optimizers.md gives the measured values.
import { describe, expect, it } from 'vitest';
import { cnn, hessian, Model, mlp, Optimizer, synthetic, tensor, labels, type ModelSpecInput, UNIT_ROUNDOFF } from '../../lib/index.js';
import { MAX_PERTURBATION_ROUNDING } from '../../lib/optim/rules/context.js';
import { relativeError } from '../helpers.js';

const u = UNIT_ROUNDOFF.bf16;

const cases: [string, ModelSpecInput, number[]][] = [
  ['MLP 784-64-10', mlp({ layers: [784, 64, 10], input: [1, 28, 28] }), [1, 28, 28]],
  ['CNN with BatchNorm', cnn({ input: [1, 12, 12], channels: [4, 8], hidden: 16 }), [1, 12, 12]],
];

describe("precision 'bf16': Linear and Conv2d products in bfloat16", () => {
  it.each(cases)('%s: loss and gradient within bfloat16 bounds of float32, HVPs float32 bit for bit', (_, spec, shape) => {
    const d = synthetic({ count: 32, shape, classes: 10, seed: 1 });
    const x = tensor(d.x, [32, ...shape]);
    const y = labels(d.y);
    const fp32 = new Model(spec, { seed: 3 });
    const bf16 = new Model(spec, { seed: 3, precision: 'bf16' });
    expect(bf16.precision).toBe('bf16');
    // the probes run in float32 whatever the precision (first: the training passes below move BatchNorm's statistics)
    const v = new Float32Array(fp32.numParams).map((_, i) => Math.sin(i));
    const h32 = hessian(fp32, { x, y }, { mode: 'eval' }).hvp(v).toArray() as Float32Array;
    const h16 = hessian(bf16, { x, y }, { mode: 'eval' }).hvp(v).toArray() as Float32Array;
    expect(Array.from(h16)).toEqual(Array.from(h32));
    const a = fp32.lossAndGrad(x, y), b = bf16.lossAndGrad(x, y);
    expect(Math.abs(b.loss - a.loss) / a.loss).toBeLessThan(50 * u);
    const error = relativeError(b.grad.toArray() as Float32Array, a.grad.toArray() as Float32Array);
    expect(error).toBeLessThan(50 * u);
    expect(error).toBeGreaterThan(1e-5); // the products did run in bfloat16
    // evaluation passes too
    expect(bf16.loss(x, y)).not.toBe(fp32.loss(x, y));
  });

  it('SAM trains in bf16 as in float32: the same batches, the loss falls alike', () => {
    const d = synthetic({ count: 256, shape: [16], classes: 4, seed: 2 });
    const x = tensor(d.x, [256, 16]);
    const y = labels(d.y);
    const run = (precision: 'fp32' | 'bf16') => {
      const model = new Model(mlp({ layers: [16, 32, 4] }), { seed: 5, precision });
      const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'sam', rho: 0.05 } });
      const losses = Array.from({ length: 40 }, () => opt.step(x, y).loss);
      return { first: losses[0], last: losses[39] };
    };
    const a = run('fp32'), b = run('bf16');
    expect(b.last).toBeLessThan(0.5 * b.first);
    expect(Math.abs(b.last - a.last) / a.last).toBeLessThan(0.1);
  });

  it('is refused where it cannot hold: float64 models, unknown precisions, rules with second-order terms', () => {
    expect(() => new Model(mlp({ layers: [4, 3] }), { dtype: 'float64', precision: 'bf16' })).toThrow(/precision 'bf16' needs a float32 model/);
    expect(() => new Model(mlp({ layers: [4, 3] }), { precision: 'fp8' as never })).toThrow(/options.precision' must be one of 'fp32', 'bf16', 'fp16'/);
    const model = new Model(mlp({ layers: [4, 3] }), { precision: 'bf16' });
    const x = tensor(new Float32Array(8).map((_, i) => i / 8), [2, 4]);
    const y = labels([0, 2]);
    for (const sharpness of [{ kind: 'trace-sam', rho: 0.01, lambda: 1, estimator: 'exact' }, { kind: 'gnp', lambda: 0.01 }] as const) {
      const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness });
      const w = model.getParams();
      expect(() => opt.step(x, y)).toThrow(/run in float32, and the step's precision is 'bf16'/);
      expect(Array.from(model.getParams())).toEqual(Array.from(w));
    }
  });

  it("an Optimizer's own precision: its steps as a bf16 model's, bit for bit; the model's own passes stay float32; refused where it cannot hold", () => {
    const d = synthetic({ count: 64, shape: [16], classes: 4, seed: 2 });
    const x = tensor(d.x, [64, 16]);
    const y = labels(d.y);
    const spec = mlp({ layers: [16, 24, 4], batchNorm: true });
    const sharpness = { kind: 'frob-sam', rho: 0.05, lambda: 0.01 } as const;
    const bf16Model = new Model(spec, { seed: 5, precision: 'bf16' });
    const fp32Model = new Model(spec, { seed: 5 });
    const a = new Optimizer(bf16Model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness, seed: 1 });
    const b = new Optimizer(fp32Model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness, seed: 1, precision: 'bf16' });
    for (let i = 0; i < 3; i++) expect(b.step(x, y).loss).toBe(a.step(x, y).loss);
    expect(Array.from(fp32Model.getParams())).toEqual(Array.from(bf16Model.getParams()));
    expect(fp32Model.precision).toBe('fp32');
    // outside the step, the model's passes are float32: its loss is a float32 twin's, not the bf16 model's
    const twin = new Model(spec, { seed: 6 });
    twin.setParams(fp32Model.getParams());
    twin.buffers().values.copyFrom(fp32Model.buffers().values.toArray() as Float32Array);
    fp32Model.eval(), twin.eval(), bf16Model.eval();
    expect(fp32Model.loss(x, y)).toBe(twin.loss(x, y));
    expect(fp32Model.loss(x, y)).not.toBe(bf16Model.loss(x, y));
    expect(() => new Optimizer(bf16Model, { base: { kind: 'sgd', lr: 0.1 }, precision: 'fp32' })).toThrow(/options.precision: the model was made with precision 'bf16'/);
    expect(() => new Optimizer(new Model(spec, { dtype: 'float64' }), { base: { kind: 'sgd', lr: 0.1 }, precision: 'bf16' })).toThrow(/options.precision: .*precision 'bf16' needs a float32 model/);
    expect(() => new Optimizer(fp32Model, { base: { kind: 'sgd', lr: 0.1 }, precision: 'fp8' as never })).toThrow(/options.precision/);
    const exact = new Optimizer(fp32Model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 1, estimator: 'exact' }, precision: 'bf16' });
    expect(() => exact.step(x, y)).toThrow(/run in float32, and the step's precision is 'bf16'/);
    expect(fp32Model.loss(x, y)).toBe(twin.loss(x, y)); // a refused step leaves the model float32 too
  });

  it('probes a bf16-trained model in float32: equal to its float32 twin bit for bit; a bf16 probe is refused', () => {
    const d = synthetic({ count: 64, shape: [16], classes: 4, seed: 2 });
    const x = tensor(d.x, [64, 16]);
    const y = labels(d.y);
    const trained = new Model(mlp({ layers: [16, 24, 4] }), { seed: 5, precision: 'bf16' });
    const opt = new Optimizer(trained, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'frob-sam', rho: 0.05, lambda: 0.01 } });
    for (let i = 0; i < 10; i++) opt.step(x, y);
    const twin = new Model(mlp({ layers: [16, 24, 4] }), { seed: 6 });
    twin.setParams(trained.getParams());
    const [a, b] = [trained, twin].map((m) => hessian(m, { x, y }));
    expect(a.trace({ samples: 8, seed: 1 }).estimate).toBe(b.trace({ samples: 8, seed: 1 }).estimate);
    expect(a.eigenvalues({ k: 2, seed: 1 }).largest).toEqual(b.eigenvalues({ k: 2, seed: 1 }).largest);
    expect(() => hessian(trained, { x, y }, { precision: 'bf16' as never })).toThrow(/hessian: argument 'options.precision' is the string "bf16": the Hessian probes run in float32 only/);
    expect(hessian(trained, { x, y }, { precision: 'fp32' }).trace({ samples: 8, seed: 1 }).estimate).toBe(b.trace({ samples: 8, seed: 1 }).estimate);
  });
});

// The finite-difference floor (docs/models.md): a bf16 pass rounds w + rho·u
// and w to 8 significant bits, so a perturbation rho·u too small against
// the weights is lost in the rounding; the estimate E = √(2/3)·2⁻⁸·‖w‖/(rho·‖u‖)
// is reported per step and a step with E above MAX_PERTURBATION_ROUNDING is
// refused, naming the rho that passes, with nothing changed.
describe("the finite-difference floor of precision 'bf16'", () => {
  const spec = mlp({ layers: [784, 32, 10], input: [1, 28, 28] });
  const d = synthetic({ count: 64, shape: [1, 28, 28], classes: 10, seed: 1 });
  const x = tensor(d.x, [64, 1, 28, 28]);
  const y = labels(d.y);
  const make = (rho: number, precision: 'fp32' | 'bf16' = 'bf16', kind: 'frob-sam' | 'rwp' = 'frob-sam') => {
    const model = new Model(spec, { seed: 3, precision });
    const sharpness = kind === 'rwp' ? { kind, rho } : { kind, rho, lambda: 0.003, samples: 2 };
    return new Optimizer(model, { base: { kind: 'sgd', lr: 0.05 }, sharpness, seed: 1 });
  };
  const estimate = (o: Optimizer, rho: number) => (Math.sqrt(2 / 3) * UNIT_ROUNDOFF.bf16 * Math.hypot(...o.model.getParams())) / (rho * Math.sqrt(o.model.numParams));

  it('reports the estimate in reduced precision (gaussian ‖u‖ ≈ √P), and nothing in float32 or for a rule without differences', () => {
    const o = make(0.005);
    const e = estimate(o, 0.005);
    const r = o.step(x, y);
    expect(r.perturbationRounding).toBeGreaterThan(0.95 * e);
    expect(r.perturbationRounding).toBeLessThan(1.05 * e);
    expect(make(0.005, 'fp32').step(x, y).perturbationRounding).toBeUndefined();
    expect(make(1e-5, 'bf16', 'rwp').step(x, y).perturbationRounding).toBeUndefined(); // RWP takes no differences: not refused
  });

  it('refuses a rho below the floor with the rho that passes, changing nothing; that rho runs', () => {
    const o = make(1e-4);
    const w = Array.from(o.model.getParams());
    let message = '';
    try {
      o.step(x, y);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^step 1: rho 0.0001 is below the finite-difference floor of precision 'bf16' for these weights: .* estimated relative error of [0-9.]+ .*Use rho ≥ [0-9.e-]+, or precision 'fp32' for this rule/);
    expect(Array.from(o.model.getParams())).toEqual(w);
    expect(o.stepCount).toBe(0);
    const floor = Number(/Use rho ≥ ([0-9.e-]+),/.exec(message)![1]);
    expect(floor).toBeGreaterThan(0.95 * 1e-4 * (estimate(o, 1e-4) / MAX_PERTURBATION_ROUNDING));
    expect(floor).toBeLessThan(1.05 * 1e-4 * (estimate(o, 1e-4) / MAX_PERTURBATION_ROUNDING));
    const r = make(1.1 * floor).step(x, y);
    expect(r.perturbationRounding).toBeLessThan(MAX_PERTURBATION_ROUNDING);
    expect(make(1e-4, 'fp32').step(x, y).perturbationRounding).toBeUndefined(); // float32 has no such floor here
  });
});

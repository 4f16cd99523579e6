// Errors at the doors: a wrong input is a ConfigError naming the argument,
// what it got and what it expects, never a silent conversion or a raw
// TypeError from inside.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/errors.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { mlp } from '../../lib/model/presets.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { frobSam, traceSam, universal } from '../../lib/optim/rules/index.js';
import { labels } from '../../lib/tensor/tensor.js';
import { float64Model, randomBatch } from '../helpers.js';

describe('errors at the doors', () => {
  it('labels() refuses what is not a class index instead of truncating it', () => {
    expect(() => labels(new Float32Array([0.5, 1.7, -0.2]))).toThrow(ConfigError);
    expect(() => labels(new Float32Array([0.5, 1.7, -0.2]))).toThrow(/data\[0\]: is 0.5; class labels are integers \(for float targets use tensor/);
    expect(() => labels([0, 2, 1.5])).toThrow(/data\[2\]: is 1.5/);
    expect(() => labels(null as never)).toThrow(/labels: argument 'data' must be an array of class indices \(integers\), got null/);
    const y = labels([0, 2, 1]);
    expect(Array.from(y.toArray() as BigInt64Array, Number)).toEqual([0, 2, 1]);
    y.dispose();
  });

  it('step() with no batch, or with a PyTorch closure, says how to call it', () => {
    const model = float64Model(mlp({ layers: [4, 3] }));
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 } });
    expect(() => (opt.step as () => unknown)()).toThrow(/step\(\): needs the batch: opt.step\(x, y\) with tensors/);
    expect(() => opt.step((() => 1) as never)).toThrow(/step\(closure\): takes the batch, not a closure/);
    const { x } = randomBatch([2, 4], 3, 1);
    expect(() => opt.step(x, [0, 1] as never)).toThrow(/Optimizer.step: argument 'y' must be a live tensor of targets, got an array of 2/);
    expect(() => opt.step([])).toThrow(/batches: is empty/);
    expect(() => opt.step([{ x } as never])).toThrow(/batches\[0\]: must be \{ x, y \} with tensors/);
    expect(() => opt.step(undefined as never)).toThrow(ConfigError);
    opt.dispose();
    model.dispose();
  });

  it('a negative lambda is refused where it weighs a penalty; the universal class takes any', () => {
    const model = float64Model(mlp({ layers: [4, 3] }));
    const base = { kind: 'sgd', lr: 0.1 } as const;
    expect(() => new Optimizer(model, { base, sharpness: frobSam({ rho: 0.01, lambda: -1 }) })).toThrow(/frobSam\(options\):\n  - options.lambda: lambda must be ≥ 0: it weighs the penalty/);
    expect(() => new Optimizer(model, { base, sharpness: traceSam({ rho: 0.01, lambda: -1 }) })).toThrow(ConfigError);
    new Optimizer(model, { base, sharpness: universal({ rho: 0.01, lambda: -1, psi: 'identity', phi: 'identity' }) }).dispose();
    model.dispose();
  });

  it('full() above its limit names the bytes it would take against this machine’s memory', () => {
    const model = float64Model(mlp({ layers: [20, 30, 10] })); // 940 parameters
    const { x, y } = randomBatch([4, 20], 10, 2);
    const h = hessian(model, [{ x, y }], { mode: 'eval' });
    expect(() => h.full({ maxSize: 100 })).toThrow(/maxSize: the Hessian has 940 rows, above the limit of 100: its float64 entries take 0.00707 GB, this machine has [\d.]+ GB; restrict it with options.modules, or pass full\(\{maxSize: 940\}\)/);
    h.dispose();
    model.dispose();
  });
});

describe('inputs as nn.Flatten takes them', () => {
  it('a model that begins with Flatten takes [N, C·H·W] as well as [N, C, H, W], with the same loss, gradient and HVP', () => {
    const model = float64Model(mlp({ layers: [12, 5, 3], input: [3, 2, 2] }));
    const { x, y } = randomBatch([4, 3, 2, 2], 3, 7);
    const flat = x.view([4, 12]);
    const v = model.zerosLikeParams();
    v.copyFrom(Float64Array.from({ length: model.numParams }, (_, i) => Math.sin(i)));
    const a = model.lossAndGrad(x, y, { updateStats: false });
    const b = model.lossAndGrad(flat, y, { updateStats: false });
    expect(b.loss).toBe(a.loss);
    expect(b.grad.toArray()).toEqual(a.grad.toArray());
    expect(model.hvp(flat, y, v).toArray()).toEqual(model.hvp(x, y, v).toArray());
    expect(() => model.loss(x.view([4, 6, 2]), y)).toThrow(/argument 'x' has shape \[4, 6, 2\] but the model takes \[batch, 3, 2, 2\] \(or \[batch, 12\], flat\)/);
    model.dispose();
  });
});

describe('results shaped as a PyTorch user expects', () => {
  it('full() is a Float64Array with its shape; every estimate names its method; eigenvalues are typed as present', () => {
    const model = float64Model(mlp({ layers: [4, 3, 2] }));
    const { x, y } = randomBatch([5, 4], 2, 3);
    const h = hessian(model, [{ x, y }], { mode: 'eval' });
    const f = h.full();
    expect(f.matrix).toBeInstanceOf(Float64Array);
    expect(f.shape).toEqual([model.numParams, model.numParams]);
    expect(f.matrix.length).toBe(model.numParams ** 2);
    expect(h.trace({ samples: 4 }).method).toBe('hutchinson');
    expect(h.trace({ samples: 6, method: 'hutch++' }).method).toBe('hutch++');
    expect(h.frobeniusSquared({ samples: 4 }).method).toBe('hutchinson');
    expect(h.logAbsDet({ damping: 1e-3, steps: 5, runs: 2 }).method).toBe('slq');
    expect(() => h.trace({ method: 'exact' as never })).toThrow(/trace: options.method is 'exact'; use 'hutchinson' or 'hutch\+\+'/);
    // compile-time too (npm run typecheck): no `!` needed where `which` says the field is there
    const top: number = h.eigenvalues({ k: 1 }).largest[0];
    const both = h.eigenvalues({ k: 1, which: 'both' });
    const spread: number = both.largest[0] - both.smallest[0];
    const bottom: number = h.eigenvalues({ k: 1, which: 'smallest' }).smallest[0];
    expect(top).toBeGreaterThanOrEqual(bottom);
    expect(spread).toBeGreaterThanOrEqual(0);
    h.dispose();
    model.dispose();
  });
});

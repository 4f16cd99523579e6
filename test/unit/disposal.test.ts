// Disposal that fits TypeScript: `using`, scope(), idempotent dispose, and a
// clear error on use after dispose.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { scope } from '../../lib/tensor/scope.js';
import { tensor, zeros } from '../../lib/tensor/tensor.js';
import { randomBatch } from '../helpers.js';

const live = () => native().memory().liveTensors;
const spec = mlp({ layers: [4, 5, 3], activation: 'tanh' });

describe('using', () => {
  it('disposes tensors, models, optimizers and Hessians at the end of the block', () => {
    const before = live();
    let kept: { t: unknown; m: Model; o: Optimizer };
    {
      using t = zeros([3]);
      using m = new Model(spec);
      using o = new Optimizer(m, { base: { kind: 'sgd', lr: 0.1 } });
      using h = hessian(m, randomBatch([2, 4], 3, 1, 'float32'));
      h.trace({ samples: 2 });
      kept = { t, m, o };
      expect(live()).toBeGreaterThan(before);
    }
    // what is left: the batch made by randomBatch (not declared with `using`)
    expect(live()).toBe(before + 2);
    expect((kept.t as { disposed: boolean }).disposed).toBe(true);
    expect(() => kept.m.getParams()).toThrow(/argument 'tensor' is a Tensor that was disposed/);
    expect(() => kept.o.step(zeros([1, 4]), zeros([1]))).toThrow(/this optimizer was disposed; it cannot be used after dispose\(\)/);
  });

  it('disposing twice is harmless; use after dispose names what was disposed', () => {
    const m = new Model(spec);
    const h = hessian(m, randomBatch([2, 4], 3, 2, 'float32'));
    h.dispose();
    h.dispose();
    expect(() => h.trace({ samples: 2 })).toThrow(/this Hessian was disposed; it cannot be used after dispose\(\)/);
    const t = tensor([1, 2, 3]);
    t.dispose();
    t.dispose();
    expect(() => t.toArray()).toThrow(/this tensor was disposed/);
    m.dispose();
    m.dispose();
    expect(() => m.lossAndGrad(zeros([1, 4]), zeros([1]))).toThrow(/was disposed/);
  });
});

describe('scope', () => {
  it('frees a tensor the collector took inside it before its finalizer ran', () => {
    // The collector can take a dropped tensor's object during the scope; Node
    // runs the native finalizer only later (when the event loop turns). The
    // scope frees such a tensor at its end all the same, so what it promises
    // does not depend on when the collector ran.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const mark = live();
    scope(() => {
      for (let i = 0; i < 20; i++) zeros([1000]); // dropped on the floor
      gc();
    });
    expect(live()).toBe(mark);
  });

  it('disposes every tensor and object made inside, except what fn returns', () => {
    const before = live();
    const model = new Model(spec, { seed: 1 });
    const batch = randomBatch([3, 4], 3, 3, 'float32');
    const mark = live();
    const { grad, loss, pair } = scope(() => {
      const g = model.lossAndGrad(batch.x, batch.y);
      const scratch = zeros([1000]);
      scratch.dispose();
      zeros([7]); // dropped on the floor
      const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'sam', rho: 0.05 } });
      opt.step(batch.x, batch.y); // its buffers are made inside and go with it
      const h = hessian(model, batch);
      h.trace({ samples: 2 });
      return { grad: g.grad, loss: g.loss, pair: [tensor([1, 2])] };
    });
    expect(Number.isFinite(loss)).toBe(true);
    expect(grad.disposed).toBe(false);
    expect(pair[0].disposed).toBe(false);
    // grad and pair[0], and the model's own views of its (empty) BatchNorm
    // statistics, made by the step inside but owned by the model made outside
    expect(live()).toBe(mark + 4);
    grad.dispose();
    pair[0].dispose();
    // the model made outside, with its parameters, is untouched
    expect(model.getParams().length).toBe(model.numParams);
    model.dispose();
    batch.x.dispose();
    batch.y.dispose();
    expect(live()).toBe(before);
  });

  it('nested scopes hand kept tensors outwards; an error disposes all; a Promise is refused', () => {
    const before = live();
    const outer = scope(() => {
      const inner = scope(() => zeros([2]));
      zeros([3]);
      expect(inner.disposed).toBe(false);
      return inner;
    });
    expect(outer.disposed).toBe(false);
    outer.dispose();
    expect(live()).toBe(before);
    expect(() =>
      scope(() => {
        zeros([4]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(live()).toBe(before);
    let made: { disposed: boolean } | undefined;
    expect(() => scope(() => ((made = zeros([5])), Promise.resolve(1)))).toThrow(/fn returned a Promise; scope\(\) is for synchronous code \(nothing was disposed\)/);
    expect(made!.disposed).toBe(false);
    (made as unknown as { dispose(): void }).dispose();
    expect(live()).toBe(before);
  });
});

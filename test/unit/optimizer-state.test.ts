// Optimizer state like PyTorch's: stateDict() is plain data under PyTorch's
// buffer names, loadStateDict() checks before it writes, and a run continued
// from it equals the uninterrupted run bit for bit.
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { Optimizer, type OptimizerOptions, type OptimizerStateDict } from '../../lib/optim/optimizer.js';
import { randomBatch } from '../helpers.js';

const spec = mlp({ layers: [5, 4, 3], activation: 'tanh' });
const batches = [1, 2, 3, 4, 5, 6].map((s) => randomBatch([4, 5], 3, s));

function run(options: OptimizerOptions, steps: number[], from?: { params: Float64Array; state: OptimizerStateDict }) {
  const model = new Model(spec, { dtype: 'float64', seed: 3 });
  const opt = new Optimizer(model, options);
  if (from) {
    model.setParams(from.params);
    opt.loadStateDict(from.state);
  }
  for (const i of steps) opt.step(batches[i].x, batches[i].y);
  return { params: model.getParams() as Float64Array, state: opt.stateDict() };
}

describe('stateDict / loadStateDict', () => {
  for (const options of [
    { base: { kind: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true }, sharpness: { kind: 'frob-sam', rho: 0.01, lambda: 0.1, samples: 2 }, seed: 4 },
    { base: { kind: 'adamw', lr: 0.01 }, sharpness: { kind: 'sam', rho: 0.05 }, lrSchedule: { kind: 'cosine', total: 6, min: 0 } },
  ] as OptimizerOptions[]) {
    it(`${options.base.kind} + ${options.sharpness!.kind}: three steps, stateDict, three more in a new optimizer = six steps`, () => {
      const whole = run(options, [0, 1, 2, 3, 4, 5]);
      const half = run(options, [0, 1, 2]);
      // plain data under PyTorch's names, copies (not live tensors)
      expect(Object.keys(half.state.state).sort()).toEqual(options.base.kind === 'sgd' ? ['momentum_buffer'] : ['exp_avg', 'exp_avg_sq']);
      expect(half.state.steps).toBe(3);
      expect(half.state.baseStep).toBe(3);
      expect(half.state.generator === null).toBe(options.sharpness!.kind === 'sam');
      expect(JSON.parse(JSON.stringify(half.state.paramGroups))).toEqual(half.state.paramGroups);
      const continued = run(options, [3, 4, 5], half);
      expect(continued.params).toEqual(whole.params);
      expect(continued.state.state).toEqual(whole.state.state);
    });
  }

  it('refuses a state that does not fit, naming the field, and writes nothing', () => {
    const model = new Model(spec, { dtype: 'float64' });
    const sgd = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 0.1 } });
    sgd.step(batches[0].x, batches[0].y);
    const good = sgd.stateDict();
    const fresh = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 0.1 } });
    const before = fresh.stateDict();
    const adam = new Optimizer(model, { base: { kind: 'adam', lr: 0.1 } }).stateDict();
    expect(() => fresh.loadStateDict({ ...good, format: 'x' } as never)).toThrow(/not an optimizer state dict \(format must be 'universal-sam-optimizer\/1', got "x"\)/);
    expect(() => fresh.loadStateDict(adam)).toThrow(/the state is of a adam optimizer, this one is sgd; make the optimizer with base.kind 'adam'/);
    expect(() => fresh.loadStateDict({ ...good, state: { exp_avg: good.state.momentum_buffer } })).toThrow(/state holds buffers \[exp_avg\], a sgd optimizer needs \[momentum_buffer\]/);
    expect(() => fresh.loadStateDict({ ...good, state: { momentum_buffer: new Float64Array(3) } })).toThrow(/state.momentum_buffer has 3 values, the model has 39 parameters/);
    expect(() => fresh.loadStateDict({ ...good, state: { momentum_buffer: Float32Array.from(good.state.momentum_buffer) } })).toThrow(/state.momentum_buffer must be a Float64Array \(the model is float64\)/);
    expect(() => fresh.loadStateDict({ ...good, steps: -1 })).toThrow(/steps must be a non-negative integer, got -1/);
    expect(() => fresh.loadStateDict({ ...good, generator: null })).toThrow(/needs the generator state .* has none/);
    expect(fresh.stateDict()).toEqual(before);
  });
});

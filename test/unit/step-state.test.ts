// What one optimizer step changes besides the parameters: BatchNorm running
// statistics move once per step (micro-batches pooled), and a step that
// fails changes nothing at all.
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { cnn } from '../../lib/model/presets.js';
import { Optimizer, type OptimizerOptions } from '../../lib/optim/optimizer.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, randomBatch, toNumbers } from '../helpers.js';

const spec = cnn({ input: [2, 6, 6], channels: [3, 4], hidden: 6, classes: 3 }); // two BatchNorm2d layers
const make = () => new Model(spec, { dtype: 'float64', seed: 4 });
const stats = (m: Model) => ({ values: toNumbers(m.buffers().values), counters: Array.from(m.buffers().counters.toArray() as BigInt64Array, Number) });

describe('micro-batches and BatchNorm', () => {
  it('running statistics move once per step, by the mean and unbiased variance of all micro-batches together', () => {
    const a = randomBatch([5, 2, 6, 6], 3, 21);
    const b = randomBatch([7, 2, 6, 6], 3, 22);
    const split = make();
    new Optimizer(split, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'sam', rho: 0.05 } }).step([a, b]);
    // what one batch of the concatenation does to them
    const whole = make();
    const x = tensor(Float64Array.from([...toNumbers(a.x), ...toNumbers(b.x)]), [12, 2, 6, 6], { dtype: 'float64' });
    const y = labels([...Array.from(a.y.toArray() as BigInt64Array, Number), ...Array.from(b.y.toArray() as BigInt64Array, Number)]);
    whole.lossAndGrad(x, y, { updateStats: true });
    const s = stats(split), w = stats(whole);
    expect(s.counters).toEqual([1, 1]);
    expect(w.counters).toEqual([1, 1]);
    // The first BatchNorm sees the same inputs either way: equal statistics.
    // (The second sees activations normalised per micro-batch, so its input differs.)
    const first = split.buffers().info.filter((b) => b.name.startsWith('1.'));
    expect(first.map((b) => b.name)).toEqual(['1.running_mean', '1.running_var']);
    const end = first[1].offset + first[1].numel;
    expect(maxAbsDiff(s.values.subarray(0, end), w.values.subarray(0, end))).toBeLessThan(1e-14);
    expect(maxAbsDiff(s.values, stats(make()).values)).toBeGreaterThan(1e-3); // they did move
  });
});

describe('a failed step changes nothing', () => {
  const batch = randomBatch([6, 2, 6, 6], 3, 23);
  const options = (rho: number): OptimizerOptions => ({ base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'frob-sam', rho, lambda: 0.1, samples: 2 }, seed: 5 });
  it('a NaN perturbed loss is reported as such, and parameters, BatchNorm statistics and the direction generator are as before', () => {
    const model = make();
    const opt = new Optimizer(model, options(0.05));
    opt.step(batch.x, batch.y);
    const before = { params: model.getParams(), stats: stats(model), gen: opt.stateDict().generator!.slice() };
    // a radius that overflows the perturbed parameters: the perturbed loss is NaN
    // (set after loadStateDict, which adopts the saved groups' rho)
    const failing = new Optimizer(model, options(0.05));
    failing.loadStateDict(opt.stateDict());
    failing.paramGroups[0].rho = 1e308;
    expect(() => failing.step(batch.x, batch.y)).toThrow(/step 2: the perturbed loss L\(w \+ rho·u_0\) is (NaN|Infinity|-Infinity)/);
    expect(model.getParams()).toEqual(before.params);
    expect(stats(model)).toEqual(before.stats);
    expect(Buffer.from(failing.stateDict().generator!).equals(Buffer.from(before.gen))).toBe(true);
    // and the next step is the step an optimizer that never failed takes
    const twin = make();
    const twinOpt = new Optimizer(twin, options(0.05));
    twinOpt.step(batch.x, batch.y);
    opt.step(batch.x, batch.y);
    twinOpt.step(batch.x, batch.y);
    expect(model.getParams()).toEqual(twin.getParams());
  });
});

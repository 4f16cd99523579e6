// What one optimizer step changes besides the parameters: BatchNorm running
// statistics move once per step (micro-batches pooled), and a step that
// fails changes nothing at all.
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { cnn, mlp } from '../../lib/model/presets.js';
import { ops } from '../../lib/tensor/ops.js';
import { Optimizer, type OptimizerOptions } from '../../lib/optim/optimizer.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, randomBatch, toNumbers } from '../helpers.js';

const spec = cnn({ input: [2, 6, 6], channels: [3, 4], hidden: 6, classes: 3 }); // two BatchNorm2d layers
const make = (dtype: 'float32' | 'float64' = 'float64') => new Model(spec, { dtype, seed: 4 });
const stats = (m: Model) => ({ values: toNumbers(m.buffers().values), counters: Array.from(m.buffers().counters.toArray() as BigInt64Array, Number) });

describe('micro-batches and BatchNorm', () => {
  // float64 to 1e-14; float32 (whose statistics the pooling gathers in float64, as batch_norm's CPU kernel accumulates) to 1e-6
  it.each([['float64', 1e-14], ['float32', 1e-6]] as const)('running statistics move once per step, by the mean and unbiased variance of all micro-batches together (%s)', (dtype, tolerance) => {
    const a = randomBatch([5, 2, 6, 6], 3, 21, dtype);
    const b = randomBatch([7, 2, 6, 6], 3, 22, dtype);
    const split = make(dtype);
    new Optimizer(split, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'sam', rho: 0.05 } }).step([a, b]);
    // what one batch of the concatenation does to them
    const whole = make(dtype);
    const x = tensor(Float64Array.from([...toNumbers(a.x), ...toNumbers(b.x)]), [12, 2, 6, 6], { dtype });
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
    expect(maxAbsDiff(s.values.subarray(0, end), w.values.subarray(0, end))).toBeLessThan(tolerance);
    expect(maxAbsDiff(s.values, stats(make(dtype)).values)).toBeGreaterThan(1e-3); // they did move
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

describe('w is kept only where a rule overwrites params', () => {
  const batch = randomBatch([6, 2, 6, 6], 3, 29);
  const steps = (sharpness: OptimizerOptions['sharpness']) => {
    const model = make();
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }, sharpness, seed: 3 });
    // w is kept by a copy, or by the first perturbation of a step, which keeps it in its own pass (shiftDot's `keep`)
    const { copy, shiftDot } = ops;
    let copies = 0;
    let keptByShift = 0;
    ops.copy = (dst, src) => (copies++, copy(dst, src));
    ops.shiftDot = (...a) => (a[5] !== undefined && keptByShift++, shiftDot(...a));
    try {
      for (let i = 0; i < 3; i++) opt.step(batch.x, batch.y);
    } finally {
      Object.assign(ops, { copy, shiftDot });
    }
    const saved = (opt as unknown as { workspace: { buffers: Map<string, unknown> } }).workspace.buffers.has('saved-params');
    return { copies, keptByShift, saved, params: model.getParams() };
  };
  it('plain SGD and rules that never perturb (GNP, exact Trace-SAM) keep no w and hold no buffer for it; the perturbing rules keep it once a step, in their first perturbation', () => {
    expect(steps(undefined)).toMatchObject({ copies: 0, keptByShift: 0, saved: false });
    expect(steps({ kind: 'gnp', lambda: 0.1 })).toMatchObject({ copies: 0, keptByShift: 0, saved: false });
    expect(steps({ kind: 'trace-sam', rho: 0.05, lambda: 0.1, estimator: 'exact' })).toMatchObject({ copies: 0, keptByShift: 0, saved: false });
    expect(steps({ kind: 'sam', rho: 0.05 })).toMatchObject({ copies: 0, keptByShift: 3, saved: true });
    expect(steps({ kind: 'frob-sam', rho: 0.05, lambda: 0.1, samples: 2 })).toMatchObject({ copies: 0, keptByShift: 3, saved: true });
    expect(steps({ kind: 'trace-sam', rho: 0.05, lambda: 0.1, samples: 2, directions: 'antithetic' })).toMatchObject({ copies: 0, keptByShift: 3, saved: true });
  });
  it("a step that never keeps w updates params in place, to the same bits as a step from a kept copy", () => {
    // GNP's update from params in place, against the same update from the kept copy (RuleContext.w0 read by a rule that then does nothing else)
    const inPlace = steps({ kind: 'gnp', lambda: 0.1 }).params;
    const model = make();
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }, sharpness: { kind: 'gnp', lambda: 0.1 }, seed: 3 });
    const rule = (opt as unknown as { rule: (ctx: { w0: unknown }) => unknown }).rule;
    (opt as unknown as { rule: (ctx: { w0: unknown }) => unknown }).rule = (ctx) => (void ctx.w0, rule(ctx));
    for (let i = 0; i < 3; i++) opt.step(batch.x, batch.y);
    expect(model.getParams()).toEqual(inPlace);
  });
});

// A finite loss with an overflowing gradient (MSE): input feature 0 is huge
// and its weights are zero, so the outputs stay finite, while the targets are
// far enough that ∂L/∂W[:, 0] = Σ_b 2(z_b − t_b)·x_b0/N overflows. The step
// must see it (the passes sum the gradient as they write it, instead of a
// separate check) and change nothing.
describe('an overflowing gradient under a finite loss', () => {
  const cases = [
    { dtype: 'float32' as const, huge: 3e38, far: 1e17 },
    { dtype: 'float64' as const, huge: 1e308, far: 1e150 },
  ];
  for (const { dtype, huge, far } of cases) {
    const setup = () => {
      const model = new Model({ ...mlp({ layers: [4, 10], activation: 'tanh' }), loss: { type: 'mse' } }, { dtype, seed: 3 });
      const w = Array.from(model.getParams());
      for (let k = 0; k < 10; k++) w[k * 4] = 0; // W[k][0] (weight [10, 4], row-major)
      model.setParams(w);
      const b = randomBatch([128, 4], 10, 31, dtype);
      const x = Array.from(toNumbers(b.x));
      for (let i = 0; i < 128; i++) x[i * 4] = huge;
      const y = tensor(new Float64Array(128 * 10).fill(far), [128, 10], { dtype });
      return { model, x: tensor(Float64Array.from(x), [128, 4], { dtype }), y };
    };
    it(`${dtype}: the pass reports Σ of the gradient it wrote, non-finite here, with a finite loss`, () => {
      const { model, x, y } = setup();
      const g = model.zerosLikeParams();
      const loss = model.native.lossAndGrad(x, y, g, false);
      expect(Number.isFinite(loss)).toBe(true);
      expect(ops.allFinite(g)).toBe(false);
      expect(Number.isFinite(model.native.lastGradSum!)).toBe(false);
      // and on an ordinary batch it is the gradient's sum
      const ok = randomBatch([16, 4], 10, 32, dtype);
      const t = tensor(Float64Array.from({ length: 160 }, (_, i) => Math.cos(i)), [16, 10], { dtype });
      model.native.lossAndGrad(ok.x, t, g, false);
      expect(model.native.lastGradSum!).toBeCloseTo(ops.sum(g), dtype === 'float64' ? 12 : 5);
    });
    for (const sharpness of [undefined, { kind: 'sam' as const, rho: 0.05 }])
      it(`${dtype}, ${sharpness?.kind ?? 'sgd'}: the step is refused, whole batch or micro-batches, and nothing changed`, () => {
        const { model, x, y } = setup();
        const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness, seed: 1 });
        const before = model.getParams();
        expect(() => opt.step(x, y)).toThrow(/step 1: the gradient holds NaN or Inf/);
        expect(() => opt.step([{ x, y }, { x, y }])).toThrow(/step 1: the gradient holds NaN or Inf/);
        expect(model.getParams()).toEqual(before);
        expect(opt.stepCount).toBe(0);
      });
  }
});

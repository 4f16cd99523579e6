// Hundreds of malformed calls into the native surface: every one must come
// back as a JS Error with a message, and the process must live on.
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import type { NativeModelOptions } from '../../lib/native/binding.js';
import { labels, tensor, zeros, type Tensor } from '../../lib/tensor/tensor.js';
import { rng } from '../helpers.js';

const addon = native();
// devices that must be refused here: 'cuda' itself only where no CUDA device is usable
const unusableCuda = addon.versions().cudaAvailable ? ['cuda:99'] : ['cuda', 'cuda:0'];

function disposed(): Tensor {
  const t = zeros([3], { dtype: 'float64' });
  t.dispose();
  return t;
}

// Values that are wrong for any tensor argument.
const notTensors = (): unknown[] => [undefined, null, 42, 'tensor', {}, [], [1, 2, 3], new Float64Array(3), disposed(), () => 1];

describe('malformed calls become JS errors', () => {
  const spec = mlp({ layers: [4, 5, 3], batchNorm: true });
  const model = new Model(spec, { dtype: 'float64' });
  const P = model.numParams;
  const flat = () => zeros([P], { dtype: 'float64' });
  const x = () => tensor(new Float64Array(8), [2, 4], { dtype: 'float64' });
  const y = () => labels([0, 2]);
  const flatOf = (m: Model) => zeros([m.numParams], { dtype: 'float64' });

  // For each entry point: valid arguments, and per argument a list of bad values.
  type Entry = { name: string; call: (args: unknown[]) => unknown; valid: () => unknown[]; bad: (() => unknown[])[] };
  const wrongFlat = () => [...notTensors(), zeros([P + 1], { dtype: 'float64' }), zeros([P], { dtype: 'float32' }), zeros([P, 1], { dtype: 'float64' })];
  // an optional tensor: any wrong value but undefined (which leaves it out)
  const optionalFlat = () => wrongFlat().filter((v) => v !== undefined);
  const wrongX = () => [...notTensors(), zeros([2, 5], { dtype: 'float64' }), zeros([2, 4], { dtype: 'float32' }), zeros([4], { dtype: 'float64' }), zeros([0, 4], { dtype: 'float64' })];
  const wrongY = () => [...notTensors(), labels([0]), labels([0, 7]), labels([-1, 0]), zeros([2], { dtype: 'float64' })];
  const nm = model.native as unknown as Record<string, (...a: unknown[]) => unknown>;
  const entries: Entry[] = [
    { name: 'model.lossAndGrad', call: (a) => nm.lossAndGrad(...a), valid: () => [x(), y(), flat(), true], bad: [wrongX, wrongY, wrongFlat, () => [undefined, 1, 'yes', {}]] },
    { name: 'model.hvp', call: (a) => nm.hvp(...a), valid: () => [x(), y(), flat(), flat()], bad: [wrongX, wrongY, wrongFlat, wrongFlat] },
    { name: 'model.quadraticFormGrad', call: (a) => nm.quadraticFormGrad(...a), valid: () => [x(), y(), flat(), flat()], bad: [wrongX, wrongY, wrongFlat, wrongFlat] },
    { name: 'model.loss', call: (a) => nm.loss(...a), valid: () => [x(), y()], bad: [wrongX, wrongY] },
    { name: 'model.forward', call: (a) => nm.forward(...a), valid: () => [x()], bad: [wrongX] },
    { name: 'model.setTraining', call: (a) => nm.setTraining(...a), valid: () => [true], bad: [() => [undefined, 0, 'true', null]] },
    { name: 'model.setRngState', call: (a) => nm.setRngState(...a), valid: () => [model.native.getRngState()], bad: [() => [undefined, new Uint8Array(3), new Float32Array(8), 'state']] },
    { name: 'ops.axpy', call: (a) => addon.ops.axpy(...(a as [Tensor, number, Tensor])), valid: () => [flat(), 0.5, flat()], bad: [() => [...notTensors(), labels([1])], () => [undefined, 'a', NaN, Infinity, {}], wrongFlat] },
    { name: 'ops.combine', call: (a) => addon.ops.combine(...(a as [Tensor, number[], Tensor[]])), valid: () => [flat(), [1, 2], [flat(), flat()]], bad: [notTensors, () => [undefined, [1], [NaN, 1], 'x', [1, 2, 3]], () => [undefined, [], [flat()], [flat(), 3], [flat(), disposed()], [flat(), zeros([2])]]] },
    { name: 'ops.shiftDot', call: (a) => addon.ops.shiftDot(...(a as [Tensor, Tensor, number, Tensor, Tensor, Tensor])), valid: () => [flat(), flat(), 0.5, flat(), flat(), flat()], bad: [wrongFlat, wrongFlat, () => [undefined, 'x', NaN, Infinity], wrongFlat, optionalFlat, optionalFlat] },
    { name: 'ops.dot', call: (a) => addon.ops.dot(...(a as [Tensor, Tensor])), valid: () => [flat(), flat()], bad: [wrongFlat, wrongFlat] },
    { name: 'ops.mul', call: (a) => addon.ops.mul(...(a as [Tensor, Tensor, Tensor])), valid: () => [flat(), flat(), flat()], bad: [wrongFlat, wrongFlat, wrongFlat] },
    { name: 'ops.copy', call: (a) => addon.ops.copy(...(a as [Tensor, Tensor])), valid: () => [flat(), flat()], bad: [wrongFlat, wrongFlat] },
    { name: 'Tensor.fromArray', call: (a) => addon.Tensor.fromArray(...(a as [Float64Array, number[], 'float64', string])), valid: () => [new Float64Array(6), [2, 3], 'float64', 'cpu'], bad: [() => [undefined, [1, 2], 'abc', new Uint16Array(6), new Int32Array(6)], () => [undefined, [7], [2, -3], ['2', 3], 6, [2.5, 2]], () => [undefined, 'float16', 'int64', 7], () => [undefined, 'gpu', ...unusableCuda, 'cuda:x', 3]] },
    { name: 'optim.sgdStep', call: (a) => addon.optim.sgdStep(...(a as Parameters<typeof addon.optim.sgdStep>)), valid: () => [flat(), flat(), flat(), { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, first: true }, flat()], bad: [wrongFlat, wrongFlat, wrongFlat, () => [undefined, {}, { lr: 'x' }, { lr: 0.1, nesterov: 'yes' }, 5], () => [...notTensors().filter((v) => v !== undefined), zeros([P + 1], { dtype: 'float64' }), zeros([P], { dtype: 'float32' })]] },
    { name: 'new Model', call: (a) => new addon.Model(...(a as [object, NativeModelOptions])), valid: () => [model.spec, { dtype: 'float64', device: 'cpu', initSeed: 1, dropoutSeed: 2 }], bad: [() => [undefined, null, 5, {}, { input: [4] }, { input: [4], layers: 'x' }], () => [undefined, {}, { dtype: 'float64', device: 'cpu', initSeed: -1, dropoutSeed: 2 }, { dtype: 'float64', device: 'cpu', initSeed: 1 }, { dtype: 'int64', device: 'cpu', initSeed: 1, dropoutSeed: 2 }, { dtype: 'float64', device: 'tpu', initSeed: 1, dropoutSeed: 2 }]] },
  ];

  it('the valid forms of every entry point work', () => {
    for (const e of entries) expect(() => e.call(e.valid()), e.name).not.toThrow();
  });

  it('600 random malformed calls each throw a JS Error', () => {
    const r = rng(2024);
    let calls = 0;
    for (let n = 0; n < 600; n++) {
      const e = entries[Math.floor(r() * entries.length)];
      const args = e.valid();
      const i = Math.floor(r() * e.bad.length);
      const choices = e.bad[i]();
      args[i] = choices[Math.floor(r() * choices.length)];
      let thrown: unknown;
      try {
        e.call(args);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, `${e.name} with argument ${i} = ${String(args[i])}`).toBeInstanceOf(Error);
      expect((thrown as Error).message.length).toBeGreaterThan(10);
      calls++;
    }
    expect(calls).toBe(600);
  });

  it('broken specs are refused by zod (TS) and natively, naming the field', () => {
    const r = rng(99);
    // the MLP's layers: 0 flatten, 1 linear, 2 batchnorm1d, ...
    const mutations: ((s: Record<string, unknown>) => void)[] = [
      (s) => delete s.input,
      (s) => (s.input = [-1]),
      (s) => ((s.layers as Record<string, unknown>[])[1].type = 'conv3d'),
      (s) => ((s.layers as Record<string, unknown>[])[1].inFeatures = 0),
      (s) => ((s.layers as Record<string, unknown>[])[1].outFeatures = 'five'),
      (s) => delete (s.layers as Record<string, unknown>[])[2].numFeatures,
      (s) => (s.loss = { type: 'hinge' }),
      (s) => ((s.layers as unknown[])[0] = null),
      (s) => (s.layers = []),
      (s) => ((s.layers as Record<string, unknown>[])[2].momentum = 3),
      (s) => (s.loss = { type: 'huber', delta: 0 }),
      (s) => (s.loss = { type: 'huber', delta: -1 }),
      (s) => (s.loss = { type: 'huber', delta: 'one' }),
      (s) => (s.loss = { type: 'bce' }),
    ];
    for (let n = 0; n < 100; n++) {
      const s = structuredClone(model.spec) as unknown as Record<string, unknown>;
      mutations[Math.floor(r() * mutations.length)](s);
      expect(() => new Model(s as never)).toThrow(/invalid model spec/);
      expect(() => new addon.Model(s, { dtype: 'float64', device: 'cpu', initSeed: 0, dropoutSeed: 0 })).toThrow(/spec|layers|input|loss/);
    }
  });

  // Per loss: the targets it takes, and bad ones; each error names 'y', what it got and what the loss needs.
  describe.each([
    { loss: { type: 'nll' } as const, valid: () => labels([0, 2]), needs: /int64 class labels of shape \[2\] for nll|label 7 but the model has 3 classes|label -1/ },
    { loss: { type: 'bce-with-logits' } as const, valid: () => tensor(Float64Array.of(0, 1, 0.5, 0.2, 1, 0), [2, 3], { dtype: 'float64' }), needs: /float64 targets of the output's shape \(batch 2\) for bce-with-logits|bce-with-logits needs float targets of the output's shape/ },
    { loss: { type: 'huber', delta: 0.5 } as const, valid: () => zeros([2, 3], { dtype: 'float64' }), needs: /float64 targets of the output's shape \(batch 2\) for huber|huber needs float targets of the output's shape/ },
  ])('loss $loss.type', ({ loss, valid, needs }) => {
    const m = new Model({ ...mlp({ layers: [4, 5, 3] }), loss }, { dtype: 'float64' });
    const float = loss.type !== 'nll';
    const wrong = (): unknown[] => [
      ...notTensors(),
      labels([0]),
      zeros([2], { dtype: 'float64' }),
      zeros([3, 3], { dtype: 'float64' }),
      zeros([2, 3], { dtype: 'float32' }),
      zeros([2, 3, 1], { dtype: 'float64' }),
      ...(float ? [labels([0, 2]), zeros([2, 4], { dtype: 'float64' })] : [labels([0, 7]), labels([-1, 0])]),
    ];
    const calls: [string, (y: unknown) => unknown][] = [
      ['loss', (y) => (m.native as unknown as Record<string, (...a: unknown[]) => unknown>).loss(x(), y)],
      ['lossAndGrad', (y) => (m.native as unknown as Record<string, (...a: unknown[]) => unknown>).lossAndGrad(x(), y, flatOf(m), false)],
      ['hvp', (y) => (m.native as unknown as Record<string, (...a: unknown[]) => unknown>).hvp(x(), y, flatOf(m), flatOf(m))],
      ['quadraticFormGrad', (y) => (m.native as unknown as Record<string, (...a: unknown[]) => unknown>).quadraticFormGrad(x(), y, flatOf(m), flatOf(m))],
    ];

    it('takes its targets in every entry point', () => {
      for (const [name, call] of calls) expect(() => call(valid()), name).not.toThrow();
      expect(Number.isFinite(m.loss(x(), valid()))).toBe(true);
      expect(Number.isFinite(m.curvature(x(), valid(), flatOf(m)))).toBe(true);
    });

    it('refuses wrong targets with a JS Error naming y', () => {
      for (const [name, call] of calls)
        for (const y of wrong()) {
          let thrown: unknown;
          try {
            call(y);
          } catch (err) {
            thrown = err;
          }
          expect(thrown, `${name} with y = ${String(y)}`).toBeInstanceOf(Error);
          expect((thrown as Error).message).toMatch(/'y'|argument 2|tensor/);
        }
    });

    it("says what it got and what the loss needs", () => {
      const bad = float ? [labels([0, 2]), zeros([2, 4], { dtype: 'float64' }), zeros([2, 3], { dtype: 'float32' })] : [labels([0, 7]), zeros([2], { dtype: 'float64' }), labels([0])];
      for (const y of bad) expect(() => m.loss(x(), y as Tensor)).toThrow(needs);
      if (float) expect(() => m.loss(x(), zeros([2, 4], { dtype: 'float64' }))).toThrow(/argument 'y' has shape \[2, 4\] but the model outputs \[2, 3\]/);
      else expect(() => m.loss(x(), zeros([2], { dtype: 'float64' }))).toThrow(/must be int64 class labels of shape \[2\] for nll, got float64 \[2\]/);
    });
  });

  it('a spec whose shapes do not fit names the layer at the first forward', () => {
    const m = new Model({ input: [4], layers: [{ type: 'linear', inFeatures: 5, outFeatures: 2 }] }, { dtype: 'float64' });
    expect(() => m.loss(x(), labels([0, 1]))).toThrow(/spec\.layers\[0\]/);
  });

  it('disposed models and tensors say so', () => {
    const m = new Model(spec, { dtype: 'float64' });
    m.dispose();
    expect(() => m.loss(x(), y())).toThrow(/disposed/);
    expect(() => disposed().toArray()).toThrow(/disposed/);
    expect(() => new (addon.Tensor as unknown as new () => unknown)()).toThrow(/fromArray/);
  });
});

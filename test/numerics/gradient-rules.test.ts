// Gradients by the layers' own first-order reverse rules (Layer::ForwardGrad,
// no autograd graph) against autograd's, on every model case both can take,
// in float64: the loss, the gradient, the correct count and the gradient's
// sum for the NaN check. The rules' own correctness against central
// differences and against PyTorch comes from derivatives.test.ts and
// pytorch-twin.test.ts, which now run on them; this file pins that the two
// methods agree, where each one applies, and that 'rules' is refused by name
// where it cannot apply.
import { describe, expect, it } from 'vitest';
import { loadTorchScript, Model } from '../../lib/model/model.js';
import { countAllocations } from '../../lib/native/runtime.js';
import { mlp } from '../../lib/model/presets.js';
import { join } from 'node:path';
import { hvpCases } from '../model-cases.js';
import { float64Model, randomBatch, repoRoot, toNumbers } from '../helpers.js';
import { ops } from '../../lib/tensor/ops.js';
import { Passes } from '../../lib/model/passes.js';
import { tensor } from '../../lib/tensor/tensor.js';

/** A model the rules take whole: linear layers, dropout, a residual block of them, every activation kind. */
const allRules = () =>
  float64Model(
    {
      input: [5],
      layers: [
        { type: 'linear', inFeatures: 5, outFeatures: 8 },
        { type: 'dropout', p: 0.3 },
        { type: 'residual', body: [{ type: 'linear', inFeatures: 8, outFeatures: 8 }, { type: 'relu' }] },
        { type: 'residual', body: [{ type: 'linear', inFeatures: 8, outFeatures: 6 }, { type: 'tanh' }], shortcut: [{ type: 'linear', inFeatures: 8, outFeatures: 6, bias: false }] },
        { type: 'sigmoid' },
        { type: 'identity' },
        { type: 'linear', inFeatures: 6, outFeatures: 6 },
        { type: 'leakyrelu', negativeSlope: 0.1 },
        { type: 'linear', inFeatures: 6, outFeatures: 6 },
        { type: 'silu' },
        { type: 'linear', inFeatures: 6, outFeatures: 6 },
        { type: 'gelu', approximate: 'tanh' },
        { type: 'linear', inFeatures: 6, outFeatures: 3 },
      ],
    },
    21,
  );

const cases = [...hvpCases, { name: 'dropout, residual blocks of linear layers and every activation kind', make: allRules, batch: () => randomBatch([10, 5], 3, 31) }];

/** loss, gradient, correct count and gradient sum of one method, from the same RNG state (dropout's masks). */
function gradientBy(model: Model, x: ReturnType<typeof randomBatch>['x'], y: ReturnType<typeof randomBatch>['y'], method: 'rules' | 'autograd', rng: Uint8Array) {
  model.native.setRngState(rng);
  const { loss, grad } = model.lossAndGrad(x, y, { updateStats: false, method });
  const result = { loss, grad: toNumbers(grad), correct: model.native.lastCorrect, gradSum: model.native.lastGradSum, gradSquares: model.native.lastGradSquares };
  grad.dispose();
  return result;
}

describe('gradients by the layers\' rules against autograd (float64)', () => {
  let applied = 0;
  for (const c of cases) {
    it(c.name, () => {
      const model = c.make();
      const { x, y } = c.batch();
      const rng = model.native.getRngState();
      const auto = gradientBy(model, x, y, 'autograd', rng);
      let rules: ReturnType<typeof gradientBy>;
      try {
        rules = gradientBy(model, x, y, 'rules', rng);
      } catch (e) {
        // refused by name: the model holds a layer without a rule (conv, norm, pooling, embedding)
        expect(String(e)).toMatch(/method 'rules' cannot take this gradient: a layer of this model has no first-order rule .*use method 'autograd'/);
        // and the default is then autograd, bit for bit
        expect(model.gradMethod).toBe('autograd');
        model.native.setRngState(rng);
        const byDefault = model.lossAndGrad(x, y, { updateStats: false });
        expect(toNumbers(byDefault.grad)).toEqual(auto.grad);
        return;
      }
      applied++;
      expect(model.gradMethod).toBe('rules');
      const scale = Math.max(...auto.grad.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-3);
      const worst = Math.max(...rules.grad.map((g, i) => Math.abs(g - auto.grad[i])));
      expect(worst / scale).toBeLessThan(1e-13);
      expect(Math.abs(rules.loss - auto.loss)).toBeLessThanOrEqual(1e-15 * Math.abs(auto.loss));
      expect(rules.correct).toBe(auto.correct);
      // the NaN/Inf check's sum: the gradient's own sum, in double
      expect(rules.gradSum).not.toBeNull();
      expect(Math.abs(rules.gradSum! - rules.grad.reduce((a, b) => a + b, 0))).toBeLessThan(1e-12 * (1 + scale));
      // and ‖g‖² from the same sweep (SAM's ‖g0‖), by either method
      for (const r of [rules, auto]) {
        const squares = r.grad.reduce((a, b) => a + b * b, 0);
        expect(squares).toBeGreaterThan(0);
        expect(Math.abs(r.gradSquares! - squares)).toBeLessThanOrEqual(1e-14 * squares);
      }
      // the default takes the rules, bit for bit
      model.native.setRngState(rng);
      const byDefault = model.lossAndGrad(x, y, { updateStats: false });
      expect(toNumbers(byDefault.grad)).toEqual(rules.grad);
      model.dispose();
    });
  }
  it('the rules took at least six of the cases (not a vacuous comparison)', () => {
    expect(applied).toBeGreaterThanOrEqual(6);
  });
});

describe("gradients by the layers' rules: float32, aliasing, refusals", () => {
  it('float32 MLP of the benchmark shape: rules within float32 rounding of autograd', () => {
    const model = new Model(mlp({ layers: [784, 64, 64, 10], activation: 'relu' }), { seed: 2 });
    const { x, y } = randomBatch([64, 784], 10, 5, 'float32');
    const a = toNumbers(model.lossAndGrad(x, y, { method: 'autograd', updateStats: false }).grad);
    const r = toNumbers(model.lossAndGrad(x, y, { method: 'rules', updateStats: false }).grad);
    const scale = Math.max(...a.map(Math.abs));
    expect(Math.max(...r.map((g, i) => Math.abs(g - a[i]))) / scale).toBeLessThan(1e-5);
    // which path ran, seen from outside: the rules allocate fewer blocks (no
    // graph's buffers, no per-parameter gradients to copy), and the default
    // allocates exactly as many as they do (18 against 23-26 on 1.13 and 2.13)
    const out = model.zerosLikeParams();
    const blocks = (method?: 'rules' | 'autograd') => countAllocations(() => model.lossAndGrad(x, y, { method, out, updateStats: false })).count;
    expect(blocks('rules')).toBeLessThan(blocks('autograd'));
    expect(blocks()).toBe(blocks('rules'));
  });

  it('out overlapping the parameters or the batch: the same gradient as into a fresh vector', () => {
    const model = float64Model(mlp({ layers: [4, 4, 4], activation: 'tanh' }), 3);
    const P = model.numParams; // 4·4 + 4 + 4·4 + 4 = 40: the batch below is `out` itself, seen as [10, 4]
    expect(P).toBe(40);
    const values = Float64Array.from({ length: P }, (_, i) => Math.sin(i));
    const { y } = randomBatch([10, 4], 4, 9);
    const x = tensor(values, [10, 4], { dtype: 'float64' });
    const fresh = toNumbers(model.lossAndGrad(x, y, { method: 'rules' }).grad);
    const store = tensor(values, [P], { dtype: 'float64' });
    model.lossAndGrad(store.view([10, 4]), y, { method: 'rules', out: store });
    expect(toNumbers(store)).toEqual(fresh);
    // into the parameters themselves: the gradient at the old w
    const w = model.params.clone();
    model.lossAndGrad(x, y, { method: 'rules', out: model.params });
    expect(toNumbers(model.params)).toEqual(fresh);
    ops.copy(model.params, w);
  });

  it('‖g‖² with the pass: of the gradient as written under a loss scale; a step\'s passes give it for one batch, not for micro-batches', () => {
    const model = float64Model(mlp({ layers: [6, 5, 3], activation: 'tanh' }), 4);
    const { x, y } = randomBatch([8, 6], 3, 2);
    const g = model.zerosLikeParams();
    const squaresOf = (v: ArrayLike<number>) => Array.from(v).reduce((a, b) => a + b * b, 0);
    for (const scale of [1, 1024]) {
      model.native.lossAndGrad(x, y, g, false, scale); // autograd under a scale (the rules refuse one)
      const written = squaresOf(toNumbers(g));
      expect(Math.abs(model.native.lastGradSquares! - written)).toBeLessThanOrEqual(1e-14 * written);
    }
    const passes = new Passes(model, { forward: 0, backward: 0, hvp: 0 });
    passes.use([{ x, y }]);
    passes.lossAndGrad(g, false);
    expect(passes.gradSquares).toBe(model.native.lastGradSquares);
    const halves = [1, 2].map((seed) => randomBatch([4, 6], 3, seed));
    passes.use(halves);
    passes.lossAndGrad(g, false);
    expect(passes.gradSquares).toBeNull(); // ‖Σ w_j g_j‖² is no sum of the halves' squares
    expect(passes.gradSum).not.toBeNull();
    model.dispose();
  });

  it("'rules' is refused by name where it cannot apply; a bad method is named", () => {
    const { x, y } = randomBatch([4, 784], 10, 1, 'float32');
    const bf16 = new Model(mlp({ layers: [784, 8, 10] }), { seed: 1, precision: 'bf16' });
    expect(() => bf16.lossAndGrad(x, y, { method: 'rules' })).toThrow(/method 'rules' cannot take this gradient: mixed precision .*use method 'autograd'/);
    expect(() => bf16.lossAndGrad(x, y)).not.toThrow();
    expect(bf16.gradMethod).toBe('autograd');
    const scripted = loadTorchScript(join(repoRoot, 'test', 'fixtures', 'torchscript', 'mlp-784-scripted.pt'));
    expect(() => scripted.lossAndGrad(x, y, { method: 'rules' })).toThrow(/a TorchScript model has no first-order rules/);
    expect(scripted.gradMethod).toBe('autograd');
    const plain = new Model(mlp({ layers: [784, 8, 10] }), { seed: 1 });
    expect(plain.gradMethod).toBe('rules');
    expect(() => plain.lossAndGrad(x, y, { method: 'exact' as never })).toThrow(/argument 'method' is 'exact'; use 'rules' or 'autograd'/);
    expect(() => plain.lossAndGrad(x, y, { method: 3 as never })).toThrow(/options\.method/);
    expect(() => plain.native.lossAndGrad(x, y, plain.zerosLikeParams(), true, 2, 'rules')).toThrow(/a loss scale differentiates S·L/);
  });
});

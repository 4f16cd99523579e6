// Gradients, HVPs and third-order gradients against central finite
// differences in float64, on an MLP with BatchNorm and on a small CNN.
import { describe, expect, it } from 'vitest';
import type { Model } from '../../lib/model/model.js';
import { ops } from '../../lib/tensor/ops.js';
import { tensor, type Tensor } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, randomVector, toNumbers } from '../helpers.js';
import { derivativeCases, huberKinkCase, hvpCases } from '../model-cases.js';

/** f evaluated at w ± eps·d, parameters restored exactly afterwards. */
function centralDifference<T>(model: Model, d: Tensor, eps: number, f: () => T): [T, T] {
  const w = model.params.clone();
  ops.axpy(model.params, eps, d);
  const plus = f();
  ops.copy(model.params, w);
  ops.axpy(model.params, -eps, d);
  const minus = f();
  ops.copy(model.params, w);
  w.dispose();
  return [plus, minus];
}

describe.each(derivativeCases)('$name', ({ make, batch }) => {
  const model = make();
  const { x, y } = batch();
  const P = model.numParams;
  const eps = 1e-5;

  it('lossAndGrad agrees with central differences of the loss', () => {
    const { grad } = model.lossAndGrad(x, y, { updateStats: false });
    const g = toNumbers(grad);
    // every coordinate of a random subset, and three random directions
    const coords = Array.from({ length: 25 }, (_, k) => (k * 7919) % P);
    for (const i of coords) {
      const basis = new Float64Array(P);
      basis[i] = 1;
      const u = tensor(basis, [P], { dtype: 'float64' });
      const [lp, lm] = centralDifference(model, u, eps, () => model.loss(x, y));
      expect(Math.abs((lp - lm) / (2 * eps) - g[i])).toBeLessThan(1e-7);
      u.dispose();
    }
    for (let s = 0; s < 3; s++) {
      const d = randomVector(P, 100 + s);
      const [lp, lm] = centralDifference(model, d, eps, () => model.loss(x, y));
      expect(Math.abs((lp - lm) / (2 * eps) - ops.dot(grad, d))).toBeLessThan(1e-7);
    }
  });

  it('hvp agrees with central differences of the gradient', () => {
    for (let s = 0; s < 3; s++) {
      const v = randomVector(P, 200 + s);
      const hv = toNumbers(model.hvp(x, y, v));
      const [gp, gm] = centralDifference(model, v, eps, () => toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad));
      let err = 0;
      let scale = 0;
      for (let i = 0; i < P; i++) {
        err = Math.max(err, Math.abs((gp[i] - gm[i]) / (2 * eps) - hv[i]));
        scale = Math.max(scale, Math.abs(hv[i]));
      }
      expect(scale).toBeGreaterThan(1e-3);
      expect(err).toBeLessThan(1e-6 * Math.max(1, scale));
    }
  });

  it('the gradient of vᵀHv agrees with central differences of hvp', () => {
    const v = randomVector(P, 300);
    const { q, grad } = model.quadraticFormGrad(x, y, v);
    const hv = model.hvp(x, y, v);
    expect(Math.abs(q - ops.dot(hv, v))).toBeLessThan(1e-10);
    for (let s = 0; s < 3; s++) {
      const d = randomVector(P, 400 + s);
      const [qp, qm] = centralDifference(model, d, eps, () => {
        const h = model.hvp(x, y, v);
        const val = ops.dot(h, v);
        h.dispose();
        return val;
      });
      const exact = ops.dot(grad, d);
      expect(Math.abs((qp - qm) / (2 * eps) - exact)).toBeLessThan(1e-6 * Math.max(1, Math.abs(exact)));
    }
  });
});

// The default HVP (hand-written forward-over-reverse rules per layer) against
// LibTorch's autograd differentiating the gradient: two independent ways to
// the same numbers, on every layer type, in train and eval mode.
describe('forward-over-reverse HVP equals double backward', () => {
  describe.each(hvpCases)('$name', ({ make, batch }) => {
    it.each([true, false])('training = %s', (training) => {
      const model = make();
      model.train(training);
      const { x, y } = batch();
      const v = randomVector(model.numParams, 500);
      const state = model.native.getRngState(); // the same dropout mask for both
      const a = toNumbers(model.hvp(x, y, v));
      model.native.setRngState(state);
      const b = toNumbers(model.hvp(x, y, v, undefined, { method: 'double-backward' }));
      const scale = Math.max(...b.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-3);
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-13 * scale);
    });
  });

  it('writes H v over v itself, or over the parameters it reads, when out is one of them', () => {
    const { make, batch } = derivativeCases[1]; // conv, BatchNorm, linear: each reads its parameters after writing its block
    const model = make();
    const { x, y } = batch();
    const v = randomVector(model.numParams, 501);
    const expected = toNumbers(model.hvp(x, y, v));
    model.hvp(x, y, v, model.params);
    expect(maxAbsDiff(toNumbers(model.params), expected)).toBe(0);
    const other = make();
    other.hvp(x, y, v, v);
    expect(maxAbsDiff(toNumbers(v), expected)).toBe(0);
  });

  it("Huber's second derivative is 0 at the kink |r| = delta (PyTorch's convention), 1 inside, 0 outside", () => {
    const model = huberKinkCase.make();
    const { x, y } = huberKinkCase.batch();
    const P = model.numParams; // 8 weights (all 0), then the 4 biases
    // along the biases, H = diag(Σ_i ℓ''(r_ij))/n = diag(ℓ''_j)/4: columns at +delta, −delta, inside, outside
    const expected = [0, 0, 0.25, 0];
    const v = tensor(Float64Array.from({ length: P }, (_, i) => (i >= 8 ? 1 : 0)), [P], { dtype: 'float64' });
    for (const method of ['forward-over-reverse', 'double-backward'] as const) {
      const hv = Array.from(toNumbers(model.hvp(x, y, v, undefined, { method })).subarray(8));
      expect(maxAbsDiff(hv, expected), method).toBeLessThan(1e-15);
    }
    expect(Math.abs(model.curvature(x, y, v) - 0.25)).toBeLessThan(1e-15);
    // the gradient is continuous there: ℓ' = clamp(r, −delta, delta)
    const g = Array.from(toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad).subarray(8));
    expect(maxAbsDiff(g, [0.125, -0.125, 0.125 / 4, 0.125])).toBeLessThan(1e-15);
  });

  it('rejects an unknown method, naming it and the choices', () => {
    const { make, batch } = derivativeCases[0];
    const model = make();
    const { x, y } = batch();
    const v = randomVector(model.numParams, 502);
    expect(() => model.hvp(x, y, v, undefined, { method: 'exact' as never })).toThrow(
      "argument 'method' is 'exact'; use 'forward-over-reverse' or 'double-backward'",
    );
  });
});

// The formulas docs/math.md and docs/reproduction.md state, checked
// numerically (each names the section it checks). The Det-SAM large-cube
// limit det H·(2a)^{2P}/(2π)^P is checked in test/numerics/sharpness.test.ts.
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { tridiagonalEigen } from '../../lib/hessian/linalg.js';
import { Model } from '../../lib/model/model.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { rng } from '../helpers.js';

/** L(w) = ½·Σ h_i·(w_i − c_i)²: Linear(P→1, no bias) with MSE on the rows √(P·h_i/2)·e_i. */
function diagonalQuadratic(h: number[], w: number[], c = h.map(() => 0)) {
  const P = h.length;
  const X = new Float64Array(P * P);
  h.forEach((hi, i) => (X[i * P + i] = Math.sqrt((P * hi) / 2)));
  const model = new Model({ input: [P], layers: [{ type: 'linear', inFeatures: P, outFeatures: 1, bias: false }], loss: { type: 'mse' } }, { dtype: 'float64' });
  model.setParams(w);
  const y = tensor(new Float64Array(h.map((hi, i) => Math.sqrt((P * hi) / 2) * c[i])), [P, 1], { dtype: 'float64' });
  return { model, x: tensor(X, [P, P], { dtype: 'float64' }), y };
}

/** (1/2a)·∫_{−a}^{a} exp(−h·u²/2) du by Simpson's rule (2000 panels: 1e-13 here). */
function cubeFactor(h: number, a: number): number {
  const n = 2000;
  const dx = (2 * a) / n;
  let s = 0;
  for (let k = 0; k <= n; k++) s += (k === 0 || k === n ? 1 : k % 2 ? 4 : 2) * Math.exp((-h * (-a + k * dx) ** 2) / 2);
  return (s * dx) / 3 / (2 * a);
}

describe('math.md §1: the Det-SAM measure (E exp(−uᵀHu/2))⁻², u uniform on [−a, a]^P', () => {
  const h = [0.5, 1, 2, 4];
  const trace = h.reduce((s, x) => s + x, 0);
  const exact = (a: number) => h.reduce((s, hi) => s * cubeFactor(hi, a), 1) ** -2;

  it('the probe with exact quadratic forms meets the closed form on a diagonal H', () => {
    const q = diagonalQuadratic(h, [0.3, -0.2, 0.1, 0.5]);
    const probe = hessian(q.model, q, { mode: 'eval' }).sharpness({ measure: 'det', halfCube: 0.7, samples: 20000, seed: 5 });
    expect(Math.abs(probe.estimate - exact(0.7))).toBeLessThan(4 * probe.standardError!);
  });

  it('for a small cube it is 1 + (a²/3)·tr H + O(a⁴), not 1 + (a²/6)·tr H', () => {
    for (const a of [0.05, 0.02, 0.01]) {
      const slope = (exact(a) - 1) / ((a * a * trace) / 3);
      expect(Math.abs(slope - 1)).toBeLessThan(a * a * 40); // the O(a²) relative correction
    }
    // (a²/6) is the expansion of the rule's finite-difference objective, which applies psi to d = q/2
    const a = 0.01;
    const halfObjective = h.reduce((s, hi) => s * cubeFactor(hi / 2, a), 1) ** -2;
    expect((halfObjective - 1) / ((a * a * trace) / 6)).toBeCloseTo(1, 3);
  });
});

describe('math.md §3: the Frob-SAM variance form in terms of the curvature samples', () => {
  it('½·SampleVar(L_i)/ρ² = ½·SampleVar(gᵀu_i + ½ρ·q_i) on a quadratic, not ½ρ²·SampleVar(q_i/2)', () => {
    const h = [1, 2, 3];
    const w = [1, -1, 0.5];
    const r = rng(4);
    const dirs = Array.from({ length: 6 }, () => h.map(() => r() * 2 - 1));
    let k = 0;
    const rho = 0.1;
    const q = diagonalQuadratic(h, w);
    const opt = new Optimizer(q.model, { base: { kind: 'sgd', lr: 1 }, sharpness: { kind: 'frob-sam', rho, lambda: 1, samples: 6, mu: () => dirs[k++] } });
    const penalty = opt.step(q.x, q.y).penalty;
    const g = h.map((hi, i) => hi * w[i]);
    const sampleVar = (xs: number[]) => {
      const m = xs.reduce((s, x) => s + x, 0) / xs.length;
      return xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1);
    };
    const gu = dirs.map((u) => u.reduce((s, ui, i) => s + g[i] * ui, 0));
    const quad = dirs.map((u) => u.reduce((s, ui, i) => s + h[i] * ui * ui, 0));
    const stated = 0.5 * sampleVar(gu.map((x, i) => x + 0.5 * rho * quad[i]));
    expect(Math.abs(penalty - stated) / stated).toBeLessThan(1e-10);
    // the form that drops the first-order part is off by far more than rounding
    const dropped = 0.5 * rho * rho * sampleVar(quad.map((x) => x / 2));
    expect(Math.abs(penalty - dropped) / stated).toBeGreaterThan(0.5);
  });
});

describe('docs/reproduction.md: E[½·Var L(w + ρu)]/ρ² = ½‖g‖² + (ρ²/4)‖H‖_F² + (ρ²/2)·gᵀ∇tr H + O(ρ⁴), u ~ N(0, I)', () => {
  // on ℓ(w₁w₂) = (w₁w₂ − 1)² (Linear(1→1) ∘ Linear(1→1), MSE against 1 on the
  // input 1), where L(w + ρu) is a polynomial in u: Gauss-Hermite quadrature
  // (20 nodes a coordinate) gives its mean and variance over u exactly
  const model = new Model(
    { input: [1], layers: [{ type: 'linear', inFeatures: 1, outFeatures: 1, bias: false }, { type: 'linear', inFeatures: 1, outFeatures: 1, bias: false }], loss: { type: 'mse' } },
    { dtype: 'float64' },
  );
  const x = tensor(new Float64Array([1]), [1, 1], { dtype: 'float64' });
  const y = tensor(new Float64Array([1]), [1, 1], { dtype: 'float64' });
  const m = 20;
  const jacobi = tridiagonalEigen(new Float64Array(m), Float64Array.from({ length: m - 1 }, (_, k) => Math.sqrt(k + 1)), true);
  const nodes = jacobi.values;
  const weights = nodes.map((_, j) => jacobi.vectors![j] ** 2); // first components², summing to 1
  const [w1, w2] = [0.8, 0.6];
  const loss = (a: number, b: number) => {
    model.setParams([a, b]);
    return model.loss(x, y);
  };
  const halfVarOverRho2 = (rho: number) => {
    let s1 = 0, s2 = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        const l = loss(w1 + rho * nodes[i], w2 + rho * nodes[j]);
        s1 += weights[i] * weights[j] * l;
        s2 += weights[i] * weights[j] * l * l;
      }
    return (0.5 * (s2 - s1 * s1)) / (rho * rho);
  };
  // ℓ = (p − 1)², p = w₁w₂: g = 2(p − 1)·(w₂, w₁); H = 2·[[w₂², w₁w₂], [w₁w₂, w₁²]] + 2(p − 1)·[[0, 1], [1, 0]]; tr H = 2(w₁² + w₂²)
  const p = w1 * w2;
  const g = [2 * (p - 1) * w2, 2 * (p - 1) * w1];
  const H = [2 * w2 * w2, 2 * p + 2 * (p - 1), 2 * w1 * w1];
  const frob = H[0] ** 2 + 2 * H[1] ** 2 + H[2] ** 2;
  const gGradTrace = g[0] * 4 * w1 + g[1] * 4 * w2;
  const residual = (rho: number, withThirdOrder: boolean) =>
    halfVarOverRho2(rho) - 0.5 * (g[0] ** 2 + g[1] ** 2) - ((rho * rho) / 4) * frob - (withThirdOrder ? ((rho * rho) / 2) * gGradTrace : 0);

  it('the residual with the gᵀ∇tr H term is O(ρ⁴); without it, O(ρ²)', () => {
    const [a, b] = [residual(0.02, true), residual(0.01, true)];
    expect(a / b).toBeGreaterThan(12); // 16 for ρ⁴
    expect(a / b).toBeLessThan(20);
    const [c, d] = [residual(0.02, false), residual(0.01, false)];
    expect(c / d).toBeGreaterThan(3.5); // 4 for ρ²: the term the expansion needs
    expect(c / d).toBeLessThan(4.5);
    expect(Math.abs(c)).toBeGreaterThan(100 * Math.abs(a));
  });
});

// The paper's toy claims, on the smallest network that has them: two scalar
// weights in a row, ℓ(w₁·w₂) = (w₁w₂ − 1)² (Linear(1→1) ∘ Linear(1→1), no
// biases, MSE against 1 on the input 1). Its Hessian is
//   H = ℓ''·[[w₂², w₁w₂], [w₁w₂, w₁²]] + ℓ'·[[0, 1], [1, 0]],  ℓ' = 2(w₁w₂ − 1), ℓ'' = 2,
// so at the origin H = [[0, −2], [−2, 0]]: the saddle L(a, b) = a² − b² (+1)
// in the rotated coordinates a, b = (w₂ ∓ w₁)/√2, eigenvalues ±2.
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import type { SharpnessConfigInput } from '../../lib/optim/rules/index.js';
import { tensor } from '../../lib/tensor/tensor.js';

function product(w1: number, w2: number) {
  const model = new Model(
    {
      input: [1],
      layers: [
        { type: 'linear', inFeatures: 1, outFeatures: 1, bias: false },
        { type: 'linear', inFeatures: 1, outFeatures: 1, bias: false },
      ],
      loss: { type: 'mse' },
    },
    { dtype: 'float64' },
  );
  model.setParams([w1, w2]);
  const x = tensor(new Float64Array([1]), [1, 1], { dtype: 'float64' });
  const y = tensor(new Float64Array([1]), [1, 1], { dtype: 'float64' });
  return { model, x, y, dispose: () => [model, x, y].forEach((t) => t.dispose()) };
}

/** E exp(2·u₁u₂) for u uniform on [−a, a]² (= E exp(−uᵀHu/2) at the saddle), by the series Σ_k 2^k E[u^k]²/k!. */
function cubeMean(a: number): number {
  let s = 0, term = 1;
  for (let k = 0; k <= 60; k += 2) {
    const moment = a ** k / (k + 1); // E u^k, k even
    s += (2 ** k * moment * moment) / term;
    term *= (k + 1) * (k + 2);
  }
  return s;
}

describe('the saddle L(a, b) = a² − b²: the trace measure cannot see it, Frobenius and det can', () => {
  const p = product(0, 0);
  const h = hessian(p.model, { x: p.x, y: p.y });
  it('the exact Hessian: eigenvalues ±2, tr H = 0, ‖H‖_F² = 8', () => {
    const s = h.spectrum();
    expect(s.eigenvalues[0]).toBeCloseTo(-2, 12);
    expect(s.eigenvalues[1]).toBeCloseTo(2, 12);
    expect(s.trace).toBe(0);
    expect(s.frobeniusSquared).toBeCloseTo(8, 12);
  });
  it('the measures of math §1 with exact quadratic forms: trace 0 (a flat point has 0 too), Frobenius 8, det ≠ its flat value 1', () => {
    const trace = h.sharpness({ measure: 'trace', samples: 4000, seed: 1 });
    expect(Math.abs(trace.estimate)).toBeLessThan(3 * trace.standardError!);
    const frob = h.sharpness({ measure: 'frobenius', samples: 8000, seed: 2 });
    // Var of the sample variance of uᵀHu = −4u₁u₂ (Var 16, 4th moment 16·9): SE ≈ 0.15 at 8000 samples
    expect(Math.abs(frob.estimate - 8)).toBeLessThan(0.5);
    // det: phi(E psi(uᵀHu)) = (E exp(2u₁u₂))⁻² over the cube [−1, 1]²; at a flat point (H = 0) it is phi(psi(0)) = 1
    const det = h.sharpness({ measure: 'det', halfCube: 1, samples: 20000, seed: 3 });
    const exact = cubeMean(1) ** -2;
    // the series against a midpoint rule on a 600×600 grid of the cube
    let grid = 0;
    for (let i = 0; i < 600; i++) for (let j = 0; j < 600; j++) grid += Math.exp(2 * (-1 + (i + 0.5) / 300) * (-1 + (j + 0.5) / 300));
    expect(Math.abs((grid / 360000) ** -2 - exact)).toBeLessThan(1e-5);
    expect(Math.abs(det.estimate - exact)).toBeLessThan(3 * det.standardError!);
    expect(Math.abs(det.estimate - 1)).toBeGreaterThan(20 * det.standardError!);
  });
  it('cleans up', () => {
    h.dispose();
    p.dispose();
  });
});

describe('ℓ(w₁·w₂): det H is invariant under (w₁, w₂) → (αw₁, w₂/α), tr H is not', () => {
  const [w1, w2] = [0.7, 1.3];
  const z = w1 * w2;
  const d1 = 2 * (z - 1), d2 = 2;
  it.each([0.5, 2, 3])('α = %s', (alpha) => {
    const base = product(w1, w2), moved = product(alpha * w1, w2 / alpha);
    const hb = hessian(base.model, { x: base.x, y: base.y }), hm = hessian(moved.model, { x: moved.x, y: moved.y });
    const det = (e: number[]) => e[0] * e[1];
    const sb = hb.spectrum(), sm = hm.spectrum();
    // det H = ℓ''²z² − (ℓ''z + ℓ')² = −ℓ'² − 2ℓ''ℓ'z depends on z = w₁w₂ only
    expect(det(sm.eigenvalues)).toBeCloseTo(det(sb.eigenvalues), 11);
    expect(det(sb.eigenvalues)).toBeCloseTo(-d1 * d1 - 2 * d2 * d1 * z, 11);
    // tr H = ℓ''·(w₁² + w₂²) changes with α
    expect(sm.trace).toBeCloseTo(d2 * (alpha * alpha * w1 * w1 + (w2 * w2) / (alpha * alpha)), 11);
    expect(Math.abs(sm.trace - sb.trace)).toBeGreaterThan(0.3);
    for (const x of [hb, hm, base, moved]) x.dispose();
  });
});

describe('next to the saddle: which penalties push away from it', () => {
  // At w = (ε, ε) the plain gradient already points away from the saddle (towards the
  // minima w₁w₂ = 1). What each rule adds — its step minus the plain SGD step from the
  // same point — is its penalty's step, −lr·(penalty gradient):
  //   tr H = 2(w₁² + w₂²) is least at the saddle: ∇ = 4ε(1, 1), Trace-SAM pulls back;
  //   ‖H‖_F² = 4(w₁⁴ + w₂⁴) + 8(2w₁w₂ − 1)² falls along w₁ = w₂: ∇ ≈ −32ε(1, 1), the
  //   measure pushes away;
  //   det H = −4(z − 1)² − 8(z − 1)z (z = w₁w₂) is −4 at the saddle and grows with z: the
  //   determinant too is least at the saddle, and a small cube's Det-SAM measure is
  //   1 + (a²/6)·tr H + O(a⁴) anyway (psi(q/2) = exp(−q/4), E q = (a²/3)·tr H).
  // The finite-difference Frob-SAM objective (λ/ρ²)·½Var L(w + ρu) also holds
  // (λ/2)·‖g‖² (math §3): near a saddle that gradient-norm term dominates and pulls back
  // (penalty gradient ≈ λ·H·g).
  const eps = 0.1;
  const lr = 1e-3;
  function penaltyStep(sharpness: SharpnessConfigInput | undefined): number {
    const p = product(eps, eps);
    const opt = new Optimizer(p.model, { base: { kind: 'sgd', lr }, sharpness, seed: 4 });
    opt.step(p.x, p.y);
    const w = Array.from(p.model.getParams());
    opt.dispose();
    p.dispose();
    return (w[0] - eps + w[1] - eps) / 2; // along (1, 1)
  }
  const sgd = penaltyStep(undefined);
  const g = 2 * (eps * eps - 1) * eps; // each component of g0
  it('the plain step moves away from the saddle', () => expect(sgd).toBeCloseTo(-lr * g, 14));
  const rho = 0.1, lambda = 1;
  it('Trace-SAM (exact): pulls back, by −lr·λρ²·½·∇tr H', () => {
    const s = penaltyStep({ kind: 'trace-sam', rho, lambda, samples: 4000, estimator: 'exact' }) - sgd;
    // exact estimator: grad = g0 + λρ²·(1/n)Σ ½∇q_i (math §6); the Monte Carlo error is ≈ 5% here
    expect(s / (-lr * lambda * rho * rho * 0.5 * 4 * eps)).toBeGreaterThan(0.75);
    expect(s / (-lr * lambda * rho * rho * 0.5 * 4 * eps)).toBeLessThan(1.25);
  });
  it('Frob-SAM (exact): pushes away from the saddle', () => {
    expect(penaltyStep({ kind: 'frob-sam', rho, lambda, samples: 4000, estimator: 'exact' }) - sgd).toBeGreaterThan(0);
  });
  it('Frob-SAM (finite differences): its gradient-norm term pulls back, by ≈ −lr·λ·H·g', () => {
    const s = penaltyStep({ kind: 'frob-sam', rho, lambda, samples: 4000, directions: 'antithetic' }) - sgd;
    const hg = (2 * eps * eps + 2 * eps * eps + 2 * (eps * eps - 1)) * g; // (H g)₁ = (H₁₁ + H₁₂)·g
    expect(s / (-lr * lambda * hg)).toBeGreaterThan(0.85);
    expect(s / (-lr * lambda * hg)).toBeLessThan(1.15);
  });
  it('Det-SAM (exact, cube a = 0.1): pulls back, as its small-cube form λρ²·(a²/6)·tr H says', () => {
    const a = 0.1;
    const s = penaltyStep({ kind: 'det-sam', rho: 1, lambda, halfCube: a, samples: 4000, estimator: 'exact' }) - sgd;
    expect(s / (-lr * lambda * ((a * a) / 6) * 4 * eps)).toBeGreaterThan(0.75);
    expect(s / (-lr * lambda * ((a * a) / 6) * 4 * eps)).toBeLessThan(1.25);
  });
});

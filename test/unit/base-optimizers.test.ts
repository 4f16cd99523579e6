// SGD (momentum, nesterov, weight decay), Adam and AdamW against updates
// computed by hand from PyTorch's documented algorithms.
import { describe, expect, it } from 'vitest';
import { createBaseOptimizer, type BaseConfigInput } from '../../lib/optim/base.js';
import { schedule } from '../../lib/optim/schedule.js';
import { ops } from '../../lib/tensor/ops.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, toNumbers } from '../helpers.js';

const w0 = [0.5, -1.25, 2, 0.1];
const grads = [
  [0.3, -0.2, 0.1, 1.5],
  [-0.4, 0.25, 0.05, 1.0],
  [0.2, 0.2, -0.3, -0.5],
];

function run(config: BaseConfigInput, lrs = [0.1, 0.1, 0.1]) {
  const w = tensor(new Float64Array(w0));
  const opt = createBaseOptimizer(config, w);
  grads.forEach((g, t) => opt.step(w, tensor(new Float64Array(g)), lrs[t]));
  return Array.from(toNumbers(w));
}

describe('base optimizers', () => {
  it('SGD with momentum, dampening, weight decay and nesterov', () => {
    for (const nesterov of [false, true]) {
      const mu = 0.9, wd = 0.01, lr = 0.1;
      const w = [...w0];
      let b: number[] = [];
      grads.forEach((g, t) => {
        const d = g.map((gi, i) => gi + wd * w[i]);
        b = t === 0 ? d : b.map((bi, i) => mu * bi + d[i]);
        const step = nesterov ? d.map((di, i) => di + mu * b[i]) : b;
        step.forEach((s, i) => (w[i] -= lr * s));
      });
      expect(maxAbsDiff(run({ kind: 'sgd', lr, momentum: mu, weightDecay: wd, nesterov }), w)).toBeLessThan(1e-15);
    }
    const damp = 0.3;
    const w = [...w0];
    let b: number[] = [];
    grads.forEach((g, t) => {
      b = t === 0 ? [...g] : b.map((bi, i) => 0.9 * bi + (1 - damp) * g[i]);
      b.forEach((s, i) => (w[i] -= 0.1 * s));
    });
    expect(maxAbsDiff(run({ kind: 'sgd', lr: 0.1, momentum: 0.9, dampening: damp }), w)).toBeLessThan(1e-15);
  });

  it('Adam (L2 weight decay) and AdamW (decoupled weight decay)', () => {
    for (const kind of ['adam', 'adamw'] as const) {
      const b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.05, lr = 0.01;
      const w = [...w0];
      const m = w.map(() => 0), v = w.map(() => 0);
      grads.forEach((g0, k) => {
        const t = k + 1;
        if (kind === 'adamw') w.forEach((wi, i) => (w[i] = wi * (1 - lr * wd)));
        const g = kind === 'adam' ? g0.map((gi, i) => gi + wd * w[i]) : g0;
        g.forEach((gi, i) => {
          m[i] = b1 * m[i] + (1 - b1) * gi;
          v[i] = b2 * v[i] + (1 - b2) * gi * gi;
          const mhat = m[i] / (1 - b1 ** t), vhat = v[i] / (1 - b2 ** t);
          w[i] -= (lr * mhat) / (Math.sqrt(vhat) + eps);
        });
      });
      // PyTorch's denominator is sqrt(v)/sqrt(1−β2^t) + eps, i.e. sqrt(vhat) + eps, as above
      expect(maxAbsDiff(run({ kind, lr, beta1: b1, beta2: b2, eps, weightDecay: wd }, [lr, lr, lr]), w)).toBeLessThan(1e-13);
    }
  });

  it('a step from given weights (a sharpness-aware step restoring w0 in its update) equals a copy and then the step, bit for bit', () => {
    // float32, as the fused loop runs; the params hold other (perturbed) values each time
    const n = 70_001;
    let s = 5;
    const draw = () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
    const start = Float32Array.from({ length: n }, draw);
    const gs = [0, 1, 2].map(() => Float32Array.from({ length: n }, draw));
    const grouping = {
      groups: [
        { names: ['a'], lr: 0.1, weightDecay: 0.01 },
        { names: ['b'], lr: 0.02, weightDecay: 0 },
      ],
      segments: [
        { offset: 0, numel: 40_000, group: 0 },
        { offset: 40_000, numel: n - 40_000, group: 1 },
      ],
    };
    const configs: BaseConfigInput[] = [
      { kind: 'sgd', lr: 0.1 },
      { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 5e-4 },
      { kind: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 },
      { kind: 'adam', lr: 0.01, weightDecay: 0.05 },
      { kind: 'adamw', lr: 0.01 },
    ];
    for (const config of configs)
      for (const grouped of [false, true]) {
        const [copied, fused] = [tensor(start), tensor(start)];
        const [a, b] = [createBaseOptimizer(config, copied, grouped ? grouping : undefined), createBaseOptimizer(config, fused, grouped ? grouping : undefined)];
        const w0 = tensor(start);
        gs.forEach((g, t) => {
          ops.copy(w0, copied);
          // both perturbed, then: copy w0 back and step; or step from w0
          for (const p of [copied, fused]) ops.axpy(p, 0.3, tensor(g));
          ops.copy(copied, w0);
          const lrs = grouped ? [0.1 / (t + 1), 0.02] : 0.1 / (t + 1);
          const decays = grouped ? [0.01, 0] : undefined;
          a.step(copied, tensor(g), lrs, decays);
          b.step(fused, tensor(g), lrs, decays, w0);
        });
        expect(Array.from(toNumbers(fused)), `${config.kind} ${JSON.stringify(config)} grouped ${grouped}`).toEqual(Array.from(toNumbers(copied)));
      }
  });

  it('schedules: constant, multistep, cosine and linear warm-up', () => {
    expect(schedule(0.1)(50)).toBe(0.1);
    const ms = schedule(1, { kind: 'multistep', milestones: [2, 4], gamma: 0.5 });
    expect([0, 1, 2, 3, 4, 9].map(ms)).toEqual([1, 1, 0.5, 0.5, 0.25, 0.25]);
    const cos = schedule(1, { kind: 'cosine', total: 10, min: 0 });
    expect(cos(0)).toBe(1);
    expect(cos(5)).toBeCloseTo(0.5, 15);
    expect(cos(10)).toBeCloseTo(0, 15);
    const warm = schedule(1, { kind: 'constant' }, { steps: 4 });
    expect([0, 1, 2, 4].map(warm)).toEqual([0, 0.25, 0.5, 1]);
  });
});

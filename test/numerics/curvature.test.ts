// vᵀHv by second-order jets pushed forward (model.curvature, the trace
// probes' quadratic forms) against ⟨v, Hv⟩ from both HVP methods, on every
// layer type, in train and eval mode (float64, 1e-12), against a central
// second difference of the loss, per row of a block, and through a cache.
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { hvpCache } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { ops } from '../../lib/tensor/ops.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { float64Model, randomBatch, randomVector, toNumbers } from '../helpers.js';
import { hvpCases } from '../model-cases.js';

const relClose = (a: number, b: number, tol = 1e-12) => expect(Math.abs(a - b) / Math.max(1, Math.abs(b))).toBeLessThan(tol);

describe('vᵀHv by forward-over-forward jets equals ⟨v, Hv⟩ (float64)', () => {
  for (const c of hvpCases) {
    it(`${c.name}: train and eval mode, against both HVP methods`, () => {
      const model = c.make();
      const { x, y } = c.batch();
      for (const training of [true, false]) {
        model.train(training);
        for (let k = 0; k < 2; k++) {
          const v = randomVector(model.numParams, 300 + k);
          // dropout draws its masks in the forward pass, in layer order, in every method: the same stream gives the same masks
          const rng = model.native.getRngState();
          const q = model.curvature(x, y, v);
          const reference: number[] = [];
          for (const method of ['forward-over-reverse', 'double-backward'] as const) {
            model.native.setRngState(rng);
            const hv = model.hvp(x, y, v, undefined, { method });
            reference.push(ops.dot(v, hv));
            model.native.setRngState(rng);
            relClose(model.curvature(x, y, v, { method }), reference[reference.length - 1]);
          }
          relClose(q, reference[0]);
          relClose(q, reference[1]);
          expect(Math.abs(q)).toBeGreaterThan(1e-8); // not a vacuous zero
        }
      }
    });
  }
});

describe('curvature: blocks, caches, finite differences, errors', () => {
  const make = () => float64Model(mlp({ input: [5], layers: [5, 8, 7, 3], activation: 'tanh' }), 3);

  it('equals the central second difference of the loss along v', () => {
    const model = make();
    const { x, y } = randomBatch([12, 5], 3, 11);
    const v = randomVector(model.numParams, 7);
    const w = model.getParams();
    const dir = toNumbers(v);
    const lossAt = (t: number) => {
      model.setParams(w.map((wi, i) => wi + t * dir[i]));
      return model.loss(x, y);
    };
    const h = 1e-4;
    const fd = (lossAt(h) - 2 * lossAt(0) + lossAt(-h)) / (h * h);
    model.setParams(w);
    relClose(model.curvature(x, y, v), fd, 1e-5);
  });

  it('a block of K rows in one pass equals K single vectors; a cache records once and replays', () => {
    for (const c of hvpCases) {
      const model = c.make();
      const { x, y } = c.batch();
      model.train(false);
      const P = model.numParams, K = 3;
      const rows = Array.from({ length: K }, (_, k) => toNumbers(randomVector(P, 400 + k)));
      const block = tensor(Float64Array.from(rows.flatMap((r) => Array.from(r))), [K, P], { dtype: 'float64' });
      const single = rows.map((r) => model.curvature(x, y, tensor(r, [P], { dtype: 'float64' })));
      const batched = model.curvatures(x, y, block);
      single.forEach((s, k) => relClose(batched[k], s));
      const cache = hvpCache();
      for (let round = 0; round < 3; round++) single.forEach((s, k) => relClose(model.curvature(x, y, tensor(rows[k], [P], { dtype: 'float64' }), { cache }), s));
      expect([cache.records, cache.replays]).toEqual([1, 8]);
      model.setParams(model.getParams().map((w) => w * 0.9)); // new parameters: the next call records afresh
      model.curvature(x, y, tensor(rows[0], [P], { dtype: 'float64' }), { cache });
      expect(cache.records).toBe(2);
      cache.dispose();
    }
  });

  it('refuses a block as v, a flat v as a block, a wrong width, an unknown method', () => {
    const model = make();
    const { x, y } = randomBatch([4, 5], 3, 1);
    const P = model.numParams;
    expect(() => model.curvature(x, y, randomVector(2 * P, 1).view([2, P]))).toThrow(/curvature: v must be a flat vector .* use curvatures\(\)/);
    expect(() => model.curvatures(x, y, randomVector(P, 1))).toThrow(/argument 'V' must be a block \[K, \d+\] of flat vectors/);
    expect(() => model.curvature(x, y, randomVector(P + 1, 1))).toThrow(/argument 'v'/);
    expect(() => model.curvature(x, y, randomVector(P, 1), { method: 'sideways' as never })).toThrow(/argument 'method' is 'sideways'; use 'forward-over-forward'/);
  });
});

describe('probes take their quadratic forms from jets', () => {
  it("Hutchinson, Hutch++, uᵀHu and sharpness equal the same probes through ⟨v, Hv⟩; a suite's caches serve both kinds", () => {
    const model = float64Model(mlp({ input: [6], layers: [6, 10, 4], activation: 'tanh' }), 9);
    const batches = [randomBatch([10, 6], 4, 1), randomBatch([7, 6], 4, 2)];
    const jets = hessian(model, batches);
    const hvps = hessian(model, batches, { curvatureMethod: 'forward-over-reverse' });
    for (const o of [{ samples: 12 }, { samples: 12, block: 5 }, { method: 'hutch++' as const, samples: 18 }, { method: 'hutch++' as const, samples: 18, block: 4 }]) {
      const a = jets.trace(o), b = hvps.trace(o);
      relClose(a.estimate, b.estimate);
      expect(a.hvps).toBe(b.hvps);
    }
    const u = toNumbers(randomVector(model.numParams, 5));
    relClose(jets.quadraticForm(u), hvps.quadraticForm(u));
    relClose(jets.sharpness({ measure: 'det', samples: 8 }).estimate, hvps.sharpness({ measure: 'det', samples: 8 }).estimate);
    relClose(jets.sharpness({ measure: 'frobenius', samples: 8 }).estimate, hvps.sharpness({ measure: 'frobenius', samples: 8 }).estimate);
    // the exact trace of the full Hessian is within a few standard errors of the estimate
    const exact = jets.spectrum().trace;
    const t = jets.trace({ samples: 400 });
    expect(Math.abs(t.estimate - exact)).toBeLessThan(4 * t.standardError);
    const info = jets.operator.cacheInfo();
    expect(info.cachedBatches).toBe(2);
    expect(info.replays).toBeGreaterThan(0);
    jets.dispose();
    hvps.dispose();
  });
});

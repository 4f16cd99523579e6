// HVP caches (probe sessions): an HVP that replays what the first one on the
// batch computed equals a full HVP to 1e-12 (float64) on every layer type;
// anything that changes the function (parameters, buffers, batch, mode,
// model) makes the next HVP record afresh; the Hessian's probes give the
// same results with and without caches; third-order passes (the exact
// estimator's) keep the gradient graph in a cache, to the same bits.
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { hvpCache, Model } from '../../lib/model/model.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { mlp } from '../../lib/model/presets.js';
import { ops } from '../../lib/tensor/ops.js';
import { tensor, zeros } from '../../lib/tensor/tensor.js';
import { float64Model, maxAbsDiff, randomBatch, randomVector, toNumbers } from '../helpers.js';
import { hvpCases } from '../model-cases.js';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-12) => {
  const scale = Math.max(1, ...Array.from(b, Math.abs));
  expect(maxAbsDiff(a, b) / scale).toBeLessThan(tol);
};

describe('a cached HVP equals the full one (float64)', () => {
  for (const c of hvpCases) {
    for (const method of ['forward-over-reverse', 'double-backward'] as const) {
      // dropout masks differ between uncached passes; that case has its own test
      if (c.name.includes('dropout')) continue;
      it(`${c.name}, ${method}: record, then replays with new vectors`, () => {
        const model = c.make();
        const { x, y } = c.batch();
        for (const training of [true, false]) {
          model.train(training);
          const cache = hvpCache();
          for (let k = 0; k < 3; k++) {
            const v = randomVector(model.numParams, 100 + k);
            const full = toNumbers(model.hvp(x, y, v, undefined, { method }));
            const cached = toNumbers(model.hvp(x, y, v, undefined, { method, cache }));
            close(cached, full);
          }
          expect([cache.records, cache.replays]).toEqual([1, 2]);
          expect(cache.bytes).toBeGreaterThan(0);
          cache.dispose();
        }
      });
    }
  }
});

describe('a block of K directions in one pass equals K single HVPs (float64)', () => {
  const K = 3;
  for (const c of hvpCases) {
    it(`${c.name}`, () => {
      const model = c.make();
      const { x, y } = c.batch();
      const P = model.numParams;
      const rows = Array.from({ length: K }, (_, k) => toNumbers(randomVector(P, 200 + k)));
      const block = tensor(Float64Array.from(rows.flatMap((r) => Array.from(r))), [K, P], { dtype: 'float64' });
      // dropout draws new masks in every uncached train-mode pass: there, compare with a cache (one mask)
      for (const training of c.name.includes('dropout') ? [false] : [true, false]) {
        model.train(training);
        for (const method of ['forward-over-reverse', 'double-backward'] as const) {
          const single = rows.map((r) => toNumbers(model.hvp(x, y, tensor(r, [P], { dtype: 'float64' }), undefined, { method })));
          const cache = hvpCache();
          for (const options of [{ method }, { method, cache }, { method, cache }]) {
            const out = model.hvp(x, y, block, undefined, options);
            expect(out.shape).toEqual([K, P]);
            const got = toNumbers(out);
            for (let k = 0; k < K; k++) close(got.subarray(k * P, (k + 1) * P), single[k]);
          }
          cache.dispose();
        }
      }
      if (c.name.includes('dropout')) {
        model.train(true);
        const cache = hvpCache();
        const got = toNumbers(model.hvp(x, y, block, undefined, { cache }));
        for (let k = 0; k < K; k++) close(got.subarray(k * P, (k + 1) * P), toNumbers(model.hvp(x, y, tensor(rows[k], [P], { dtype: 'float64' }), undefined, { cache })));
      }
    });
  }

  it('refuses a block of the wrong width or an out of another shape', () => {
    const model = float64Model(mlp({ layers: [4, 3] }), 1);
    const { x, y } = randomBatch([6, 4], 3, 1);
    const P = model.numParams;
    expect(() => model.hvp(x, y, zeros([2, P + 1], { dtype: 'float64' }))).toThrow(new RegExp(`argument 'v' must be a block \\[K, ${P}\\]`));
    expect(() => model.hvp(x, y, zeros([2, P], { dtype: 'float64' }), zeros([3, P], { dtype: 'float64' }))).toThrow(new RegExp(`argument 'out' must be a block \\[2, ${P}\\]`));
    expect(() => model.hvp(x, y, zeros([2, P], { dtype: 'float64' }), zeros([P], { dtype: 'float64' }))).toThrow(/argument 'out' must be a block \[2/);
  });
});

describe('what invalidates a cache', () => {
  const make = () => float64Model(mlp({ layers: [5, 8, 3], activation: 'tanh', batchNorm: true }), 3);

  it('new parameters (setParams, an in-place write through params()), a changed batch, another batch, the mode, another model', () => {
    const model = make();
    const { x, y } = randomBatch([10, 5], 3, 1);
    const v = randomVector(model.numParams, 2);
    const cache = hvpCache();
    const check = (m: Model, xx = x, yy = y) => close(toNumbers(m.hvp(xx, yy, v, undefined, { cache })), toNumbers(m.hvp(xx, yy, v)));
    check(model);
    check(model);
    expect([cache.records, cache.replays]).toEqual([1, 1]);
    model.setParams(model.getParams().map((w) => w * 1.1));
    check(model);
    ops.scale(model.params, 0.9); // through the flat buffer's alias
    check(model);
    expect([cache.records, cache.replays]).toEqual([3, 1]);
    x.copyFrom(Float64Array.from({ length: 50 }, (_, i) => Math.cos(i)));
    check(model);
    const other = randomBatch([10, 5], 3, 9);
    check(model, other.x, other.y);
    model.train(false);
    check(model, other.x, other.y);
    const twin = make();
    check(twin, other.x, other.y);
    expect([cache.records, cache.replays]).toEqual([7, 1]);
    check(twin, other.x, other.y);
    expect(cache.replays).toBe(2);
  });

  it('BatchNorm running statistics moved by a training step (eval mode reads them)', () => {
    const model = make();
    model.train(false);
    const { x, y } = randomBatch([10, 5], 3, 1);
    const v = randomVector(model.numParams, 2);
    const cache = hvpCache();
    model.hvp(x, y, v, undefined, { cache });
    model.train(true);
    model.lossAndGrad(x, y); // moves the running statistics
    model.train(false);
    close(toNumbers(model.hvp(x, y, v, undefined, { cache })), toNumbers(model.hvp(x, y, v)));
    expect(cache.records).toBe(2);
  });

  it('with dropout in train mode one cache keeps one mask: the same v gives the same H v', () => {
    const c = hvpCases.find((k) => k.name.includes('dropout'))!;
    const model = c.make();
    const { x, y } = c.batch();
    model.train(true);
    const v = randomVector(model.numParams, 3);
    const cache = hvpCache();
    const a = toNumbers(model.hvp(x, y, v, undefined, { cache }));
    const b = toNumbers(model.hvp(x, y, v, undefined, { cache }));
    expect(Array.from(b)).toEqual(Array.from(a));
    // uncached passes draw new masks: a different function each time
    expect(maxAbsDiff(toNumbers(model.hvp(x, y, v)), toNumbers(model.hvp(x, y, v)))).toBeGreaterThan(1e-8);
  });
});

describe('Hessian probes with caches', () => {
  it('give the results of uncached probes; the caches report their bytes and reuse; a limit drops the last batches', () => {
    const model = float64Model(mlp({ layers: [6, 10, 4], activation: 'tanh' }), 5);
    const batches = [randomBatch([8, 6], 4, 1), randomBatch([8, 6], 4, 2), randomBatch([5, 6], 4, 3)];
    const plain = hessian(model, batches, { cache: false });
    const cached = hessian(model, batches);
    const a = plain.trace({ samples: 20, seed: 4 }).estimate, b = cached.trace({ samples: 20, seed: 4 }).estimate;
    expect(Math.abs(a - b) / Math.abs(a)).toBeLessThan(1e-12);
    const ea = plain.eigenvalues({ k: 2, seed: 1 }).largest!, eb = cached.eigenvalues({ k: 2, seed: 1 }).largest!;
    close(eb, ea, 1e-10);
    const info = cached.operator.cacheInfo();
    expect(info.cachedBatches).toBe(3);
    expect(info.perBatch.every((b) => b > 0)).toBe(true);
    expect(info.bytes).toBe(info.perBatch.reduce((s, b) => s + b, 0));
    // per batch one record each for the trace's curvature passes and the eigenvalues' HVPs
    expect(info.records).toBe(6);
    expect(info.replays).toBe(3 * (cached.hvps - 2));
    expect(plain.operator.cacheInfo()).toMatchObject({ bytes: 0, cachedBatches: 0 });

    // room for one batch's trace cache
    const traceOnly = hessian(model, batches);
    traceOnly.trace({ samples: 2 });
    const limited = hessian(model, batches, { cache: { maxBytes: traceOnly.operator.cacheInfo().perBatch[0] + 1 } });
    traceOnly.dispose();
    const c = limited.trace({ samples: 20, seed: 4 }).estimate;
    expect(Math.abs(c - a) / Math.abs(a)).toBeLessThan(1e-12);
    expect(limited.operator.cacheInfo()).toMatchObject({ cachedBatches: 1, droppedBatches: 2 });
    for (const h of [plain, cached, limited]) h.dispose();
  });

  it('trace (Hutchinson, Hutch++) and ‖H‖_F² with blocks of K vectors per pass equal those one vector at a time (a module restriction too)', () => {
    const model = float64Model(mlp({ layers: [6, 10, 4], activation: 'tanh' }), 5);
    const batches = [randomBatch([8, 6], 4, 1), randomBatch([5, 6], 4, 3)];
    for (const modules of [undefined, ['3']]) {
      const h = hessian(model, batches, { modules });
      const t1 = h.trace({ samples: 11, seed: 3 }), f1 = h.frobeniusSquared({ samples: 11, seed: 4 });
      const pp1 = h.trace({ method: 'hutch++', samples: 30, seed: 5 });
      for (const block of [4, 16]) {
        // Hutch++: its sketch, the sketch's trace and the deflated Hutchinson in blocks
        const pp = h.trace({ method: 'hutch++', samples: 30, seed: 5, block });
        expect(Math.abs(pp.estimate - pp1.estimate) / Math.abs(pp1.estimate)).toBeLessThan(1e-12);
        expect(pp.hvps).toBe(pp1.hvps);
        const hvps = h.hvps;
        const t = h.trace({ samples: 11, seed: 3, block }), f = h.frobeniusSquared({ samples: 11, seed: 4, block });
        expect(Math.abs(t.estimate - t1.estimate) / Math.abs(t1.estimate)).toBeLessThan(1e-12);
        expect(Math.abs(f.estimate - f1.estimate) / Math.abs(f1.estimate)).toBeLessThan(1e-12);
        expect(Math.abs(t.standardError - t1.standardError) / t1.standardError).toBeLessThan(1e-9);
        expect([t.hvps, f.hvps, h.hvps - hvps]).toEqual([11, 11, 22]);
      }
      expect(() => h.trace({ samples: 4, block: 0 })).toThrow(/block must be an integer ≥ 1/);
      h.dispose();
    }
  });

  it('SLQ (density, logAbsDet) with runs in lockstep, one block HVP per step, equals the runs one at a time', () => {
    const model = float64Model(mlp({ layers: [6, 10, 4], activation: 'tanh' }), 5);
    const batches = [randomBatch([8, 6], 4, 1), randomBatch([5, 6], 4, 3)];
    const h = hessian(model, batches);
    for (const reorthogonalize of ['full', 'none'] as const) {
      const one = h.density({ steps: 12, runs: 5, seed: 2, reorthogonalize });
      for (const block of [2, 5, 8]) {
        const hvps = h.hvps;
        const many = h.density({ steps: 12, runs: 5, seed: 2, reorthogonalize, block });
        expect(h.hvps - hvps).toBe(one.hvps);
        expect(many.runs).toHaveLength(5);
        many.runs.forEach((r, i) => {
          expect(maxAbsDiff(r.nodes, one.runs[i].nodes) / Math.max(...one.runs[i].nodes.map(Math.abs))).toBeLessThan(1e-10);
          expect(maxAbsDiff(r.weights, one.runs[i].weights)).toBeLessThan(1e-10);
        });
        // the lockstep runs' memory is planned for all of them at once
        expect(many.vectorBytes).toBe(Math.min(block, 5) * one.vectorBytes);
      }
    }
    const a = h.logAbsDet({ damping: 1e-2, steps: 10, runs: 4, seed: 1 }), b = h.logAbsDet({ damping: 1e-2, steps: 10, runs: 4, seed: 1, block: 4 });
    expect(Math.abs(a.estimate - b.estimate) / Math.abs(a.estimate)).toBeLessThan(1e-10);
    h.dispose();
  });

  it('refuses a bad cache option, a disposed cache and a cache in use by an async HVP', async () => {
    const model = float64Model(mlp({ layers: [4, 3] }), 1);
    const { x, y } = randomBatch([6, 4], 3, 1);
    expect(() => hessian(model, { x, y }, { cache: { maxBytes: -1 } })).toThrow(/options.cache must be true, false or \{maxBytes/);
    const v = randomVector(model.numParams, 1);
    expect(() => model.native.hvp(x, y, v, v.clone(), undefined, {} as never)).toThrow(/argument 'cache' must be an HvpCache/);
    const cache = hvpCache();
    const pending = model.hvpAsync(x, y, v, undefined, { cache });
    expect(() => cache.dispose()).toThrow(/in use by a running async HVP/);
    const hv = await pending;
    close(toNumbers(hv), toNumbers(model.hvp(x, y, v)));
    cache.dispose();
    cache.dispose(); // harmless
    expect(cache.disposed).toBe(true);
    expect(() => model.hvp(x, y, v, undefined, { cache })).toThrow(/HvpCache was disposed/);
  });
});

describe('third-order passes (quadraticFormGrad) keep the gradient graph in a cache', () => {
  it('the same bits as without a cache; the graph is built once per batch and parameters, again after a write', () => {
    const model = float64Model(mlp({ layers: [5, 8, 3], activation: 'tanh', batchNorm: true }), 3);
    const { x, y } = randomBatch([10, 5], 3, 1);
    const cache = hvpCache();
    const check = (seed: number) => {
      const v = randomVector(model.numParams, seed);
      const kept = model.quadraticFormGrad(x, y, v, undefined, { cache });
      const plain = model.quadraticFormGrad(x, y, v);
      expect(kept.q).toBe(plain.q);
      expect(Array.from(toNumbers(kept.grad))).toEqual(Array.from(toNumbers(plain.grad)));
    };
    check(2);
    check(3);
    check(4);
    expect([cache.records, cache.replays]).toEqual([1, 2]);
    ops.scale(model.params, 0.9);
    check(5);
    expect([cache.records, cache.replays]).toEqual([2, 2]);
    // the HVPs' double backward is the same graph: it replays it
    const v = randomVector(model.numParams, 6);
    close(toNumbers(model.hvp(x, y, v, undefined, { method: 'double-backward', cache })), toNumbers(model.hvp(x, y, v)));
    expect([cache.records, cache.replays]).toEqual([2, 3]);
  });

  it("the exact estimator's samples share one graph per micro-batch: the step equals the rule's arithmetic on uncached passes", () => {
    const make = () => float64Model(mlp({ layers: [5, 8, 3], activation: 'tanh' }), 3);
    const { x, y } = randomBatch([12, 5], 3, 4);
    const xs = toNumbers(x), ys = Array.from(y.toArray() as BigInt64Array);
    const half = (k: number) => ({ x: tensor(xs.slice(30 * k, 30 * k + 30), [6, 5], { dtype: 'float64' }), y: tensor(new BigInt64Array(ys.slice(6 * k, 6 * k + 6)), [6]) });
    const P = make().numParams;
    const us = [7, 8, 9].map((seed) => Array.from(toNumbers(randomVector(P, seed))));
    const [rho, lambda, lr, n] = [0.05, 0.1, 0.1, 3];
    const config = () => {
      let i = 0;
      return { kind: 'frob-sam', rho, lambda, samples: n, estimator: 'exact', mu: () => us[i++ % n] } as const;
    };
    // math.md §6, Frobenius form: grad = g0 + lambda·rho²/(n−1)·Σ (q_i/2 − mean)·½∇q_i, by uncached passes
    const reference = make();
    const w = reference.getParams();
    const g0 = toNumbers(reference.lossAndGrad(x, y).grad);
    const forms = us.map((u) => reference.quadraticFormGrad(x, y, tensor(u, undefined, { dtype: 'float64' })));
    const halves = forms.map((f) => f.q / 2);
    const mean = halves.reduce((a, b) => a + b, 0) / n;
    const c = (lambda * rho * rho) / (n - 1);
    const expected = Array.from(w, (wi, j) => wi - lr * (g0[j] + forms.reduce((s, f, i) => s + 0.5 * c * (halves[i] - mean) * toNumbers(f.grad)[j], 0)));
    for (const batches of [[{ x, y }], [half(0), half(1)]]) {
      const model = make();
      const r = new Optimizer(model, { base: { kind: 'sgd', lr }, sharpness: config(), seed: 7 }).step(batches);
      // per micro-batch: one forward-backward for g0 and one for the samples' shared graph; an HVP per sample
      expect(r.counters).toEqual({ forward: 2 * batches.length, backward: 2 * batches.length, hvp: n * batches.length });
      close(model.getParams(), expected, 1e-12);
    }
  });

  it('the kept graphs are released when the step ends, however it ends', () => {
    // every HvpCache the step makes is counted, and so is its dispose()
    const binding = native() as unknown as { HvpCache: new () => { dispose(): void } };
    const Original = binding.HvpCache;
    let made = 0, released = 0;
    binding.HvpCache = class extends Original {
      constructor() {
        super();
        made++;
      }
      dispose() {
        released++;
        super.dispose();
      }
    };
    try {
      const model = float64Model(mlp({ layers: [5, 8, 3], activation: 'tanh' }), 3);
      const { x, y } = randomBatch([12, 5], 3, 4);
      const u = Array.from(toNumbers(randomVector(model.numParams, 7)));
      const w = model.getParams();
      // a sampler that fails at the second sample: the step throws inside the samples' loop
      let draws = 0;
      const failing = { kind: 'trace-sam', rho: 0.05, lambda: 0.1, samples: 3, estimator: 'exact', mu: () => (++draws === 2 ? [] : u) } as const;
      expect(() => new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: failing }).step(x, y)).toThrow(/user sampler returned 0 numbers/);
      expect([made, released]).toEqual([1, 1]);
      expect(model.getParams()).toEqual(w);
      const halves = [0, 1].map((k) => ({ x: tensor(toNumbers(x).slice(30 * k, 30 * k + 30), [6, 5], { dtype: 'float64' }), y: tensor(new BigInt64Array(Array.from(y.toArray() as BigInt64Array).slice(6 * k, 6 * k + 6)), [6]) }));
      new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { ...failing, mu: () => u } }).step(halves);
      expect([made, released]).toEqual([3, 3]); // one per micro-batch
    } finally {
      binding.HvpCache = Original;
    }
  });
});

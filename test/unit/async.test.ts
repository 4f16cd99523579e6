// The Async twins: the same numbers as the synchronous calls, bit for bit;
// the event loop runs while they work; one model's calls never overlap; a
// held tensor cannot be disposed; errors are rejected Promises. (How long
// the loop may wait is measured by scripts/bench/event-loop.ts, not here.)
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { hvpCache, Model } from '../../lib/model/model.js';
import { cnn, mlp } from '../../lib/model/presets.js';
import { Optimizer, type OptimizerOptions } from '../../lib/optim/optimizer.js';
import { tensor, zeros } from '../../lib/tensor/tensor.js';
import { evaluate, evaluateAsync } from '../../lib/train/evaluate.js';
import { randomBatch } from '../helpers.js';

const cnnSpec = cnn({ input: [1, 8, 8], channels: [4, 8], hidden: 16, classes: 3 }); // with BatchNorm
const batches = [1, 2, 3].map((s) => randomBatch([16, 1, 8, 8], 3, s, 'float32'));

/** Counts the ticks of a 1 ms interval while `work` runs. */
async function ticksDuring<T>(work: () => Promise<T> | T): Promise<{ result: T; ticks: number }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const result = await work();
    return { result, ticks };
  } finally {
    clearInterval(timer);
  }
}

describe('stepAsync', () => {
  for (const options of [
    { base: { kind: 'sgd', lr: 0.05, momentum: 0.9 }, sharpness: { kind: 'sam', rho: 0.05 } },
    { base: { kind: 'adam', lr: 0.01 }, sharpness: { kind: 'frob-sam', rho: 0.01, lambda: 0.1, samples: 2 }, seed: 3 },
    { base: { kind: 'sgd', lr: 0.05 }, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 0.1, samples: 2, estimator: 'exact' }, seed: 4 },
  ] as OptimizerOptions[]) {
    it(`${options.sharpness!.kind}${'estimator' in options.sharpness! ? ' (exact)' : ''}: awaited steps equal synchronous ones bit for bit, and the event loop runs meanwhile`, async () => {
      const syncModel = new Model(cnnSpec, { seed: 2 });
      const asyncModel = new Model(cnnSpec, { seed: 2 });
      const syncOpt = new Optimizer(syncModel, options);
      const asyncOpt = new Optimizer(asyncModel, options);
      const plan = [batches[0], batches[1], [batches[1], batches[2]], batches[2]] as const;
      const sync = await ticksDuring(() => plan.map((b) => (Array.isArray(b) ? syncOpt.step(b) : syncOpt.step((b as (typeof batches)[0]).x, (b as (typeof batches)[0]).y))));
      const awaited = await ticksDuring(async () => {
        const out = [];
        for (const b of plan) out.push(await (Array.isArray(b) ? asyncOpt.stepAsync(b) : asyncOpt.stepAsync((b as (typeof batches)[0]).x, (b as (typeof batches)[0]).y)));
        return out;
      });
      expect(awaited.result.map((r) => [r.loss, r.sharpness, r.penalty, r.correct])).toEqual(sync.result.map((r) => [r.loss, r.sharpness, r.penalty, r.correct]));
      expect(asyncModel.getParams()).toEqual(syncModel.getParams());
      expect(asyncModel.buffers().values.toArray()).toEqual(syncModel.buffers().values.toArray());
      expect(sync.ticks).toBe(0); // the synchronous steps hold the loop
      expect(awaited.ticks).toBeGreaterThan(0);
    });
  }

  it("third-order passes replaying a kept graph on libuv's threads: the bits of the synchronous calls", async () => {
    // the graph recorded on one thread, its replays on others: autograd's
    // order of work (by per-thread sequence numbers) must not change the sums
    const model = new Model(cnnSpec, { seed: 2 });
    const { x, y } = batches[0];
    const v = tensor(Float32Array.from({ length: model.numParams }, (_, i) => Math.cos(3 * i)));
    const out = zeros([model.numParams]);
    const sync = model.native.quadraticFormGrad(x, y, v, out, hvpCache());
    const expected = Array.from(out.toArray() as Float32Array);
    // recorded by a third-order pass here or on a libuv thread, or by a double-backward HVP (the same cache entry)
    for (const record of ['hvp', 'sync', 'async'] as const) {
      const cache = hvpCache();
      const ones = tensor(new Float32Array(model.numParams).fill(1));
      if (record === 'sync') model.native.quadraticFormGrad(x, y, ones, out, cache);
      else if (record === 'async') await model.native.quadraticFormGradAsync(x, y, ones, out, cache);
      else model.native.hvp(x, y, ones, zeros([model.numParams]), 'double-backward', cache);
      for (let k = 0; k < 6; k++) {
        expect(await model.native.quadraticFormGradAsync(x, y, v, out, cache)).toBe(sync);
        expect(Array.from(out.toArray() as Float32Array)).toEqual(expected);
      }
      expect([cache.records, cache.replays]).toEqual([1, 6]);
    }
  });

  it('a failing step rejects, changes nothing, and the model is usable afterwards', async () => {
    const model = new Model(cnnSpec, { seed: 2 });
    const before = model.getParams();
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.05 }, sharpness: { kind: 'frob-sam', rho: 1e308, lambda: 0.1, samples: 2 } });
    await expect(opt.stepAsync(batches[0].x, batches[0].y)).rejects.toThrow(/the perturbed loss L\(w \+ rho·u_0\) is (NaN|Infinity)/);
    expect(model.getParams()).toEqual(before);
    await expect(opt.stepAsync(zeros([2, 5]), batches[0].y)).rejects.toThrow(/argument 'x' has shape \[2, 5\]/);
    expect(Number.isFinite(model.loss(batches[0].x, batches[0].y))).toBe(true);
  });
});

describe('one model, one call at a time', () => {
  it('async calls on one model queue; a synchronous call or dispose meanwhile is refused with a clear error', async () => {
    const model = new Model(mlp({ layers: [6, 32, 3], activation: 'tanh' }), { dtype: 'float64', seed: 1 });
    const { x, y } = randomBatch([64, 6], 3, 7);
    const expected = model.lossAndGrad(x, y, { updateStats: false });
    const first = model.lossAndGradAsync(x, y, { updateStats: false });
    const second = model.lossAndGradAsync(x, y, { updateStats: false }); // waits for the first
    expect(() => model.loss(x, y)).toThrow(/this model is running an async call \(…Async\); await it before using the model again/);
    expect(() => x.dispose()).toThrow(/this tensor is in use by a running async call; await it before dispose\(\)/);
    expect(() => model.dispose()).toThrow(/running an async call/);
    const [a, b] = await Promise.all([first, second]);
    expect(a.loss).toBe(expected.loss);
    expect(b.loss).toBe(expected.loss);
    expect(a.grad.toArray()).toEqual(expected.grad.toArray());
    x.dispose(); // free again once settled
    expect(() => model.loss(x, y)).toThrow(/disposed/);
  });

  it('different models run concurrently and each gets its own answer', async () => {
    const models = [1, 2, 3].map((s) => new Model(mlp({ layers: [6, 16, 3], activation: 'relu' }), { dtype: 'float64', seed: s }));
    const { x, y } = randomBatch([32, 6], 3, 8);
    const v = tensor(Float64Array.from({ length: models[0].numParams }, (_, i) => Math.sin(i)), undefined, { dtype: 'float64' });
    const expected = models.map((m) => m.hvp(x, y, v).toArray());
    const got = await Promise.all(models.map((m) => m.hvpAsync(x, y, v)));
    expect(got.map((t) => t.toArray())).toEqual(expected);
  });
});

describe('probes and evaluation', () => {
  it('the Hessian probes and evaluate have Async twins with the same results', async () => {
    const model = new Model(cnnSpec, { dtype: 'float64', seed: 5 });
    const batch = randomBatch([16, 1, 8, 8], 3, 9);
    const h = hessian(model, batch, { mode: 'eval' });
    const calls: [string, () => unknown, () => Promise<unknown>][] = [
      ['eigenvalues', () => h.eigenvalues({ k: 2, which: 'both' }), () => h.eigenvaluesAsync({ k: 2, which: 'both' })],
      ['trace', () => h.trace({ method: 'hutch++', samples: 9 }), () => h.traceAsync({ method: 'hutch++', samples: 9 })],
      ['frobeniusSquared', () => h.frobeniusSquared({ samples: 4 }), () => h.frobeniusSquaredAsync({ samples: 4 })],
      ['density', () => h.density({ steps: 12, runs: 2 }), () => h.densityAsync({ steps: 12, runs: 2 })],
      ['logAbsDet', () => h.logAbsDet({ damping: 0.1, steps: 12, runs: 2 }), () => h.logAbsDetAsync({ damping: 0.1, steps: 12, runs: 2 })],
      ['sharpness', () => h.sharpness({ measure: 'det', samples: 4 }), () => h.sharpnessAsync({ measure: 'det', samples: 4 })],
    ];
    for (const [name, sync, async] of calls) {
      const a = sync();
      const b = await ticksDuring(async);
      // hvps counts are cumulative on the operator: compare everything else
      expect({ ...(b.result as object), hvps: 0 }, name).toEqual({ ...(a as object), hvps: 0 });
    }
    const data = { name: 't', x: Float32Array.from({ length: 40 * 64 }, (_, i) => Math.cos(i)), y: Int32Array.from({ length: 40 }, (_, i) => i % 3), shape: [1, 8, 8], classes: 3 };
    expect(await evaluateAsync(model, data, 16)).toEqual(evaluate(model, data, 16));
    h.dispose();
  });
});

describe('Trainer.runAsync and await using', () => {
  it('a training run awaited equals the synchronous run bit for bit (steps, evaluation, probes)', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { Trainer } = await import('../../lib/train/trainer.js');
    const dir = mkdtempSync(join(tmpdir(), 'usam-async-'));
    try {
      const config = { dataset: 'synthetic' as const, model: 'tiny' as const, optimizer: 'frob-sam' as const, epochs: 2, probeEvery: 1, probeSamples: 2, batchSize: 256 };
      const sync = new Trainer({ ...config, out: join(dir, 'sync') });
      const a = sync.run();
      const awaitedTrainer = new Trainer({ ...config, out: join(dir, 'async') });
      const b = await ticksDuring(() => awaitedTrainer.runAsync());
      const strip = (ms: typeof a.metrics) => ms.map(({ seconds: _s, stepsPerSecond: _r, ...m }) => m);
      expect(strip(b.result.metrics)).toEqual(strip(a.metrics));
      expect(awaitedTrainer.model.getParams()).toEqual(sync.model.getParams());
      expect(b.ticks).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('await using waits for the queued async work, then disposes', async () => {
    let step: Promise<unknown> | undefined;
    let model: Model | undefined;
    {
      await using m = new Model(cnnSpec, { seed: 2 });
      await using opt = new Optimizer(m, { base: { kind: 'sgd', lr: 0.05 }, sharpness: { kind: 'sam', rho: 0.05 } });
      step = opt.stepAsync(batches[0].x, batches[0].y); // not awaited here
      model = m;
    }
    await expect(step).resolves.toMatchObject({ step: 1 });
    expect(() => model!.getParams()).toThrow(/disposed/);
  });
});

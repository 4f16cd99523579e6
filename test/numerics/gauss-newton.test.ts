// The Gauss-Newton-type operators against answers known without PyTorch
// (gauss-newton-twin.test.ts checks them against torch.func's definitions):
// the GGN of a model linear in its parameters under MSE is its Hessian; the
// empirical Fisher of one sample is g gᵀ with g its loss gradient; the
// Monte-Carlo Fisher averages to the GGN; TorchScript modules (autograd)
// agree with the same network's own layers (forward-over-reverse rules);
// the probes run on each operator; bad options are refused by name.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fisher, ggn } from '../../lib/hessian/gauss-newton.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { loadTorchScript } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { float64Model, maxAbsDiff, randomBatch, randomVector, repoRoot, toNumbers } from '../helpers.js';

const rel = (a: ArrayLike<number>, b: ArrayLike<number>) => maxAbsDiff(a, b) / Math.max(...Array.from(b, Math.abs));

describe('Gauss-Newton-type operators: known answers', () => {
  it('a model linear in its parameters under MSE: the GGN is the Hessian (1e-12)', () => {
    const model = float64Model({ input: [4], layers: [{ type: 'linear', inFeatures: 4, outFeatures: 3 }], loss: { type: 'mse' } }, 2);
    const { x } = randomBatch([9, 4], 3, 5);
    const y = tensor(Float64Array.from({ length: 27 }, (_, i) => Math.cos(i)), [9, 3], { dtype: 'float64' });
    const g = ggn(model, { x, y }).full().matrix;
    const h = hessian(model, { x, y }).full().matrix;
    expect(rel(g, h)).toBeLessThan(1e-12);
  });

  it('the empirical Fisher of one sample is g gᵀ, g its loss gradient; the GGN of a nonlinear model is not its Hessian', () => {
    const model = float64Model(mlp({ layers: [3, 5, 4], activation: 'tanh' }), 3);
    const { x, y } = randomBatch([1, 3], 4, 6);
    const g = toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad);
    const f = fisher(model, { x, y }, { kind: 'empirical' }).full();
    const outer = Float64Array.from({ length: g.length * g.length }, (_, k) => g[Math.floor(k / g.length)] * g[k % g.length]);
    expect(rel(f.matrix, outer)).toBeLessThan(1e-12);
    const batch = randomBatch([6, 3], 4, 7);
    const gn = ggn(model, batch).full().matrix, h = hessian(model, batch).full().matrix;
    expect(rel(gn, h)).toBeGreaterThan(1e-3);
  });

  it('the GGN and both Fishers are positive semi-definite; the Hessian of the same model is not', () => {
    const model = float64Model(mlp({ layers: [3, 6, 4], activation: 'tanh' }), 4);
    const batch = randomBatch([8, 3], 4, 8);
    const smallest = (m: { spectrum: () => { minEigenvalue: number; maxEigenvalue: number } }) => {
      const s = m.spectrum();
      return s.minEigenvalue / s.maxEigenvalue;
    };
    expect(smallest(ggn(model, batch))).toBeGreaterThan(-1e-12);
    expect(smallest(fisher(model, batch, { kind: 'empirical' }))).toBeGreaterThan(-1e-12);
    expect(smallest(fisher(model, batch, { kind: 'mc', samples: 2 }))).toBeGreaterThan(-1e-12);
    expect(smallest(hessian(model, batch))).toBeLessThan(-1e-6);
  });

  it.each(['cross-entropy', 'mse', 'bce-with-logits'] as const)('the Monte-Carlo Fisher averages to the GGN (%s): 20 independent estimates of 50 draws, |mean − G v| within 5 standard errors in every coordinate', (loss) => {
    const outputs = 3;
    const model = float64Model({ ...mlp({ layers: [3, 4, outputs], activation: 'tanh' }), loss: { type: loss } }, 5);
    const { x, y: labels } = randomBatch([5, 3], outputs, 9);
    const y =
      loss === 'cross-entropy'
        ? labels
        : tensor(Float64Array.from({ length: 5 * outputs }, (_, i) => (loss === 'mse' ? Math.sin(i) : i % 2)), [5, outputs], { dtype: 'float64' });
    const v = randomVector(model.numParams, 10);
    const gv = toNumbers(ggn(model, { x, y }).hvp(v));
    const estimates = Array.from({ length: 20 }, (_, k) => toNumbers(fisher(model, { x, y }, { kind: 'mc', samples: 50, seed: k + 1 }).hvp(v)));
    let worst = 0;
    for (let i = 0; i < gv.length; i++) {
      const column = estimates.map((e) => e[i]);
      const mean = column.reduce((a, b) => a + b, 0) / column.length;
      const sd = Math.sqrt(column.reduce((s, c) => s + (c - mean) ** 2, 0) / (column.length - 1));
      if (sd === 0) expect(Math.abs(mean - gv[i])).toBeLessThan(1e-12);
      else worst = Math.max(worst, Math.abs(mean - gv[i]) / (sd / Math.sqrt(column.length)));
    }
    expect(worst).toBeLessThan(5);
    // and the estimate is not the GGN itself: it is random
    expect(rel(estimates[0], gv)).toBeGreaterThan(1e-3);
  });

  it('a block of directions equals each direction alone; a cached operator replays (same bits as uncached)', () => {
    const model = float64Model(mlp({ layers: [3, 5, 4], activation: 'tanh' }), 6);
    const batch = randomBatch([7, 3], 4, 11);
    for (const kind of ['ggn', 'empirical'] as const) {
      const make = (cache: boolean) => (kind === 'ggn' ? ggn(model, batch, { cache }) : fisher(model, batch, { kind, cache }));
      const op = make(true), uncached = make(false);
      const v1 = randomVector(model.numParams, 1), v2 = randomVector(model.numParams, 2);
      const P = model.numParams;
      const block = tensor(Float64Array.from([...toNumbers(v1), ...toNumbers(v2)]), [2, P], { dtype: 'float64' });
      const both = toNumbers(op.operator.apply(block, tensor(new Float64Array(2 * P), [2, P], { dtype: 'float64' })));
      const a = toNumbers(op.hvp(v1)), b = toNumbers(op.hvp(v2));
      expect(rel(both.subarray(0, P), a)).toBeLessThan(1e-13);
      expect(rel(both.subarray(P), b)).toBeLessThan(1e-13);
      expect(op.operator.cacheInfo()).toMatchObject({ records: 1, replays: 2 });
      expect(toNumbers(uncached.hvp(v1))).toEqual(a);
      op.dispose();
      uncached.dispose();
    }
  });

  it('the probes run on each operator: trace by Hutchinson against the exact trace, top eigenvalues by Lanczos against the spectrum', () => {
    const model = float64Model(mlp({ layers: [3, 6, 4], activation: 'tanh' }), 7);
    const batch = randomBatch([8, 3], 4, 12);
    for (const op of [ggn(model, batch), fisher(model, batch, { kind: 'empirical' }), fisher(model, batch, { kind: 'mc', samples: 2 })]) {
      const exact = op.spectrum();
      const top = op.eigenvalues({ k: 2 }).largest;
      expect(Math.abs(top[0] - exact.maxEigenvalue)).toBeLessThan(1e-8 * exact.maxEigenvalue);
      const t = op.trace({ samples: 400, seed: 3 });
      expect(Math.abs(t.estimate - exact.trace)).toBeLessThan(5 * t.standardError!);
      op.dispose();
    }
  });
});

describe('Gauss-Newton-type operators of TorchScript modules (autograd) equal those of the same network in layers', () => {
  const dir = join(repoRoot, 'test', 'fixtures', 'torchscript');
  const layers = {
    'mlp-scripted.pt': {
      input: [6],
      layers: [
        { type: 'flatten' as const },
        { type: 'linear' as const, inFeatures: 6, outFeatures: 8 },
        { type: 'tanh' as const },
        { type: 'linear' as const, inFeatures: 8, outFeatures: 8 },
        { type: 'softplus' as const },
        { type: 'linear' as const, inFeatures: 8, outFeatures: 3 },
      ],
    },
    'cnn-bn-scripted.pt': {
      input: [1, 5, 5],
      layers: [
        { type: 'conv2d' as const, inChannels: 1, outChannels: 3, kernelSize: 3, padding: 1 },
        { type: 'batchnorm2d' as const, numFeatures: 3 },
        { type: 'relu' as const },
        { type: 'flatten' as const },
        { type: 'linear' as const, inFeatures: 75, outFeatures: 3 },
      ],
    },
  };
  for (const [file, spec] of Object.entries(layers))
    it(`${file}, train mode: GGN, empirical and Monte-Carlo Fisher (1e-10)`, () => {
      const script = loadTorchScript(join(dir, file), { dtype: 'float64' });
      const own = float64Model(spec, 1);
      own.setParams(script.getParams());
      expect(own.paramInfo().map((p) => p.name)).toEqual(script.paramInfo().map((p) => p.name));
      const batch = randomBatch([4, ...spec.input], 3, 13);
      const v = randomVector(script.numParams, 14);
      for (const make of [
        (m: typeof own) => ggn(m, batch, { mode: 'train' }),
        (m: typeof own) => fisher(m, batch, { mode: 'train', kind: 'empirical' }),
        (m: typeof own) => fisher(m, batch, { mode: 'train', kind: 'mc', samples: 2, seed: 4 }),
      ]) {
        const a = make(script), b = make(own);
        const expected = toNumbers(b.hvp(v));
        expect(rel(toNumbers(a.hvp(v)), expected)).toBeLessThan(1e-10);
        // the second product replays the kept graph
        expect(rel(toNumbers(a.hvp(v)), expected)).toBeLessThan(1e-10);
        expect(a.operator.cacheInfo()).toMatchObject({ records: a.operator.batches.length, replays: a.operator.batches.length });
        a.dispose();
        b.dispose();
      }
    });
});

describe('Gauss-Newton-type operators: bad options are refused by name', () => {
  const model = float64Model(mlp({ layers: [3, 4, 2], activation: 'tanh' }), 8);
  const batch = randomBatch([4, 3], 2, 15);
  it.each([
    ['fisher without a kind', () => fisher(model, batch, {}), /options\.kind.*required.*'empirical'.*'mc'/],
    ['an unknown kind', () => fisher(model, batch, { kind: 'true' as 'mc' }), /options\.kind/],
    ['samples for the empirical Fisher', () => fisher(model, batch, { kind: 'empirical', samples: 3 }), /options\.samples.*kind 'mc' only/],
    ['zero samples', () => fisher(model, batch, { kind: 'mc', samples: 0 }), /options\.samples/],
    ['an HVP method for the GGN', () => ggn(model, batch, { hvpMethod: 'double-backward' } as object), /options\.hvpMethod.*hessian\(\) only/],
    [
      'the Monte-Carlo Fisher of an NLL model',
      () => fisher(float64Model({ input: [3], layers: [{ type: 'linear', inFeatures: 3, outFeatures: 2 }], loss: { type: 'nll' } }), batch, { kind: 'mc' }),
      /likelihood.*'nll'.*kind 'empirical'.*ggn\(\)/,
    ],
    ['a model with BatchNorm and no mode', () => ggn(float64Model(mlp({ layers: [3, 4, 2], batchNorm: true })), batch), /ggn: .*BatchNorm.*options\.mode/],
  ])('%s', (_, call, message) => {
    expect(call).toThrow(message);
  });
});

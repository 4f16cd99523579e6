// Nothing the library makes for itself outlives the call that made it. A
// tensor left to the garbage collector is not freed during a synchronous
// loop (Node runs native finalizers only when the event loop turns), so a
// training loop that leaked two small views per step pinned the C heap and
// its resident size grew without bound (docs/benchmarks.md, soak).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { cnn, mlp } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import type { SharpnessConfigInput } from '../../lib/optim/rules/index.js';
import { Trainer } from '../../lib/train/trainer.js';
import { randomBatch } from '../helpers.js';

const live = () => native().memory().liveTensors;
const rules: SharpnessConfigInput[] = [
  { kind: 'sam', rho: 0.05 },
  { kind: 'asam', rho: 0.5 },
  { kind: 'trace-sam', rho: 0.01, lambda: 0.01, samples: 2 },
  { kind: 'det-sam', rho: 0.01, lambda: 0.01, samples: 2, directions: 'antithetic' },
  { kind: 'frob-sam', rho: 0.01, lambda: 0.01, samples: 2 },
  { kind: 'trace-sam', rho: 0.01, lambda: 0.01, samples: 2, estimator: 'exact' },
];

describe('live tensors', () => {
  it('memory() counts the tensors JavaScript holds, and the C heap', () => {
    const before = live();
    const m = new Model(mlp({ layers: [4, 3, 2], activation: 'tanh' }));
    const g = m.zerosLikeParams();
    expect(live()).toBe(before + 2); // the flat parameters and g
    g.dispose();
    m.dispose();
    expect(live()).toBe(before); // m.params, the model's own alias, goes with the model
    const mem = native().memory();
    // glibc's counters (AddressSanitizer replaces malloc, and its mallinfo2 reads 0)
    if (process.platform === 'linux' && !/asan/.test(process.env.LD_PRELOAD ?? '')) expect(mem.mallocInUse).toBeGreaterThan(0);
  });

  for (const [name, spec] of [
    ['MLP', mlp({ layers: [8, 6, 3], activation: 'relu' })],
    ['BatchNorm CNN', cnn({ input: [1, 6, 6], channels: [2, 3], hidden: 4, classes: 3 })],
  ] as const) {
    it(`${name}: optimizer steps of every rule, with one batch and with micro-batches, leave no tensor behind`, () => {
      const shape = name === 'MLP' ? [6, 8] : [6, 1, 6, 6];
      const a = randomBatch(shape, 3, 1, 'float32'), b = randomBatch(shape, 3, 2, 'float32');
      for (const sharpness of [undefined, ...rules]) {
        const model = new Model(spec, { seed: 1 });
        const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.01, momentum: 0.9 }, sharpness });
        opt.step(a.x, a.y); // workspaces are made on first use
        opt.step([a, b]);
        const before = live();
        for (let i = 0; i < 5; i++) {
          opt.step(a.x, a.y);
          opt.step([a, b]);
        }
        expect(live() - before, `${sharpness?.kind ?? 'sgd'} ${sharpness && 'estimator' in sharpness ? sharpness.estimator : ''}`).toBe(0);
      }
    });
  }

  it('Hessian probes leave no tensor behind', () => {
    const model = new Model(mlp({ layers: [8, 6, 3], activation: 'tanh' }), { dtype: 'float64', seed: 1 });
    const batch = randomBatch([6, 8], 3, 3);
    const h = hessian(model, batch, { mode: 'eval' });
    const v = new Float64Array(model.numParams).fill(0.1);
    h.hvp(v).dispose();
    const before = live();
    h.trace({ samples: 4 });
    h.trace({ method: 'hutch++', samples: 6 });
    h.frobeniusSquared({ samples: 4 });
    h.eigenvalues({ k: 2, which: 'both' });
    h.eigenvalues({ k: 2, reorthogonalize: 'none' });
    h.eigenvalues({ k: 1, method: 'power', maxIter: 20 });
    h.density({ steps: 10, runs: 2 });
    h.logAbsDet({ damping: 0.1, steps: 10, runs: 2 });
    h.sharpness({ measure: 'det', samples: 4 });
    h.quadraticForm(v);
    h.spectrum();
    expect(live() - before).toBe(0);
    h.dispose();
  });

  describe('a Trainer epoch (evaluation, probes, checkpoint)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-leaks-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    it('leaves no tensor behind from one epoch to the next', () => {
      const counts: number[] = [];
      const trainer = new Trainer({ out: join(dir, 'run'), dataset: 'synthetic', model: 'tiny', epochs: 3, probeEvery: 1, probeSamples: 2, batchSize: 256 });
      trainer.run({ onEpoch: () => counts.push(live()) });
      expect(counts[2] - counts[1]).toBe(0);
      expect(counts[1] - counts[0]).toBe(0);
    });
  });
});

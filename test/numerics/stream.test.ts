// Streamed probes (options.stream): the batches of a DataLoader made for
// each product and disposed after it. The same numbers as the held batches,
// bit for bit, for the Hessian, the GGN and the empirical Fisher; no batch
// tensor held between products; what cannot stream is refused by name.
import { describe, expect, it } from 'vitest';
import { synthetic } from '../../lib/data/dataset.js';
import { DataLoader } from '../../lib/data/loader.js';
import { fisher, ggn } from '../../lib/hessian/gauss-newton.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { lossLandscape } from '../../lib/hessian/landscape.js';
import { mlp } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import { float64Model, randomVector, toNumbers } from '../helpers.js';

describe('streamed probes', () => {
  const model = float64Model(mlp({ layers: [6, 7, 3], activation: 'tanh' }), 2);
  // 50 samples in batches of 16: three full batches and one of 2
  const loader = new DataLoader(synthetic({ count: 50, shape: [6], classes: 3, seed: 4 }), { batchSize: 16, dtype: 'float64' });

  it('equal the held batches bit for bit: Hessian, GGN and empirical Fisher products, the trace and the top eigenvalues', () => {
    const v = randomVector(model.numParams, 5);
    for (const make of [
      (stream: boolean) => hessian(model, loader, { stream, ...(stream ? {} : { cache: false }) }),
      (stream: boolean) => ggn(model, loader, { stream }),
      (stream: boolean) => fisher(model, loader, { kind: 'empirical', stream }),
    ]) {
      const held = make(false), streamed = make(true);
      expect(toNumbers(streamed.hvp(v))).toEqual(toNumbers(held.hvp(v)));
      expect(streamed.trace({ samples: 6, seed: 1 }).estimate).toBe(held.trace({ samples: 6, seed: 1 }).estimate);
      expect(streamed.eigenvalues({ k: 2 }).largest).toEqual(held.eigenvalues({ k: 2 }).largest);
      expect(streamed.operator.batches).toEqual([]);
      held.dispose();
      streamed.dispose();
    }
  });

  it('holds no batch between products (the held operator holds all four)', () => {
    const v = randomVector(model.numParams, 6);
    const before = native().memory().liveTensorBytes;
    const streamed = hessian(model, loader, { stream: true });
    streamed.hvp(v).dispose();
    const streamedBytes = native().memory().liveTensorBytes - before;
    const held = hessian(model, loader, { cache: false });
    const heldBytes = native().memory().liveTensorBytes - before - streamedBytes;
    // the held batches: 50 × 6 float64 inputs and 50 int64 labels
    expect(heldBytes).toBeGreaterThanOrEqual(50 * 6 * 8 + 50 * 8);
    expect(streamedBytes).toBe(0);
    held.dispose();
    streamed.dispose();
  });

  it('what cannot stream is refused by name', () => {
    const batch = loader.batch(0, 0);
    expect(() => hessian(model, [batch], { stream: true })).toThrow(/data.*must be a DataLoader with options\.stream/);
    expect(() => hessian(model, loader, { stream: true, cache: { maxBytes: 1e6 } })).toThrow(/options\.cache.*nothing can be cached/);
    expect(() => fisher(model, loader, { kind: 'mc', stream: true })).toThrow(/options\.stream.*kind 'mc'/);
    expect(() => lossLandscape(model, loader, { stream: true } as never)).toThrow(/options\.stream.*lossLandscape/);
    expect(() => hessian(model, loader, { stream: 'yes' as unknown as boolean })).toThrow(/options\.stream/);
  });
});

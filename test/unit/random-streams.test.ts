// One seed, independent streams: initialisation, dropout masks, directions
// and probes each read their own generator, derived from the user's seed.
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import type { ModelSpecInput } from '../../lib/model/spec.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { generator, streamSeed, type StreamPurpose } from '../../lib/random.js';
import { zeros } from '../../lib/tensor/tensor.js';
import { toNumbers } from '../helpers.js';

const purposes: StreamPurpose[] = ['init', 'dropout', 'directions', 'probes'];

// y = W x, W ∈ R^{40×50} drawn uniform(±1/√50) by the initialisation stream
const spec: ModelSpecInput = { input: [50], layers: [{ type: 'linear', inFeatures: 50, outFeatures: 40, bias: false }] };
const bound = 1 / Math.sqrt(50);

/** The first 2000 words a generator's uniform(±bound) draw makes. */
function uniformWords(gen: ReturnType<typeof generator>): number[] {
  const t = zeros([2000], { dtype: 'float64' });
  gen.uniform(t, -bound, bound);
  return Array.from(toNumbers(t));
}

function correlation(a: number[], b: number[]): number {
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const ma = mean(a), mb = mean(b);
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

describe('streamSeed', () => {
  it('gives every (seed, purpose, index) its own exact-integer seed, the same on every call', () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 50; seed++)
      for (const p of purposes)
        for (let i = 0; i < 5; i++) {
          const s = streamSeed(seed, p, i);
          expect(Number.isSafeInteger(s) && s >= 0 && s < 2 ** 52).toBe(true);
          expect(streamSeed(seed, p, i)).toBe(s);
          seen.add(s);
        }
    expect(seen.size).toBe(50 * purposes.length * 5);
  });

  it('refuses what is not a seed or a purpose, naming it', () => {
    expect(() => streamSeed(-1, 'init')).toThrow(/seed must be a non-negative integer, got -1/);
    expect(() => streamSeed(1.5, 'init')).toThrow(/seed must be a non-negative integer/);
    expect(() => streamSeed(1, 'weights' as StreamPurpose)).toThrow(/unknown stream purpose 'weights'; use init, dropout, directions, probes/);
  });
});

describe('a model and its optimizer with one seed', () => {
  for (const seed of [0, 7]) {
    it(`seed ${seed}: the directions do not replay the words that made w₀, nor do dropout masks`, () => {
      const model = new Model(spec, { dtype: 'float64', seed });
      const w0 = Array.from(toNumbers(model.params));
      // w₀ is the init stream's draw (the documented derivation) ...
      expect(uniformWords(generator(streamSeed(seed, 'init')))).toEqual(w0);
      // ... and not mt19937(seed)'s, which the optimizer used to draw directions from
      expect(correlation(uniformWords(generator(seed)), w0)).toBeLessThan(0.1);

      // The optimizer's direction stream, read from its state, draws other words.
      const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 0.1 }, seed });
      const directions = generator(0);
      directions.setState(opt.stateDict().generator!);
      expect(Math.abs(correlation(uniformWords(directions), w0))).toBeLessThan(0.1);
      // So does the model's dropout stream.
      const dropout = generator(0);
      dropout.setState(model.native.getRngState());
      expect(Math.abs(correlation(uniformWords(dropout), w0))).toBeLessThan(0.1);
      expect(Math.abs(correlation(uniformWords(dropout), uniformWords(directions)))).toBeLessThan(0.1);
    });
  }
});

// Seedable generators and the direction samplers u ~ mu of math.md §1.
import * as check from './arguments.js';
import { UsamError } from './errors.js';
import type { NativeGenerator } from './native/binding.js';
import { native } from './native/load.js';
import { type Tensor, tensorArg } from './tensor/tensor.js';

export type Generator = NativeGenerator;

/**
 * What a random stream is for. Each purpose gets its own generator, seeded
 * from the user's one seed by streamSeed, so no two purposes read the same
 * words (before, initialisation and directions both ran mt19937(seed), and
 * the first directions replayed the words that made w₀). Data order, label
 * noise and augmentation use their own xoshiro streams (data/prng.ts).
 */
export type StreamPurpose = 'init' | 'dropout' | 'directions' | 'probes';

const PURPOSE_CODES: Record<StreamPurpose, bigint> = { init: 0x1n, dropout: 0x2n, directions: 0x3n, probes: 0x4n };
const MASK64 = (1n << 64n) - 1n;

function splitmix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/**
 * The seed of the generator for `purpose` (and an optional index, e.g. the
 * epoch of a probe) derived from the user's seed: splitmix64 chained over
 * (seed, purpose, index), cut to 52 bits so it is an exact JavaScript integer.
 */
export function streamSeed(seed: number, purpose: StreamPurpose, index = 0): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UsamError(`seed must be a non-negative integer, got ${seed}`);
  if (!Number.isSafeInteger(index) || index < 0) throw new UsamError(`stream index must be a non-negative integer, got ${index}`);
  const code = PURPOSE_CODES[purpose];
  if (code === undefined) throw new UsamError(`unknown stream purpose '${String(purpose)}'; use ${Object.keys(PURPOSE_CODES).join(', ')}`);
  const z = splitmix64(splitmix64(splitmix64(BigInt(seed)) ^ code) ^ BigInt(index));
  return Number(z >> 12n);
}

export function generator(seed: number, device = 'cpu'): Generator {
  check.number('generator', 'seed', seed, { integer: true, min: 0 });
  check.string('generator', 'device', device, "a device ('cpu', 'cuda')");
  return new (native().Generator)(seed, device);
}

export type BuiltinMeasure = 'gaussian' | 'rademacher' | 'sphere' | 'cube';

/**
 * Fills `out` with a draw of mu over all of its coordinates: gaussian N(0, I),
 * rademacher ±1, uniform on the unit sphere, or uniform on the cube
 * [-halfCube, halfCube]^P.
 */
export function sampleInto(gen: Generator, measure: BuiltinMeasure, out: Tensor, halfCube = 1): void {
  check.instanceOf('sampleInto', 'gen', gen, native().Generator as unknown as abstract new () => Generator, 'a Generator (generator(seed))');
  check.oneOf('sampleInto', 'measure', measure, ['gaussian', 'rademacher', 'sphere', 'cube'] as const);
  tensorArg('sampleInto', 'out', out);
  check.number('sampleInto', 'halfCube', halfCube, { min: 0 });
  switch (measure) {
    case 'gaussian':
      return gen.gaussian(out);
    case 'rademacher':
      return gen.rademacher(out);
    case 'sphere':
      return gen.sphere(out);
    case 'cube':
      if (!(halfCube > 0)) throw new UsamError(`halfCube must be > 0 for the cube measure, got ${halfCube}`);
      return gen.uniform(out, -halfCube, halfCube);
    default:
      throw new UsamError(`unknown measure '${String(measure)}'; use gaussian, rademacher, sphere or cube`);
  }
}

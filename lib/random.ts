// Seedable generators and the direction samplers u ~ mu of math.md §1.
import type { NativeGenerator } from './native/binding.js';
import { native } from './native/load.js';
import type { Tensor } from './tensor.js';

export type Generator = NativeGenerator;

export function generator(seed: number, device = 'cpu'): Generator {
  return new (native().Generator)(seed, device);
}

export type BuiltinMeasure = 'gaussian' | 'rademacher' | 'sphere' | 'cube';

/**
 * Fills `out` with a draw of mu over all of its coordinates: gaussian N(0, I),
 * rademacher ±1, uniform on the unit sphere, or uniform on the cube
 * [-halfCube, halfCube]^P.
 */
export function sampleInto(gen: Generator, measure: BuiltinMeasure, out: Tensor, halfCube = 1): void {
  switch (measure) {
    case 'gaussian':
      return gen.gaussian(out);
    case 'rademacher':
      return gen.rademacher(out);
    case 'sphere':
      return gen.sphere(out);
    case 'cube':
      if (!(halfCube > 0)) throw new Error(`halfCube must be > 0 for the cube measure, got ${halfCube}`);
      return gen.uniform(out, -halfCube, halfCube);
    default:
      throw new Error(`unknown measure '${String(measure)}'; use gaussian, rademacher, sphere or cube`);
  }
}

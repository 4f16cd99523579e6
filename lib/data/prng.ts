import { UsamError } from '../errors.js';
// A small seedable PRNG (xoshiro128**) for data order, label noise and
// augmentation: its whole state is four integers, so it is trivially
// checkpointed, and streams derived from (seed, purpose, index) make every
// epoch's order reproducible without storing anything.

export class Prng {
  private s: Uint32Array;

  constructor(...seeds: number[]) {
    // splitmix32 over the seeds fills the state (never all zero)
    let h = 0x9e3779b9;
    const mix = (x: number) => {
      h = (h + (x | 0) + 0x9e3779b9) | 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    for (const s of seeds) mix(Math.floor(s / 4294967296) ^ mix(s >>> 0));
    this.s = new Uint32Array([mix(1), mix(2), mix(3), mix(4)]);
    if (this.s.every((v) => v === 0)) this.s[0] = 1;
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Int32Array {
    const p = Int32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  getState(): number[] {
    return Array.from(this.s);
  }

  setState(state: number[]): void {
    if (state.length !== 4) throw new UsamError('Prng.setState: expected 4 integers');
    this.s = Uint32Array.from(state);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

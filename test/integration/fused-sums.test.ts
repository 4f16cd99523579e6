// The fused vector ops' double sums (native/fused.cc: sixteen lanes in a
// fixed order) by the AVX2 loop and by the portable one: the same bits, and
// both within rounding of the sums in float64 here. Each setting in its own
// process (USAM_PORTABLE_SUMS is read once, at load).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native/load.js';
import { repoRoot } from '../helpers.js';

interface Sums {
  path: 'avx2' | 'portable';
  results: Record<string, number | number[]>;
}
function run(env: NodeJS.ProcessEnv): Sums {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/fixtures/fused-sums.ts')], { cwd: repoRoot, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`test/fixtures/fused-sums.ts failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Sums;
}

describe('fused sums: the AVX2 and the portable loop', () => {
  it('give the same bits, and the float64 sums to rounding', () => {
    const { USAM_PORTABLE_SUMS: _, ...rest } = process.env;
    const fast = run(rest);
    const portable = run({ ...rest, USAM_PORTABLE_SUMS: '1' });
    expect(fast.path).toBe(native().versions().fusedSums);
    expect(portable.path).toBe('portable');
    expect(portable.results).toEqual(fast.results);
    const r = fast.results;
    // the exact sums of the stored values (float64 here, with their own rounding: n·2⁻⁵³ of Σ|terms| bounds both)
    const check = (got: number, terms: number[]) => {
      const exact = terms.reduce((s, t) => s + t, 0);
      const scale = terms.reduce((s, t) => s + Math.abs(t), 0);
      expect(Math.abs(got - exact)).toBeLessThanOrEqual(terms.length * 2 ** -52 * scale);
    };
    for (const dtype of ['float32', 'float64']) {
      const a = r[`${dtype} a`] as number[], b = r[`${dtype} b`] as number[];
      check(r[`${dtype} dot`] as number, a.map((v, i) => v * b[i]));
      check((r[`${dtype} norm`] as number) ** 2, a.map((v) => v * v));
      check(r[`${dtype} combine`] as number, r[`${dtype} combined`] as number[]);
      check(r[`${dtype} shiftDot`] as number, a.map((v, i) => v * b[i]));
    }
    const g = r.grad as number[];
    check(r.gradSum as number, g);
    check(r.gradSquares as number, g.map((v) => v * v));
  });
});

// extent() replaces Math.min(...xs) / Math.max(...xs) on data-sized arrays.
import { describe, expect, it } from 'vitest';
import { extent } from '../../lib/extent.js';

describe('extent', () => {
  it('handles arrays far past the argument limit that spreading into Math.max overflows', () => {
    const xs = Float64Array.from({ length: 3_000_000 }, (_, i) => Math.sin(i) * i);
    expect(() => Math.max(...xs)).toThrow(RangeError);
    let lo = Infinity, hi = -Infinity;
    for (const x of xs) [lo, hi] = [Math.min(lo, x), Math.max(hi, x)];
    expect(extent(xs)).toEqual({ min: lo, max: hi });
  });
  it('skips NaN and reports an empty input as reversed infinities', () => {
    expect(extent([3, NaN, -1, 2])).toEqual({ min: -1, max: 3 });
    expect(extent([])).toEqual({ min: Infinity, max: -Infinity });
  });
});

// countAllocations (lib/native/runtime.ts): LibTorch's CPU allocations made
// while a function runs, counted by a wrapper around LibTorch's CPU allocator
// that is in place only for the call.
import { describe, expect, it } from 'vitest';
import { countAllocations, native, zeros } from '../../lib/index.js';

/** The counter's totals, read without counting anything in between. */
const totals = () => {
  native().allocationCounter(true);
  return native().allocationCounter(false);
};

describe('countAllocations', () => {
  it('counts a new tensor with its bytes, and nothing for a view of one', () => {
    const t = zeros([1000], { dtype: 'float64' });
    const made = countAllocations(() => zeros([1000], { dtype: 'float32' }));
    expect(made.count).toBeGreaterThanOrEqual(1);
    expect(made.bytes).toBeGreaterThanOrEqual(4000);
    expect(made.value.shape).toEqual([1000]);
    const view = countAllocations(() => t.narrow(10, 100));
    expect(view.count).toBe(0);
    expect(view.bytes).toBe(0);
  });

  it('nests: the outer count includes the inner one', () => {
    const outer = countAllocations(() => {
      zeros([10]);
      return countAllocations(() => zeros([20]));
    });
    expect(outer.value.count).toBeGreaterThanOrEqual(1);
    expect(outer.count).toBeGreaterThanOrEqual(outer.value.count + 1);
  });

  it('stops counting when fn throws, and rethrows', () => {
    expect(() =>
      countAllocations(() => {
        zeros([10]);
        throw new Error('inside');
      }),
    ).toThrow('inside');
    // the original allocator is back: allocations now are not counted
    const before = totals();
    zeros([1000]);
    zeros([1000]);
    expect(totals()).toEqual(before);
  });

  it('refuses a non-function', () => {
    expect(() => countAllocations(3 as never)).toThrow(/fn.*must be a function/);
  });
});

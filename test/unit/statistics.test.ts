// The reproduction's statistics against tabulated values (Student's t
// quantiles from standard tables, and values R's pt/qt give) and
// hand-worked cases of the paired test and Holm's correction.
import { describe, expect, it } from 'vitest';
import { holm, incompleteBeta, logGamma, pairedTTest, studentCdf, studentQuantile } from '../../lib/experiments/statistics.js';

describe('Student t', () => {
  it('log Γ matches factorials and Γ(½) = √π', () => {
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
    expect(logGamma(10.5)).toBeCloseTo(13.940625219403763, 11);
  });

  it('I_x(a, b) for closed forms: I_x(1, 1) = x, I_x(a, 1) = x^a', () => {
    expect(incompleteBeta(0.3, 1, 1)).toBeCloseTo(0.3, 14);
    expect(incompleteBeta(0.7, 3, 1)).toBeCloseTo(0.343, 14);
    expect(incompleteBeta(0.2, 2, 5) + incompleteBeta(0.8, 5, 2)).toBeCloseTo(1, 14);
  });

  it('quantiles match the tables (two-sided 95% and 99%)', () => {
    const table: [number, number, number][] = [
      [0.975, 1, 12.706204736174698],
      [0.975, 2, 4.302652729749464],
      [0.975, 4, 2.7764451051977934],
      [0.975, 9, 2.2621571628540993],
      [0.995, 4, 4.604094871415897],
      [0.975, 1000, 1.9623390808264074],
    ];
    for (const [p, df, q] of table) expect(studentQuantile(p, df)).toBeCloseTo(q, 9);
    expect(studentQuantile(0.025, 4)).toBeCloseTo(-2.7764451051977934, 9);
  });

  it('the CDF: symmetric, t with 1 df is Cauchy', () => {
    expect(studentCdf(0, 3)).toBe(0.5);
    expect(studentCdf(1, 1)).toBeCloseTo(0.75, 14); // ½ + atan(1)/π
    expect(studentCdf(-2, 5) + studentCdf(2, 5)).toBeCloseTo(1, 14);
    expect(studentCdf(2.015048372669157, 5)).toBeCloseTo(0.95, 10);
  });
});

describe('the paired t test', () => {
  it('a worked case: differences 1, 2, 3, 4, 5', () => {
    const r = pairedTTest([2, 4, 6, 8, 10], [1, 2, 3, 4, 5]);
    expect(r.n).toBe(5);
    expect(r.mean).toBe(3);
    expect(r.standardError).toBeCloseTo(Math.sqrt(2.5 / 5), 14);
    expect(r.t).toBeCloseTo(3 / Math.sqrt(0.5), 12);
    expect(r.df).toBe(4);
    expect(r.p).toBeCloseTo(0.0132355995637, 10); // 2·∫_t^∞ of the t density, by Simpson's rule (2e5 panels)
    expect(r.low).toBeCloseTo(3 - 2.7764451051977934 * Math.sqrt(0.5), 9);
    expect(r.high).toBeCloseTo(3 + 2.7764451051977934 * Math.sqrt(0.5), 9);
  });

  it('pairs by position, drops non-finite pairs, refuses unequal lengths', () => {
    expect(pairedTTest([1, 2, NaN], [0, 0, 0]).n).toBe(2);
    expect(() => pairedTTest([1], [1, 2])).toThrow(/pairs must match/);
    expect(Number.isNaN(pairedTTest([1], [0]).p)).toBe(true);
  });
});

describe("Holm's correction", () => {
  it('steps down and stays monotone', () => {
    // m = 4: sorted 0.01, 0.02, 0.03, 0.04 → 0.04, 0.06, 0.06, 0.06
    expect(holm([0.03, 0.01, 0.04, 0.02]).map((x) => +x.toFixed(12))).toEqual([0.06, 0.04, 0.06, 0.06]);
    expect(holm([0.5, 0.9])).toEqual([1, 1]);
    const withNaN = holm([0.01, NaN, 0.02]);
    expect(withNaN[0]).toBeCloseTo(0.03, 12);
    expect(Number.isNaN(withNaN[1])).toBe(true);
    expect(withNaN[2]).toBeCloseTo(0.04, 12);
  });
});

import { UsamError } from '../errors.js';
// The statistics behind `usam reproduce`'s verdicts: Student's t (its CDF
// and quantiles, through the regularised incomplete beta function), paired
// t tests with confidence intervals, and Holm's step-down correction for a
// family of tests. Small and exact enough (1e-10) to test against tables.

/** ln Γ(x), x > 0 (Lanczos, g = 7, 9 terms: ~1e-15 relative). */
export function logGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The continued fraction of I_x(a, b) (modified Lentz). */
function betaFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1, d = 1 - ((a + b) * x) / (a + 1);
  d = Math.abs(d) < tiny ? tiny : d;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = 1 + aa / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = 1 + aa / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) return h;
  }
  throw new UsamError(`incompleteBeta: no convergence at x=${x}, a=${a}, b=${b}`);
}

/** The regularised incomplete beta function I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (!(x >= 0 && x <= 1)) throw new UsamError(`incompleteBeta: x must be in [0, 1], got ${x}`);
  if (x === 0 || x === 1) return x;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  return x < (a + 1) / (a + b + 2) ? (front * betaFraction(x, a, b)) / a : 1 - (front * betaFraction(1 - x, b, a)) / b;
}

/** P(T ≤ t) for Student's t with `df` degrees of freedom. */
export function studentCdf(t: number, df: number): number {
  if (!(df > 0)) throw new UsamError(`studentCdf: df must be > 0, got ${df}`);
  if (!Number.isFinite(t)) return t > 0 ? 1 : 0;
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t > 0 ? 1 - tail : tail;
}

/** The p-quantile of Student's t (bisection on the CDF, then Newton: 1e-12). */
export function studentQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new UsamError(`studentQuantile: p must be in (0, 1), got ${p}`);
  if (p < 0.5) return -studentQuantile(1 - p, df);
  let lo = 0, hi = 1;
  while (studentCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (studentCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

export interface PairedTest {
  /** pairs used (pairs with a non-finite side are dropped) */
  n: number;
  /** mean of the differences a_i − b_i, and its standard error */
  mean: number;
  standardError: number;
  /** mean / standard error, and its degrees of freedom n − 1 */
  t: number;
  df: number;
  /** two-sided p-value of "mean difference = 0" */
  p: number;
  /** the (1 − alpha) confidence interval of the mean difference */
  low: number;
  high: number;
}

/** Paired t test of a_i − b_i (e.g. a rule and SGD on the same seeds). */
export function pairedTTest(a: number[], b: number[], alpha = 0.05): PairedTest {
  if (a.length !== b.length) throw new UsamError(`pairedTTest: ${a.length} values against ${b.length}; pairs must match`);
  const d = a.map((x, i) => x - b[i]).filter(Number.isFinite);
  const n = d.length;
  const mean = d.reduce((s, x) => s + x, 0) / n;
  if (n < 2) return { n, mean, standardError: NaN, t: NaN, df: n - 1, p: NaN, low: NaN, high: NaN };
  const sd = Math.sqrt(d.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1));
  const standardError = sd / Math.sqrt(n);
  const df = n - 1;
  const t = standardError > 0 ? mean / standardError : mean === 0 ? 0 : Math.sign(mean) * Infinity;
  const p = Number.isFinite(t) ? 2 * studentCdf(-Math.abs(t), df) : 0;
  const q = studentQuantile(1 - alpha / 2, df);
  return { n, mean, standardError, t, df, p, low: mean - q * standardError, high: mean + q * standardError };
}

/**
 * Holm's step-down adjustment of a family of p-values: sorted ascending,
 * p_(k) becomes max over j ≤ k of min(1, (m − j + 1)·p_(j)). NaN stays NaN
 * and counts in m (a test that could not be made is still one of the family).
 */
export function holm(p: number[]): number[] {
  const m = p.length;
  const order = p.map((v, i) => [v, i] as const).sort((x, y) => (Number.isNaN(x[0]) ? 1 : Number.isNaN(y[0]) ? -1 : x[0] - y[0]));
  const out = new Array<number>(m).fill(NaN);
  let running = 0;
  order.forEach(([v, i], k) => {
    if (Number.isNaN(v)) return;
    running = Math.max(running, Math.min(1, (m - k) * v));
    out[i] = running;
  });
  return out;
}

import { UsamError } from '../errors.js';
// Axis ticks for the report's charts: "nice numbers" on linear axes
// (Heckbert, "Nice numbers for graph labels", Graphics Gems, 1990: loose
// labelling, the axis extended to whole multiples of a 1·2·5 × 10ᵏ step) and
// decades on log axes (with 2 and 5 between them when the axis spans at most
// two decades).

export interface Tick {
  value: number;
  label: string;
  /** a minor tick: a lighter grid line */
  minor?: boolean;
}

export interface Axis {
  /** the axis' domain (a linear axis is extended to its outer ticks) */
  min: number;
  max: number;
  ticks: Tick[];
  log: boolean;
}

/** Heckbert's nice number near x: 1, 2, 5 or 10 × 10ᵏ (rounded, or the smallest one ≥ x). */
export function niceNumber(x: number, round: boolean): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new UsamError(`niceNumber: expected a positive finite number, got ${x}`);
  const exp = Math.floor(Math.log10(x));
  const f = x / 10 ** exp;
  let nf: number;
  if (round) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return exp >= 0 ? nf * 10 ** exp : nf / 10 ** -exp;
}

const SUPERSCRIPT: Record<string, string> = { '-': '⁻', '0': '⁰', '1': '¹', '2': '²', '3': '³', '4': '⁴', '5': '⁵', '6': '⁶', '7': '⁷', '8': '⁸', '9': '⁹' };
/** 10 to the k, as text: 10³, 10⁻⁴ */
export const powerOfTen = (k: number): string => '10' + String(k).replace(/[-0-9]/g, (c) => SUPERSCRIPT[c]);

/** A tick value with `decimals` digits after the point (no binary noise: 0.30000000000000004 → 0.3). */
function fixed(v: number, decimals: number): number {
  return Number(v.toFixed(Math.min(Math.max(decimals, 0), 20)));
}

/** A label for a value on an axis whose tick step is `step`. */
export function formatTick(v: number, step: number): string {
  if (v === 0) return '0';
  const big = Math.max(Math.abs(v), step);
  const stepExp = Math.floor(Math.log10(step) + 1e-9);
  if (big >= 1e5 || big < 1e-3) {
    // m×10ᵏ with k of the value and as many digits as the step needs
    const k = Math.floor(Math.log10(Math.abs(v)) + 1e-9);
    const m = fixed(v / 10 ** k, Math.max(0, k - stepExp));
    return m === 1 ? powerOfTen(k) : m === -1 ? '−' + powerOfTen(k) : `${String(m).replace('-', '−')}×${powerOfTen(k)}`;
  }
  return String(fixed(v, -stepExp)).replace('-', '−');
}

/** Heckbert's loose labelling of [min, max] with about `count` ticks. */
export function linearTicks(min: number, max: number, count = 5): Axis {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new UsamError(`linearTicks: the range [${min}, ${max}] is not finite`);
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    [min, max] = [min - pad, max + pad];
  }
  const range = niceNumber(max - min, false);
  const step = niceNumber(range / Math.max(count - 1, 1), true);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  const ticks: Tick[] = [];
  for (let i = first; i <= last; i++) {
    const value = fixed(i * step, decimals);
    ticks.push({ value: value === 0 ? 0 : value, label: formatTick(value, step) });
  }
  return { min: ticks[0].value, max: ticks.at(-1)!.value, ticks, log: false };
}

/**
 * Decades 10ᵏ covering [min, max] (both > 0); the axis spans whole decades.
 * Up to two decades, 2·10ᵏ and 5·10ᵏ are labelled minor ticks too; beyond
 * eight, every second (third, ...) decade is labelled.
 */
export function logTicks(min: number, max: number): Axis {
  if (!(min > 0) || !(max > 0) || !Number.isFinite(min) || !Number.isFinite(max)) throw new UsamError(`logTicks: the range [${min}, ${max}] must be positive and finite`);
  if (min > max) [min, max] = [max, min];
  let lo = Math.floor(Math.log10(min) + 1e-9);
  let hi = Math.ceil(Math.log10(max) - 1e-9);
  if (hi === lo) hi = lo + 1;
  const every = Math.ceil((hi - lo) / 8);
  lo = Math.floor(lo / every) * every;
  hi = Math.ceil(hi / every) * every;
  const decade = (k: number) => (k >= 0 ? 10 ** k : 1 / 10 ** -k);
  const ticks: Tick[] = [];
  for (let k = lo; k <= hi; k += every) {
    const v = decade(k);
    ticks.push({ value: v, label: k >= -2 && k <= 3 ? String(v) : powerOfTen(k) });
    if (hi - lo <= 2 && k < hi)
      for (const m of [2, 5]) {
        const value = fixed(m * v, -k);
        ticks.push({ value, label: k >= -2 && k <= 2 ? String(value) : `${m}×${powerOfTen(k)}`, minor: true });
      }
  }
  return { min: decade(lo), max: decade(hi), ticks, log: true };
}

/** A log axis when every value is positive and they span at least `decades` decades; else a linear one. */
export function autoAxis(values: number[], o: { decades?: number; count?: number; log?: boolean } = {}): Axis {
  const v = values.filter(Number.isFinite);
  if (v.length === 0) return linearTicks(0, 1, o.count);
  let min = Infinity, max = -Infinity;
  for (const x of v) {
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const log = o.log ?? (min > 0 && max / min >= 10 ** (o.decades ?? 2));
  return log ? logTicks(min, max) : linearTicks(min, max, o.count);
}

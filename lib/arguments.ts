// The checks every public door runs on what it is given, before any of it is
// used: a wrong value becomes an ArgumentError that names the function, the
// argument, what it got and what it expects, instead of a TypeError from
// deep inside ("Cannot read properties of undefined"). Each check returns the
// value, typed, so a door reads `const o = options('mlp', 'options', raw)`.
// Checks of the library's own objects (tensors, models) live beside them and
// are built from `instanceOf` below.
import { ArgumentError } from './errors.js';

export { ArgumentError };

/** A value in words, for messages: `undefined`, `the number 42`, `a string "x"`, `an array of 3`, `a Float64Array of 3`, `an object {a, b}`. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined (nothing)';
  if (v === null) return 'null';
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'boolean') return `the boolean ${v}`;
  if (typeof v === 'bigint') return `the bigint ${v}`;
  if (typeof v === 'symbol') return 'a symbol';
  if (typeof v === 'function') return `a function${v.name ? ` (${v.name})` : ''}`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${(v as unknown as ArrayLike<unknown>).length ?? v.byteLength}`;
  const o = v as Record<string, unknown>;
  // the library's tensors say what they are (a disposed one has no shape to read)
  if (o.disposed === true) return `a disposed ${Object.getPrototypeOf(o)?.constructor?.name ?? 'object'}`;
  if (Array.isArray(o.shape) && typeof o.dtype === 'string') return `a ${o.dtype} tensor of shape [${(o.shape as number[]).join(', ')}]`;
  const name = Object.getPrototypeOf(o)?.constructor?.name;
  if (name && name !== 'Object') return `a ${name}`;
  const keys = Object.keys(o);
  return keys.length === 0 ? 'an empty object {}' : `an object {${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', …' : ''}}`;
}

function fail(fn: string, name: string, expected: string, got: unknown): never {
  throw new ArgumentError(fn, name, `must be ${expected}, got ${describeValue(got)}`);
}

// an object that can carry named fields: not an array, typed array or function
// (a Model passed as `{ dtype, device }` options is one)
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);

/** An options object that may be left out: undefined becomes {}. */
export function options<T extends object>(fn: string, name: string, v: T | undefined): T {
  if (v === undefined) return {} as T;
  if (!isPlainObject(v)) fail(fn, name, 'an options object ({ ... }) or left out', v);
  return v;
}

/** A required plain object ({ ... }). */
export function object<T extends object>(fn: string, name: string, v: T, what = 'an object ({ ... })'): T {
  if (!isPlainObject(v)) fail(fn, name, what, v);
  return v;
}

/** An object of names to values that may be left out (process.env, a plain object): undefined becomes {}. */
export function record<T extends object>(fn: string, name: string, v: T | undefined, what = 'an object of names to values (like process.env)'): T {
  if (v === undefined) return {} as T;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) fail(fn, name, `${what} or left out`, v);
  return v;
}

export function string(fn: string, name: string, v: unknown, what = 'a string'): string {
  if (typeof v !== 'string' || v.length === 0) fail(fn, name, `${what} (non-empty)`, v);
  return v;
}

/** One of a few strings. */
export function oneOf<T extends string>(fn: string, name: string, v: unknown, choices: readonly T[]): T {
  if (typeof v !== 'string' || !choices.includes(v as T)) fail(fn, name, `one of ${choices.map((c) => `'${c}'`).join(', ')}`, v);
  return v as T;
}

/** A finite number within [min, max] (an integer when asked). */
export function number(fn: string, name: string, v: unknown, o: { integer?: boolean; min?: number; max?: number } = {}): number {
  const range = [o.min !== undefined ? `≥ ${o.min}` : '', o.max !== undefined ? `≤ ${o.max}` : ''].filter(Boolean).join(' and ');
  const expected = `${o.integer ? 'an integer' : 'a finite number'}${range ? ` ${range}` : ''}`;
  if (typeof v !== 'number' || !Number.isFinite(v) || (o.integer && !Number.isInteger(v))) fail(fn, name, expected, v);
  if ((o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) fail(fn, name, expected, v);
  return v;
}

export function boolean(fn: string, name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(fn, name, 'true or false', v);
  return v;
}

export function func<F extends (...a: never[]) => unknown>(fn: string, name: string, v: F, what = 'a function'): F {
  if (typeof v !== 'function') fail(fn, name, what, v);
  return v;
}

/** An array (or typed array) of finite numbers; `length` when it must have that many. */
export function numbers(fn: string, name: string, v: unknown, o: { length?: number; integer?: boolean; min?: number } = {}): ArrayLike<number> {
  const what = `an array of ${o.integer ? 'integers' : 'numbers'}${o.length !== undefined ? ` of length ${o.length}` : ''}`;
  const ok = Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array));
  if (!ok) fail(fn, name, what, v);
  const a = v as ArrayLike<number>;
  if (o.length !== undefined && a.length !== o.length) fail(fn, name, what, v);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (typeof x !== 'number' || !Number.isFinite(x) || (o.integer && !Number.isInteger(x)) || (o.min !== undefined && x < o.min))
      throw new ArgumentError(fn, name, `must be ${what}${o.min !== undefined ? ` ≥ ${o.min}` : ''}; element ${i} is ${describeValue(x)}`);
  }
  return a;
}

/** A shape: a (possibly empty) array of integers ≥ 0. */
export function shape(fn: string, name: string, v: unknown): number[] {
  return Array.from(numbers(fn, name, v, { integer: true, min: 0 }));
}

/**
 * Values for a tensor: a typed array (taken as it is: NaN and Inf are values
 * too) or an array of numbers.
 */
export function values<T extends ArrayLike<number> | BigInt64Array>(fn: string, name: string, v: T): T {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return v;
  if (!Array.isArray(v)) fail(fn, name, 'an array or typed array of numbers', v);
  const i = v.findIndex((x) => typeof x !== 'number');
  if (i >= 0) throw new ArgumentError(fn, name, `must hold numbers; element ${i} is ${describeValue(v[i])}`);
  return v;
}

/** An array of anything; each element is for the caller to check. */
export function array<T>(fn: string, name: string, v: readonly T[] | undefined, what = 'an array'): readonly T[] {
  if (!Array.isArray(v)) fail(fn, name, what, v);
  return v;
}

/** Uint8Array bytes (a Buffer is one). */
export function bytes(fn: string, name: string, v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(fn, name, 'a Uint8Array (or Buffer) of bytes', v);
  return v;
}

/**
 * An instance of a class of the library; `disposed` says whether it was
 * disposed (then it is refused, naming dispose()).
 */
export function instanceOf<T extends object>(fn: string, name: string, v: unknown, cls: abstract new (...a: never[]) => T, what: string, disposed?: (t: T) => boolean): T {
  if (!(v instanceof cls)) fail(fn, name, what, v);
  if (disposed?.(v)) throw new ArgumentError(fn, name, `is a ${cls.name} that was disposed; it cannot be used after dispose()`);
  return v;
}

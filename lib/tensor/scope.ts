// Disposal that fits TypeScript: `using` (Symbol.dispose on tensors, models,
// optimizers and Hessians) and scope(fn), which disposes every tensor and
// library object made while fn ran, except what fn returns.
//
// Tensors are tracked natively (each one made inside a scope registers a
// weak reference with the innermost scope). What the library's own objects
// keep for their lifetime (a model's parameters, an optimizer's buffers) is
// made under persistent(): it belongs to its owner, which a scope disposes
// as a whole. A tensor the garbage collector took is simply skipped.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import type { NativeTensor } from '../native/binding.js';
import { native } from '../native/load.js';

/** What scope() disposes besides tensors: the library's objects with owned native memory. */
export interface Disposable {
  dispose(): void;
}

const owners: Disposable[][] = [];

/** Registers a library object made now with the innermost scope (called by their constructors). */
export function track<T extends Disposable>(object: T): T {
  owners[owners.length - 1]?.push(object);
  return object;
}

/** Runs `make` with the tensors it creates owned by the caller's object, outside every scope. */
export function persistent<T>(make: () => T): T {
  const T = native().Tensor;
  T.persistent(true);
  try {
    return make();
  } finally {
    T.persistent(false);
  }
}

function isTensor(v: unknown): v is NativeTensor {
  return typeof v === 'object' && v !== null && v instanceof (native().Tensor as unknown as new () => object);
}

/** Tensors and tracked objects reachable from a result (arrays, plain objects, Maps, Sets). */
function reachable(result: unknown, tensors: NativeTensor[], objects: Set<unknown>, seen = new Set<unknown>()): void {
  if (typeof result !== 'object' || result === null || seen.has(result)) return;
  seen.add(result);
  if (isTensor(result)) {
    tensors.push(result);
    return;
  }
  objects.add(result);
  const values = Array.isArray(result)
    ? result
    : result instanceof Map || result instanceof Set
      ? [...result.values()]
      : Object.getPrototypeOf(result) === Object.prototype
        ? Object.values(result)
        : [];
  for (const v of values) reachable(v, tensors, objects, seen);
}

/**
 * Runs fn and disposes every tensor, model, optimizer and Hessian made while
 * it ran, except those it returns (directly, or in arrays and plain objects):
 * they go to the enclosing scope, if any. Synchronous only: a scope cannot
 * tell the tensors of the awaited work from others made meanwhile, so a
 * Promise result is refused (nothing is disposed; use `using` in async code).
 */
export function scope<T>(fn: () => T): T {
  check.func('scope', 'fn', fn, 'a function to run (scope(() => { ... }))');
  const T = native().Tensor;
  T.beginScope();
  owners.push([]);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    T.endScope([]);
    for (const o of owners.pop()!) o.dispose();
    throw e;
  }
  const made = owners.pop()!;
  if (typeof (result as { then?: unknown } | null)?.then === 'function') {
    T.endScope(null);
    owners[owners.length - 1]?.push(...made);
    throw new UsamError('scope(fn): fn returned a Promise; scope() is for synchronous code (nothing was disposed). In async code, use `using` or dispose().');
  }
  const tensors: NativeTensor[] = [];
  const objects = new Set<unknown>();
  reachable(result, tensors, objects);
  T.endScope(tensors);
  for (const o of made) {
    if (objects.has(o)) owners[owners.length - 1]?.push(o);
    else o.dispose();
  }
  return result;
}

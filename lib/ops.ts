// Fused flat-vector operations (one native call over P numbers each).
import type { NativeOps } from './native/binding.js';
import { native } from './native/load.js';

export const ops: NativeOps = new Proxy({} as NativeOps, {
  get: (_t, key) => (native().ops as unknown as Record<string | symbol, unknown>)[key],
});

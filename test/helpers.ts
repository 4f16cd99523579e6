import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Model } from '../lib/model/model.js';
import type { ModelSpecInput } from '../lib/model/spec.js';
import { labels, tensor, type Tensor } from '../lib/tensor/tensor.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The golden cases of the reference implementation, kept in the repository (what the golden commands read by default). */
export { fixtureGoldenDir as goldenDir } from '../scripts/golden-cli.js';

/** Deterministic pseudo-random numbers for test data (not for the code under test). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

export function randomBatch(shape: number[], classes: number, seed: number, dtype: 'float32' | 'float64' = 'float64') {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const x = tensor(Float64Array.from({ length: n }, () => r() * 2 - 1), shape, { dtype });
  const y = labels(Array.from({ length: shape[0] }, () => Math.floor(r() * classes)));
  return { x, y };
}

export function randomVector(n: number, seed: number, dtype: 'float32' | 'float64' = 'float64'): Tensor {
  const r = rng(seed);
  return tensor(Float64Array.from({ length: n }, () => r() * 2 - 1), [n], { dtype });
}

export function float64Model(spec: ModelSpecInput, seed = 1): Model {
  return new Model(spec, { dtype: 'float64', seed });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** ‖a − b‖ / ‖b‖: the relative error of a against the reference b, in norm. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
}

export function toNumbers(t: Tensor): Float64Array {
  return Float64Array.from(t.toArray() as Float64Array);
}

/**
 * A Python with PyTorch 2.x for the twin tests: the first of
 * USAM_TEST_TORCH_PYTHONS (`:`-separated, as CI sets it) and PYTHON whose
 * torch is 2.x, with its version; null when there is none (the tests say
 * they are skipped). `atMost` [major, minor]: only a torch no newer than that
 * (a file it saves must load in a LibTorch of that version).
 */
export function torchPython(atMost?: [number, number]): { python: string; version: string } | null {
  for (const python of [...(process.env.USAM_TEST_TORCH_PYTHONS ?? '').split(':'), process.env.PYTHON].filter(Boolean) as string[]) {
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    const [major, minor] = r.stdout.split('.').map(Number);
    if (major < 2 || (atMost && (major > atMost[0] || (major === atMost[0] && minor > atMost[1])))) continue;
    return { python, version: r.stdout.trim() };
  }
  return null;
}

// Fused flat-vector operations: one native call over P numbers each. Typed
// functions over the binding (lib/native/binding.ts, NativeOps), so that
// go-to-definition and static tools follow every call.
import type { NativeOps, NativeTensor as T } from '../native/binding.js';
import * as check from '../arguments.js';
import { native } from '../native/load.js';

const n = (): NativeOps => native().ops;

export const ops = {
  /** y += a·x */
  axpy: (y: T, a: number, x: T): void => n().axpy(y, a, x),
  /** x *= a */
  scale: (x: T, a: number): void => n().scale(x, a),
  /** x += c */
  addScalar: (x: T, c: number): void => n().addScalar(x, c),
  fill: (x: T, value: number): void => n().fill(x, value),
  /** ⟨a, b⟩; on the CPU summed in double (sixteen lanes, the same bits on every CPU), whatever the dtype */
  dot: (a: T, b: T): number => n().dot(a, b),
  /** the Euclidean norm ‖x‖; on the CPU from a sum of squares in double, as dot */
  norm: (x: T): number => n().norm(x),
  sum: (x: T): number => n().sum(x),
  copy: (dst: T, src: T): void => n().copy(dst, src),
  /** dst = |src| */
  abs: (dst: T, src: T): void => n().abs(dst, src),
  /** dst = a ⊙ b */
  mul: (dst: T, a: T, b: T): void => n().mul(dst, a, b),
  /** dst = Σ c_i·t_i in one fused pass; returns the sum of dst (NaN/±Inf when any element is) */
  combine: (dst: T, coefficients: number[], tensors: T[]): number => n().combine(dst, coefficients, tensors),
  /**
   * dst = base + scale·dir and ⟨probe, dir⟩ (accumulated in double; 0 without a probe) in one fused pass; dst may
   * alias base only. With `keep`, keep = base in the same pass (a perturbation written over w that keeps w).
   */
  shiftDot: (dst: T, base: T, scale: number, dir: T, probe?: T, keep?: T): number => n().shiftDot(dst, base, scale, dir, probe, keep),
  allFinite: (x: T): boolean => n().allFinite(x),
  /** Eigenvalues (ascending) and optionally eigenvectors of a symmetric n×n row-major matrix, by LAPACK */
  symmetricEigen: (a: Float64Array, n: number, wantVectors: boolean) => native().linalg.symmetricEigen(a, n, check.boolean('ops.symmetricEigen', 'wantVectors', wantVectors)),
} satisfies NativeOps & Record<string, unknown>;

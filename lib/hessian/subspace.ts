// Comparing subspaces: the principal angles between span(A) and span(B) for
// two sets of flat vectors (eigenvectors of two operators, or of one
// operator at two checkpoints). With Q_A, Q_B orthonormal bases, the cosines
// of the angles are the singular values of Q_Aᵀ Q_B (Björck & Golub 1973);
// here the square roots of the eigenvalues of the small Gram matrix
// (Q_Aᵀ Q_B)(Q_Aᵀ Q_B)ᵀ. The overlap ‖Q_Aᵀ Q_B‖_F² / max(k_A, k_B) is 1 for
// equal subspaces and 0 for orthogonal ones (Gur-Ari et al. 2018 use it for
// the top Hessian subspace and the gradient).
import { UsamError } from '../errors.js';
import { ops } from '../tensor/ops.js';
import { type Tensor, tensorArg } from '../tensor/tensor.js';
import { symmetricEigen } from './linalg.js';

export interface PrincipalAngles {
  /** the angles in radians, ascending (min(k_A, k_B) of them) */
  angles: number[];
  /** their cosines, descending */
  cosines: number[];
  /** ‖Q_Aᵀ Q_B‖_F² / max(k_A, k_B): 1 for equal subspaces, 0 for orthogonal ones */
  overlap: number;
}

/** The principal angles between the spans of two sets of flat vectors (each set linearly independent). */
export function principalAngles(a: Tensor[], b: Tensor[]): PrincipalAngles {
  const qa = orthonormalBasis('principalAngles', 'a', a);
  try {
    const qb = orthonormalBasis('principalAngles', 'b', b);
    try {
      if (qa[0].shape[0] !== qb[0].shape[0]) throw new UsamError(`principalAngles: the vectors of a have ${qa[0].shape[0]} entries and those of b ${qb[0].shape[0]}; compare vectors of one model`);
      const ka = qa.length, kb = qb.length;
      const c = qa.map((x) => qb.map((y) => ops.dot(x, y)));
      // G = C Cᵀ (ka × ka): its eigenvalues are the squared singular values of C
      const g = new Float64Array(ka * ka);
      for (let i = 0; i < ka; i++) for (let j = 0; j < ka; j++) for (let l = 0; l < kb; l++) g[i * ka + j] += c[i][l] * c[j][l];
      const squares = Array.from(symmetricEigen(g, ka).values)
        .sort((x, y) => y - x)
        .slice(0, Math.min(ka, kb));
      const cosines = squares.map((s) => Math.min(1, Math.sqrt(Math.max(0, s))));
      let frob = 0;
      for (const row of c) for (const v of row) frob += v * v;
      return { angles: cosines.map((x) => Math.acos(x)), cosines, overlap: frob / Math.max(ka, kb) };
    } finally {
      for (const q of qb) q.dispose();
    }
  } finally {
    for (const q of qa) q.dispose();
  }
}

/**
 * w − Q(Qᵀw) for orthonormal Q, one vector at a time, `passes` times
 * (twice is enough: Giraud et al. 2005): the reorthogonalisation of Lanczos,
 * deflation, Hutch++'s sketch and Gram–Schmidt below.
 */
export function projectOut(w: Tensor, basis: readonly Tensor[], passes = 2): void {
  for (let pass = 0; pass < passes; pass++) for (const q of basis) ops.axpy(w, -ops.dot(q, w), q);
}

/** Orthonormal copies (Gram–Schmidt, twice) of flat, independent vectors, in float64 unless `keepDType`; the caller disposes them. */
export function orthonormalBasis(fn: string, name: string, vectors: Tensor[], keepDType = false): Tensor[] {
  if (!Array.isArray(vectors) || vectors.length === 0) throw new UsamError(`${fn}: ${name} must be a non-empty array of flat tensors (e.g. eigenvalues({vectors: true}).largestVectors)`);
  const out: Tensor[] = [];
  try {
    for (const [i, v] of vectors.entries()) {
      tensorArg(fn, `${name}[${i}]`, v);
      if (v.shape.length !== 1 || v.shape[0] !== vectors[0].shape[0]) throw new UsamError(`${fn}: ${name}[${i}] has shape [${v.shape}]; every vector must be flat, of one length`);
      const q = keepDType || v.dtype === 'float64' ? v.clone() : v.to('cpu', 'float64');
      out.push(q);
      const norm = ops.norm(q);
      projectOut(q, out.slice(0, -1));
      const left = ops.norm(q);
      if (!(left > 1e-8 * norm)) throw new UsamError(`${fn}: ${name}[${i}] is zero or in the span of the vectors before it; pass independent vectors`);
      ops.scale(q, 1 / left);
    }
    return out;
  } catch (e) {
    for (const q of out) q.dispose();
    throw e;
  }
}

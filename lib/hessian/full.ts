// The full Hessian as a matrix: one HVP per column (of the rows kept by
// options.modules), symmetrised. For the exact spectra of small models and
// for tests against PyTorch's torch.autograd.functional.hessian.
import { totalmem } from 'node:os';
import { ConfigError } from '../errors.js';
import type { Work } from '../model/work.js';
import type { CurvatureOperator } from './operator.js';

/** full()'s result: the (restricted) Hessian as a row-major float64 matrix of `shape`, symmetrised. */
export interface FullHessian {
  size: number;
  shape: [number, number];
  /** row-major, H[i, j] at matrix[i·size + j] (as torch's .numpy().ravel()) */
  matrix: Float64Array;
  /** the largest |H[i, j] − H[j, i]| before symmetrising */
  asymmetry: number;
  hvps: number;
}

/** The full Hessian is refused above this many rows unless full({maxSize}) says otherwise. */
export const FULL_HESSIAN_LIMIT = 4096;

/** The n×n (restricted) Hessian of `op`, refused above `maxSize` rows (default FULL_HESSIAN_LIMIT) with the bytes it would take. */
export function* fullMatrix(op: CurvatureOperator, n: number, maxSize = FULL_HESSIAN_LIMIT): Work<FullHessian> {
  const limit = maxSize;
  if (n > limit) {
    // n² float64 entries, and a symmetric copy while it is made; say so in bytes against this machine's memory
    const gb = (b: number) => `${(b / 1e9).toPrecision(3)} GB`;
    const how = n * n * 16 < totalmem() ? `restrict it with options.modules, or pass full({maxSize: ${n}})` : 'restrict it with options.modules, or use the probes that need no matrix (eigenvalues, trace, density)';
    const what = `the Hessian has ${n} rows, above the limit of ${limit}: its float64 entries take ${gb(n * n * 8)}, this machine has ${gb(totalmem())}; ${how}`;
    throw new ConfigError('full', [{ path: 'maxSize', message: what }]);
  }
  const before = op.hvps;
  const H = new Float64Array(n * n);
  const out = op.zeros();
  const P = op.model.numParams;
  const unit = new Float64Array(P);
  for (let j = 0; j < n; j++) {
    const idx = op.indices(j);
    unit[idx] = 1;
    const ej = op.fromValues(unit);
    unit[idx] = 0;
    (yield* op.applyWork(ej, out));
    ej.dispose();
    const col = out.toArray() as Float64Array | Float32Array;
    for (let i = 0; i < n; i++) H[i * n + j] = col[op.indices(i)];
  }
  out.dispose();
  let asymmetry = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < i; j++) {
      asymmetry = Math.max(asymmetry, Math.abs(H[i * n + j] - H[j * n + i]));
      const m = (H[i * n + j] + H[j * n + i]) / 2;
      H[i * n + j] = m;
      H[j * n + i] = m;
    }
  return { size: n, shape: [n, n], matrix: H, asymmetry, hvps: op.hvps - before };
}

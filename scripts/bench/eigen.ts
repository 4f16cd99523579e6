// npm run bench:eigen [-- --sizes 16,32,48,64,128,256,512]
// Dense symmetric eigenproblems in JavaScript (Householder + implicit QL) and
// by LAPACK through LibTorch (native/linalg.cc), timed alternately in one run
// (median of several), for a random symmetric matrix (values, values and
// vectors) and a random tridiagonal one with vectors (what each Lanczos step
// solves). Prints time(JS)/time(LAPACK): above 1, LAPACK is faster. The size
// from which it wins sets LAPACK_MIN_SIZE in lib/hessian/linalg.ts.
import { LAPACK_MIN_SIZE, symmetricEigen, tridiagonalEigen } from '../../lib/hessian/linalg.js';
import { alternate } from './models.js';
import { option } from './args.js';

const sizes = option('--sizes', '16,32,48,64,96,128,256,512').split(',').map(Number);

let state = 12345;
const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;

console.log(`LAPACK_MIN_SIZE = ${LAPACK_MIN_SIZE}; ratios are time(JS) / time(LAPACK), median of alternating repeats`);
console.log('n | dense values | dense values+vectors | tridiagonal values+vectors | JS ms (dense values)');
console.log('---|---|---|---|---');
for (const n of sizes) {
  const a = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c <= r; c++) a[r * n + c] = a[c * n + r] = random();
  const alpha = Array.from({ length: n }, random);
  const beta = Array.from({ length: n - 1 }, random);
  const repeats = n >= 256 ? 3 : n >= 64 ? 15 : 200;
  const [jsV, lapackV, jsVV, lapackVV, jsT, lapackT] = alternate(
    [
      () => symmetricEigen(a, n, false, 'js'),
      () => symmetricEigen(a, n, false, 'lapack'),
      () => symmetricEigen(a, n, true, 'js'),
      () => symmetricEigen(a, n, true, 'lapack'),
      () => tridiagonalEigen(alpha, beta, true, 'js'),
      () => tridiagonalEigen(alpha, beta, true, 'lapack'),
    ],
    repeats,
    n >= 256 ? 1 : 20,
  );
  console.log(`${n} | ${(jsV / lapackV).toFixed(2)} | ${(jsVV / lapackVV).toFixed(2)} | ${(jsT / lapackT).toFixed(2)} | ${jsV.toFixed(2)}`);
}

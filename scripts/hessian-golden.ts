// npm run --silent hessian-golden [-- FILE...]
// For each hessian-*.json golden file (by default the repository's, in
// test/fixtures/golden): the exact quantities from full(), the
// Lanczos extreme eigenvalues with their HVP counts, the Hutchinson trace
// with its standard error, and maxAbsDiff of the exact quantities against the
// file. One JSON line per file; exits 1 above 1e-8.
import { goldenSetup, hessianGolden, readGolden } from '../lib/golden/format.js';
import { hessian } from '../lib/hessian/hessian.js';
import { goldenMain } from './golden-cli.js';

goldenMain('npm run --silent hessian-golden [-- FILE...]', 1e-8, (name) => name.startsWith('hessian-'), (file) => {
  const g = readGolden(hessianGolden, file);
  const { model, x, y } = goldenSetup(g, g.params);
  const h = hessian(model, { x, y }, { mode: 'train' });
  const s = h.spectrum({ damping: g.damping, maxSize: g.numParams });
  const lanczos = h.eigenvalues({ k: 1, which: 'both', tol: 1e-10 });
  const hutch = h.trace({ method: 'hutchinson', samples: 200, seed: 0 });
  const diffs = [
    Math.abs(s.trace - g.trace),
    Math.abs(s.frobeniusSquared - g.frobeniusSquared),
    Math.abs(s.maxEigenvalue - g.maxEigenvalue),
    Math.abs(s.minEigenvalue - g.minEigenvalue),
    Math.abs(s.logAbsDetDamped! - g.logAbsDetDamped),
    ...s.eigenvalues.map((l, i) => Math.abs(l - g.eigenvalues[i])),
  ];
  const maxAbsDiff = Math.max(...diffs);
  const record = {
    file,
    trace: s.trace,
    frobeniusSquared: s.frobeniusSquared,
    maxEigenvalue: s.maxEigenvalue,
    minEigenvalue: s.minEigenvalue,
    logAbsDetDamped: s.logAbsDetDamped,
    damping: g.damping,
    lanczos: {
      maxEigenvalue: lanczos.largest![0],
      minEigenvalue: lanczos.smallest![0],
      hvps: lanczos.hvps,
      iterations: lanczos.iterations,
    },
    hutchinsonTrace: { estimate: hutch.estimate, standardError: hutch.standardError, samples: hutch.samples, hvps: hutch.hvps },
    fullHvps: s.hvps,
    maxAbsDiff,
  };
  h.dispose();
  model.dispose();
  return record;
});
